"""Hand-built amoCRM accounts in API v4 shapes for the KPI tests.

An :class:`Account` collects items (users, leads, notes, tasks, events…) exactly as the API
returns them, writes them into a real store through ``Store.ingest`` and opens a KPI context
on it, so every test exercises store → frames → KPIs.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from kpi_lib.config import load_settings
from kpi_lib.kpis import load_context
from kpi_lib.store import Store

TZ = "Europe/Moscow"
PIPELINE = 1
NEW, TALK, OFFER = 10, 20, 30  # open statuses of pipeline 1, in sort order
WON, LOST = 142, 143
CSAT_FIELD, NPS_FIELD = 500, 501


def at(text: str, tz: str = TZ) -> int:
    """Unix seconds of a local wall-clock time such as '2026-11-17 10:00'."""
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp())


class Account:
    """A small account built item by item."""

    def __init__(self, tz: str | None = TZ, currency: str = "RUB"):
        self.tz = tz
        self.items: dict[str, list[dict]] = defaultdict(list)
        self._ids = itertools.count(90001)
        self._event_ids = itertools.count(1)
        self.items["account"].append({
            "id": 777, "name": "Test shop", "subdomain": "testshop", "currency": currency, "country": "RU",
            "_embedded": {"datetime_settings": {"timezone": tz} if tz else {}},
        })
        self.items["pipelines"].append({"id": PIPELINE, "name": "Sales", "sort": 1, "is_main": True, "_embedded": {
            "statuses": [{"id": s, "name": str(s), "sort": sort, "type": 0} for s, sort in
                         ((NEW, 10), (TALK, 20), (OFFER, 30), (WON, 10000), (LOST, 11000))]}})
        self.items["pipelines"].append({"id": 2, "name": "Service", "sort": 2, "is_main": False, "_embedded": {
            "statuses": [{"id": s, "name": str(s), "sort": sort, "type": 0} for s, sort in
                         ((40, 10), (50, 20), (WON, 10000), (LOST, 11000))]}})
        self.items["lead_custom_fields"] += [
            {"id": CSAT_FIELD, "name": "CSAT", "type": "numeric", "sort": 1},
            {"id": NPS_FIELD, "name": "NPS", "type": "select", "sort": 2},
        ]

    def next_id(self) -> int:
        return next(self._ids)

    # people -----------------------------------------------------------------------------------
    def user(self, uid: int, name: str = "", admin: bool = False, active: bool = True) -> int:
        self.items["users"].append({"id": uid, "name": name or f"User {uid}", "email": f"u{uid}@example.ru",
                                    "lang": "ru", "rights": {"is_admin": admin, "is_active": active, "is_free": False,
                                                             "group_id": None}})
        return uid

    # leads --------------------------------------------------------------------------------------
    def lead(self, lead_id: int, owner: int, created: int, status: int = NEW, closed: int | None = None,
             price: float | None = None, contacts=(), companies=(), pipeline: int = PIPELINE,
             deleted: bool = False, csat=None, nps=None, name: str | None = None) -> int:
        fields = []
        if csat is not None:
            fields.append({"field_id": CSAT_FIELD, "field_name": "CSAT", "field_code": None, "field_type": "numeric",
                           "values": [{"value": csat}]})
        if nps is not None:
            fields.append({"field_id": NPS_FIELD, "field_name": "NPS", "field_code": None, "field_type": "select",
                           "values": [{"value": nps, "enum_id": 1}]})
        contact_links = []
        for i, c in enumerate(contacts):
            cid, main = (c, i == 0) if isinstance(c, int) else c
            contact_links.append({"id": cid, "is_main": main})
        self.items["leads"].append({
            "id": lead_id, "name": name or f"Deal {lead_id}", "price": price, "responsible_user_id": owner,
            "group_id": 0, "status_id": status, "pipeline_id": pipeline, "loss_reason_id": None,
            "created_by": owner, "updated_by": owner, "created_at": created, "updated_at": closed or created,
            "closed_at": closed, "closest_task_at": None, "is_deleted": deleted,
            "custom_fields_values": fields or None, "score": None, "account_id": 777,
            "_embedded": {"tags": [], "contacts": contact_links,
                          "companies": [{"id": c} for c in companies]},
        })
        return lead_id

    def contact(self, contact_id: int, owner: int, created: int = 0) -> int:
        self.items["contacts"].append({"id": contact_id, "name": f"Client {contact_id}", "responsible_user_id": owner,
                                       "created_by": owner, "created_at": created, "updated_at": created,
                                       "is_deleted": False})
        return contact_id

    # calls --------------------------------------------------------------------------------------
    def call(self, when: int, caller: int, lead: int | None = None, contact: int | None = None,
             kind: str = "call_out", duration: int | None = 60, status: int | None = 4, uniq: str | None = None,
             note_id: int | None = None, created_by: int | None = None) -> int:
        note_id = note_id or self.next_id()
        params = {"uniq": uniq or f"u-{note_id}", "duration": duration, "source": "test", "phone": "+79990001122"}
        if status is not None:
            params["call_status"] = status
        entity = "lead_notes" if lead is not None else "contact_notes"
        self.items[entity].append({
            "id": note_id, "entity_id": lead if lead is not None else contact,
            "created_by": caller if created_by is None else created_by, "updated_by": caller,
            "created_at": when, "updated_at": when, "responsible_user_id": caller, "group_id": 0,
            "note_type": kind, "params": params, "account_id": 777,
        })
        return note_id

    # tasks ----------------------------------------------------------------------------------------
    def task(self, responsible: int, created: int, due: int | None, text: str = "Send the offer with prices",
             entity_type: str | None = "leads", entity_id: int | None = None, completed: bool = False,
             result: str | None = None, created_by: int | None = None, updated: int | None = None,
             task_id: int | None = None) -> int:
        task_id = task_id or self.next_id()
        self.items["tasks"].append({
            "id": task_id, "created_by": responsible if created_by is None else created_by,
            "updated_by": responsible, "created_at": created, "updated_at": updated or created,
            "responsible_user_id": responsible, "group_id": 0, "entity_id": entity_id, "entity_type": entity_type,
            "duration": 0, "is_completed": completed, "task_type_id": 1, "text": text,
            "result": {"text": result} if result is not None else [], "complete_till": due, "account_id": 777,
        })
        return task_id

    # events -----------------------------------------------------------------------------------------
    def event(self, kind: str, entity_id: int, when: int, by: int, before=None, after=None,
              entity_type: str = "lead") -> str:
        event_id = f"ev{next(self._event_ids):06d}"
        self.items["events"].append({"id": event_id, "type": kind, "entity_id": entity_id, "entity_type": entity_type,
                                     "created_by": by, "created_at": when, "value_before": before or [],
                                     "value_after": after or [], "account_id": 777})
        return event_id

    def reassign(self, lead: int, when: int, before: int, after: int, by: int = 0) -> str:
        return self.event("entity_responsible_changed", lead, when, by,
                          [{"responsible_user": {"id": before}}], [{"responsible_user": {"id": after}}])

    def move(self, lead: int, when: int, by: int, old: int, new: int, old_pipeline: int = PIPELINE,
             new_pipeline: int | None = None) -> str:
        return self.event("lead_status_changed", lead, when, by,
                          [{"lead_status": {"id": old, "pipeline_id": old_pipeline}}],
                          [{"lead_status": {"id": new, "pipeline_id": new_pipeline or old_pipeline}}])

    def complete(self, task: int, when: int, by: int) -> str:
        return self.event("task_completed", task, when, by, entity_type="task")

    # store and context ------------------------------------------------------------------------------
    def write(self, data_dir: Path, account: str = "test", synced: datetime | None = None) -> Path:
        """Write the account to a store last synced at ``synced`` (default 2026-11-28 12:00 UTC)."""
        order = ("account", "users", "pipelines", "lead_custom_fields", "leads", "contacts", "companies", "tasks",
                 "lead_notes", "contact_notes", "events")
        with Store.open(data_dir, account, read_only=False, create=True) as store:
            for entity in order:
                if self.items.get(entity):
                    store.ingest(entity, self.items[entity])
            store.mark_synced(synced or datetime(2026, 11, 28, 12, 0, tzinfo=ZoneInfo("UTC")))
        return Path(data_dir)

    def context(self, data_dir: Path, week: str = "2026-W47", now: str | None = None, as_of: str | None = None,
                **kpi):
        """Write the account, synced at ``now``, and open a KPI context (``now``: local wall-clock text)."""
        settings = load_settings(overrides={"data_dir": str(data_dir), "account": "test", "week": week,
                                            "as_of": as_of, "kpi": kpi})
        tz = ZoneInfo(kpi.get("timezone") or self.tz or "UTC")
        clock = datetime.fromisoformat(now or "2026-12-31 12:00").replace(tzinfo=tz)
        self.write(data_dir, synced=clock)
        return load_context(settings, now=clock)
