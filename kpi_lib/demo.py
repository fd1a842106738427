"""The demo account: a realistic amoCRM sales department, from a seed, in API v4 shapes.

:func:`generate_account` yields ``(entity, page)`` pairs exactly as a live full sync receives
them (HAL pages of 250 items, events 100, ``_page``, ``_links.self/next``,
``_embedded.<collection>``), in dependency order; :func:`build_demo` feeds them through
:meth:`kpi_lib.store.Store.ingest_page` — the same code path as ``kpi-report sync`` — into
``<data_dir>/<account>.duckdb``, atomically.

The account: a supervisor (admin) and eight managers with distinct styles — the seed's two
archetypes (a high average check at few calls a day; a lower check at many calls), a fast
responder, one who escalates a lot, one with vague tasks, one who leaves tasks overdue, a
solid all-rounder and one who left partway (inactive) — over two pipelines and 26 ISO weeks
ending with the last complete week before ``today`` (Moscow time), plus the current week up
to ``today`` 00:00.  The people, the plan and the per-lead stories are in
:mod:`kpi_lib.demo_story`.

Same seed and same ``today`` give byte-identical pages.  Generation streams: a lead's story is
replayed from its own seeded random stream in each entity pass, so ``scale`` can reach a
million leads without holding them in memory.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from datetime import date, datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from . import demo_story as ds
from .demo_story import Plan, Story, make_plan, tell_story
from .errors import ConfigError
from .store import Store, store_path

ACCOUNT_ID = 31960417
SUBDOMAIN = "demo-sales"
BASE = f"https://{SUBDOMAIN}.amocrm.ru"
PAGE_LIMIT, EVENTS_LIMIT = 250, 100
PHONE_FIELD, EMAIL_FIELD, SITE_FIELD = 1511001, 1511003, 1511005
#: Story parts are kept in memory up to this many leads, and spooled to temporary files above it.
CACHE_LEADS = 20000
_CALLS = (("filter[note_type][0]", "call_in"), ("filter[note_type][1]", "call_out"))
_EVENT_TYPES = ("lead_status_changed,entity_responsible_changed,task_completed,lead_deleted,lead_restored,"
                "incoming_call,outgoing_call")
#: entity -> (path, list query, collection, page size); also the sync state a full sync leaves.
ENDPOINTS = {
    "users": ("/api/v4/users", (("with", "role,group"),), "users", PAGE_LIMIT),
    "pipelines": ("/api/v4/leads/pipelines", (), "pipelines", PAGE_LIMIT),
    "lead_custom_fields": ("/api/v4/leads/custom_fields", (), "custom_fields", PAGE_LIMIT),
    "leads": ("/api/v4/leads", (("with", "contacts"),), "leads", PAGE_LIMIT),
    "contacts": ("/api/v4/contacts", (), "contacts", PAGE_LIMIT),
    "companies": ("/api/v4/companies", (), "companies", PAGE_LIMIT),
    "tasks": ("/api/v4/tasks", (("order[id]", "asc"),), "tasks", PAGE_LIMIT),
    "lead_notes": ("/api/v4/leads/notes", _CALLS, "notes", PAGE_LIMIT),
    "contact_notes": ("/api/v4/contacts/notes", _CALLS, "notes", PAGE_LIMIT),
    "events": ("/api/v4/events", (("filter[type]", _EVENT_TYPES),), "events", EVENTS_LIMIT),
}
_FULL_STREAMS = ("users", "pipelines", "lead_custom_fields")


def _link(path: str) -> dict:
    return {"self": {"href": f"{BASE}{path}"}}


def resolve_today(today: date | None) -> date:
    """``today`` as given, else today's date in Moscow; anything else is a ConfigError."""
    if today is None:
        return datetime.now(ZoneInfo(ds.TZ_NAME)).date()
    if isinstance(today, datetime) or not isinstance(today, date):
        raise ConfigError(f"demo today={today!r} is not a date: pass a datetime.date such as date(2026, 11, 25)"
                          " (on the command line: --today 2026-11-25)")
    if today.year < 2000 or today.year > 2100:
        raise ConfigError(f"demo today={today.isoformat()} is out of range: use a date between 2000 and 2100")
    return today


def generate_account(seed: int = 7, today: date | None = None, scale: float = 1.0
                     ) -> Iterator[tuple[str, dict | None]]:
    """Yield ``(entity, page)`` pairs of the demo account in the order a full sync fetches them.

    Parameters
    ----------
    seed : int
        Random seed; the same seed and ``today`` give identical pages.
    today : date, optional
        Build the history as if today were this date (default: today in Moscow).  The 26
        reported weeks end with the last complete ISO week before it.
    scale : float
        Volume multiplier: 1 is about 8 managers × 15 new leads a week; larger scales add
        managers (up to 120) and then leads per manager.

    Returns
    -------
    iterator of (str, dict or None)
        ``("account", account)`` first, then pages of users, pipelines, lead_custom_fields,
        leads, contacts, companies, tasks, lead_notes, contact_notes and events (``None``
        stands for an empty 204 answer).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"demo seed={seed!r} is not an integer: pass e.g. --seed 7")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1000:
        raise ConfigError(f"demo scale={scale!r} is out of range: use a number above 0 and at most 1000")
    return _generate(seed, resolve_today(today), float(scale))


def _generate(seed: int, today: date, scale: float) -> Iterator[tuple[str, dict | None]]:
    plan = make_plan(seed, today, scale)
    stories = _Stories(plan)
    yield "account", account_item(plan)
    yield from _pages("users", [user_item(plan, u) for u in plan.users], total=True)
    yield "pipelines", pipelines_page()
    yield from _pages("lead_custom_fields", custom_fields(), total=True)
    yield from _pages("leads", (s for s in stories.tell() if s.lead), lambda s, q: lead_item(plan, s, q))
    yield from _pages("contacts", _contacts(plan), lambda c, q: contact_item(plan, c, q))
    yield from _pages("companies", _companies(plan), lambda c, q: company_item(plan, c, q))
    yield from _pages("tasks", stories.part("tasks"), task_item)
    yield from _pages("lead_notes", stories.part("lead_calls"), note_item)
    yield from _pages("contact_notes", stories.part("contact_calls"), note_item)
    yield from _pages("events", stories.part("events"), event_item)


class _Stories:
    """Every lead's story told once; its tasks, calls and events kept for the later passes.

    Small plans keep them in memory; big ones spool them to temporary files in chunks, so
    memory stays flat however many leads there are.
    """

    PARTS = ("tasks", "lead_calls", "contact_calls", "events")

    def __init__(self, plan: Plan):
        self.plan = plan
        self.keep = len(plan) <= CACHE_LEADS
        self.parts: dict[str, list] = {name: [] for name in self.PARTS}
        self.spools: dict[str, Any] = {}

    def tell(self) -> Iterator[Story]:
        """Yield each story in lead order while keeping its parts."""
        if not self.keep:
            self.spools = {name: tempfile.TemporaryFile(prefix="kpi-demo-") for name in self.PARTS}
        for i in range(len(self.plan)):
            story = tell_story(self.plan, i)
            self.parts["tasks"].extend(story.tasks)
            self.parts["lead_calls"].extend(c for c in story.calls if c[1] == "lead")
            self.parts["contact_calls"].extend(sorted(c for c in story.calls if c[1] == "contact"))
            self.parts["events"].extend(_story_events(self.plan, story))
            if not self.keep and i % 1000 == 999:
                self._flush()
            yield story
        if not self.keep:
            self._flush()

    def _flush(self) -> None:
        for name, items in self.parts.items():
            pickle.dump(items, self.spools[name], protocol=pickle.HIGHEST_PROTOCOL)
            items.clear()

    def part(self, name: str) -> Iterator[tuple]:
        """The kept items of one kind, in lead order (each spool is read once, then closed)."""
        if self.keep:
            yield from self.parts.pop(name)
            return
        with self.spools.pop(name) as spool:
            spool.seek(0)
            while True:
                try:
                    yield from pickle.load(spool)
                except EOFError:
                    return


def _pages(entity: str, records: Iterable[Any], build: Callable[[Any, str], dict] | None = None,
           total: bool = False) -> Iterator[tuple[str, dict | None]]:
    """HAL pages of ``records`` as the list endpoint of ``entity`` returns them."""
    path, params, collection, limit = ENDPOINTS[entity]
    records = list(records) if total else records
    count = len(records) if total else 0
    chunk: list[Any] = []
    page = 0

    def make(last: bool) -> dict:
        query = urlencode(params + (("limit", limit), ("page", page)))
        suffix = "?" + urlencode(params + (("page", page), ("limit", limit)))
        links = {"self": {"href": f"{BASE}{path}?{query}"}}
        if not last:
            links["next"] = {"href": f"{BASE}{path}?{urlencode(params + (('limit', limit), ('page', page + 1)))}"}
        head: dict[str, Any] = {}
        if total:
            head = {"_total_items": count, "_page": page, "_page_count": max(1, -(-count // limit))}
        else:
            head = {"_page": page}
        items = [build(rec, suffix) if build else rec for rec in chunk]
        return {**head, "_links": links, "_embedded": {collection: items}}

    for record in records:
        if len(chunk) == limit:
            page += 1
            yield entity, make(last=False)
            chunk = []
        chunk.append(record)
    if chunk:
        page += 1
        yield entity, make(last=True)
    elif page == 0:
        yield entity, None  # 204 No Content


# -- items ---------------------------------------------------------------------------------
def account_item(plan: Plan) -> dict:
    offset = plan.clock.offset // 3600
    return {
        "id": ACCOUNT_ID, "name": "Демо Продажи", "subdomain": SUBDOMAIN, "current_user_id": plan.supervisor.id,
        "country": "RU", "customers_mode": "disabled", "is_unsorted_on": True, "is_loss_reason_enabled": True,
        "is_helpbot_enabled": False, "is_technical_account": False, "is_api_filter_enabled": True,
        "contact_name_display_order": 1, "amojo_id": "5d0e6a52-8c4b-4f0e-9a51-3f0d2c7b9e11",
        "uuid": "a3c2f1e4-7b6d-4c5e-8f9a-1b2c3d4e5f60", "drive_url": "https://drive-b.amocrm.ru", "version": 16,
        "currency": "RUB", "currency_symbol": "₽", "created_at": plan.start - 400 * ds.DAY,
        "entity_names": {"leads": {
            "ru": {"gender": "f",
                   "plural_form": {"dative": "сделкам", "default": "сделки", "genitive": "сделок",
                                   "accusative": "сделки", "instrumental": "сделками", "prepositional": "сделках"},
                   "singular_form": {"dative": "сделке", "default": "сделка", "genitive": "сделки",
                                     "accusative": "сделку", "instrumental": "сделкой", "prepositional": "сделке"}},
            "en": {"singular_form": {"default": "lead"}, "plural_form": {"default": "leads"}, "gender": "f"},
            "es": {"singular_form": {"default": "acuerdo"}, "plural_form": {"default": "acuerdos"}, "gender": "m"}}},
        "_links": _link("/api/v4/account"),
        "_embedded": {
            "amojo_rights": {"can_direct": True, "can_create_groups": True},
            "users_groups": [{"id": 0, "name": "Отдел продаж", "uuid": None}],
            "task_types": [{"id": 1, "name": "Связаться", "color": None, "icon_id": None, "code": "FOLLOW_UP"},
                           {"id": 2, "name": "Встреча", "color": None, "icon_id": None, "code": "MEETING"}],
            "datetime_settings": {"date_pattern": "d.m.Y H:i", "short_date_pattern": "d.m.Y",
                                  "short_time_pattern": "H:i", "date_formant": "d.m.Y", "time_format": "H:i:s",
                                  "timezone": ds.TZ_NAME, "timezone_offset": f"{offset:+03d}:00"},
        },
    }


def user_item(plan: Plan, user: ds.User) -> dict:
    level = "A" if user.is_admin else "M"
    entity = {"view": "A", "edit": level, "add": "A", "delete": level if user.is_admin else "D",
              "export": level if user.is_admin else "D"}
    status_rights = None if user.is_admin else [
        {"entity_type": "leads", "pipeline_id": pid, "status_id": statuses[0][0],
         "rights": {"view": "A", "edit": "A", "delete": "D"}} for pid, (_, statuses) in ds.PIPELINES.items()]
    role = [] if user.is_admin else [{"id": 3141, "name": "Менеджер", "_links": _link("/api/v4/roles/3141")}]
    return {
        "id": user.id, "name": user.name, "email": user.email, "lang": "ru",
        "rights": {"leads": dict(entity), "contacts": dict(entity), "companies": dict(entity),
                   "tasks": {"edit": level, "delete": level}, "mail_access": user.is_admin,
                   "catalog_access": user.is_admin, "status_rights": status_rights, "is_admin": user.is_admin,
                   "is_free": False, "is_active": user.is_active, "group_id": None, "role_id": None},
        "_links": _link(f"/api/v4/users/{user.id}"),
        "_embedded": {"roles": role, "groups": [] if user.is_admin else [{"id": 0, "name": "Отдел продаж"}]},
    }


def pipelines_page() -> dict:
    pipelines = []
    for sort, (pid, (name, statuses)) in enumerate(ds.PIPELINES.items(), start=1):
        rows = [(sid, sname, ssort, stype, color, stype != 1) for sid, sname, ssort, stype, color in statuses]
        rows += [(ds.WON, "Успешно реализовано", 10000, 0, "#CCFF66", False),
                 (ds.LOST, "Закрыто и не реализовано", 11000, 0, "#D5D8DB", False)]
        pipelines.append({
            "id": pid, "name": name, "sort": sort, "is_main": sort == 1, "is_unsorted_on": True, "is_archive": False,
            "account_id": ACCOUNT_ID, "_links": _link(f"/api/v4/leads/pipelines/{pid}"),
            "_embedded": {"statuses": [
                {"id": sid, "name": sname, "sort": ssort, "is_editable": editable, "pipeline_id": pid,
                 "color": color, "type": stype, "account_id": ACCOUNT_ID,
                 "_links": _link(f"/api/v4/leads/pipelines/{pid}/statuses/{sid}")}
                for sid, sname, ssort, stype, color, editable in rows]},
        })
    return {"_total_items": len(pipelines), "_links": _link("/api/v4/leads/pipelines"),
            "_embedded": {"pipelines": pipelines}}


def custom_fields() -> list[dict]:
    def field(fid: int, name: str, kind: str, sort: int, enums: list | None = None) -> dict:
        return {"id": fid, "name": name, "type": kind, "code": None, "sort": sort, "is_predefined": False,
                "is_deletable": True, "is_api_only": False, "is_computed": False, "entity_type": "leads",
                "settings": None, "remind": None, "group_id": None, "enums": enums, "required_statuses": None,
                "_links": _link(f"/api/v4/leads/custom_fields/{fid}")}

    sources = [{"id": eid, "value": value, "sort": 500 + k, "code": None} for k, (eid, value) in enumerate(ds.SOURCES)]
    return [field(ds.CSAT_FIELD, "CSAT", "numeric", 504), field(ds.NPS_FIELD, "NPS", "numeric", 505),
            field(ds.SOURCE_FIELD, "Источник", "select", 506, sources),
            field(ds.CONTRACT_FIELD, "Номер договора", "text", 507)]


_FIELD_META = {ds.CSAT_FIELD: ("CSAT", "numeric"), ds.NPS_FIELD: ("NPS", "numeric"),
               ds.SOURCE_FIELD: ("Источник", "select"), ds.CONTRACT_FIELD: ("Номер договора", "text")}


def _cf(field_id: int, value: Any) -> dict:
    name, kind = _FIELD_META[field_id]
    values = [{"value": value[1], "enum_id": value[0], "enum_code": None}] if kind == "select" else [{"value": value}]
    return {"field_id": field_id, "field_name": name, "field_code": None, "field_type": kind, "values": values}


def lead_item(plan: Plan, story: Story, query: str) -> dict:
    lead, i = story.lead, story.i
    contacts = []
    if plan.contact[i]:
        contacts.append({"id": plan.contact[i], "is_main": True,
                         "_links": _link(f"/api/v4/contacts/{plan.contact[i]}{query}")})
    if plan.second[i]:
        contacts.append({"id": plan.second[i], "is_main": False,
                         "_links": _link(f"/api/v4/contacts/{plan.second[i]}{query}")})
    companies = [{"id": plan.company[i], "_links": _link(f"/api/v4/companies/{plan.company[i]}{query}")}
                 ] if plan.company[i] else []
    return {
        "id": lead["id"], "name": lead["name"], "price": lead["price"],
        "responsible_user_id": lead["responsible_user_id"], "group_id": 0, "status_id": lead["status_id"],
        "pipeline_id": lead["pipeline_id"], "loss_reason_id": lead["loss_reason_id"],
        "created_by": lead["created_by"], "updated_by": lead["updated_by"], "created_at": lead["created_at"],
        "updated_at": lead["updated_at"], "closed_at": lead["closed_at"], "closest_task_at": lead["closest_task_at"],
        "is_deleted": False, "custom_fields_values": [_cf(fid, value) for fid, value in lead["fields"]] or None,
        "score": None, "account_id": ACCOUNT_ID, "labor_cost": None,
        "_links": _link(f"/api/v4/leads/{lead['id']}{query}"),
        "_embedded": {"tags": [{"id": tid, "name": name, "color": None} for tid, name in lead["tags"]],
                      "companies": companies, "contacts": contacts},
    }


def _contacts(plan: Plan) -> Iterator[tuple[int, int]]:
    """(lead index, contact id) of every contact, in id order: made with the lead that first needed it."""
    for i in range(len(plan)):
        if plan.own_contact[i]:
            yield i, plan.contact[i]
            if plan.second[i]:
                yield i, plan.second[i]


def contact_item(plan: Plan, record: tuple[int, int], query: str) -> dict:
    i, cid = record
    first, last = ds.contact_person(plan.seed, cid)
    created = ds.contact_created(plan, i, cid)
    h = ds.mix(plan.seed, cid + 7)
    manager = plan.managers[plan.manager[i]].id
    fields = [{"field_id": PHONE_FIELD, "field_name": "Телефон", "field_code": "PHONE", "field_type": "multitext",
               "values": [{"value": ds.contact_phone(plan.seed, cid), "enum_id": 1511002,
                           "enum_code": "MOB" if h % 3 else "WORK"}]}]
    if h % 5 < 3:
        fields.append({"field_id": EMAIL_FIELD, "field_name": "Email", "field_code": "EMAIL",
                       "field_type": "multitext",
                       "values": [{"value": f"client{cid}@example.ru", "enum_id": 1511004, "enum_code": "WORK"}]})
    company = plan.company[i]
    return {
        "id": cid, "name": f"{first} {last}", "first_name": first, "last_name": last,
        "responsible_user_id": manager, "group_id": 0, "created_by": 0 if plan.robot[i] else manager,
        "updated_by": manager, "created_at": created, "updated_at": created + h % 7200, "closest_task_at": None,
        "is_deleted": False, "custom_fields_values": fields, "account_id": ACCOUNT_ID,
        "_links": _link(f"/api/v4/contacts/{cid}{query}"),
        "_embedded": {"tags": [], "companies": [{"id": company, "_links": _link(f"/api/v4/companies/{company}{query}")}]
                      if company else []},
    }


def _companies(plan: Plan) -> list[tuple[int, int]]:
    """(company id, lead index of its first lead), in id order."""
    first: dict[int, int] = {}
    for i, company in enumerate(plan.company):
        if company and company not in first:
            first[company] = i
    return sorted(first.items())


def company_item(plan: Plan, record: tuple[int, int], query: str) -> dict:
    cid, i = record
    created = plan.created[i] - plan.pre_call[i] - 3600 - ds.mix(plan.seed, cid) % 7200
    manager = plan.managers[plan.manager[i]].id
    fields = None
    if cid % 2:
        fields = [{"field_id": SITE_FIELD, "field_name": "Web", "field_code": "WEB", "field_type": "url",
                   "values": [{"value": f"https://company{cid}.ru"}]}]
    return {
        "id": cid, "name": ds.company_name(plan.seed, cid), "responsible_user_id": manager, "group_id": 0,
        "created_by": manager, "updated_by": manager, "created_at": created, "updated_at": created + 600,
        "closest_task_at": None, "is_deleted": False, "custom_fields_values": fields, "account_id": ACCOUNT_ID,
        "_links": _link(f"/api/v4/companies/{cid}{query}"), "_embedded": {"tags": []},
    }


def task_item(task: tuple, query: str) -> dict:
    tid, by, created, updated, resp, entity_id, entity_type, done, kind, text, result, due, duration = task
    return {
        "id": tid, "created_by": by, "updated_by": resp if done else by, "created_at": created, "updated_at": updated,
        "responsible_user_id": resp, "group_id": 0, "entity_id": entity_id, "entity_type": entity_type,
        "duration": duration, "is_completed": done, "task_type_id": kind, "text": text,
        "result": {"text": result} if result else [], "complete_till": due, "account_id": ACCOUNT_ID,
        "_links": _link(f"/api/v4/tasks/{tid}"),
    }


def note_item(call: tuple, query: str) -> dict:
    nid, kind, entity_id, note_type, t, by, resp, uniq, duration, status, result, source, phone = call
    params: dict[str, Any] = {"uniq": uniq, "duration": duration, "source": source,
                              "link": f"https://rec.{SUBDOMAIN}.ru/records/{uniq or nid}.mp3" if duration else None,
                              "phone": phone}
    if status != ds.MISSING:
        params["call_status"] = status
    params["call_result"] = result
    return {
        "id": nid, "entity_id": entity_id, "created_by": by, "updated_by": by, "created_at": t, "updated_at": t,
        "responsible_user_id": resp, "group_id": 0, "note_type": note_type, "params": params,
        "account_id": ACCOUNT_ID, "_links": _link(f"/api/v4/{kind}s/{entity_id}/notes/{nid}"),
    }


def event_id(seed: int, n: int) -> str:
    """A 26-character event id in amoCRM's style, unique per ``n`` for a seed."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = []
    for value, width in ((ds.mix(seed, n), 13), (ds.mix(seed + 1, n), 11)):
        for _ in range(width):
            value, d = divmod(value, 36)
            out.append(digits[d])
    return "01" + "".join(out)


def _story_events(plan: Plan, story: Story) -> Iterator[tuple]:
    """The story's events in time order, with their ids."""
    for k, event in enumerate(sorted(story.events, key=lambda e: e[:2])):
        yield (event_id(plan.seed, story.i * ds.NOTE_SLOTS + k),) + event[2:] + event[:1]


def event_item(event: tuple, query: str) -> dict:
    eid, kind, entity_type, entity_id, by, before, after, t = event
    path = f"/api/v4/{'tasks' if entity_type == 'task' else 'leads'}/{entity_id}"
    return {"id": eid, "type": kind, "entity_id": entity_id, "entity_type": entity_type, "created_by": by,
            "created_at": t, "value_after": after, "value_before": before, "account_id": ACCOUNT_ID,
            "_links": _link(f"/api/v4/events/{eid}"),
            "_embedded": {"entity": {"id": entity_id, "_links": _link(path)}}}


# -- building the store ----------------------------------------------------------------------
def build_demo(data_dir: str | Path, account: str = "demo", seed: int = 7, today: date | None = None,
               scale: float = 1.0) -> Path:
    """Build the demo account's store at ``<data_dir>/<account>.duckdb`` and return its path.

    The pages of :func:`generate_account` go through :meth:`Store.ingest_page` into a new file
    in a private folder of ``data_dir``, which then replaces the old store in one rename: a
    build that fails or is killed leaves the previous store as it was.  The store is marked
    synced at ``today`` 00:00 (Moscow), with the sync cursors a full sync leaves.
    """
    data_dir = Path(data_dir)
    target = store_path(data_dir, account)
    today = resolve_today(today)
    pages = generate_account(seed, today, scale)
    data_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(data_dir, account)
    work = Path(tempfile.mkdtemp(prefix=f".{account}.build-{os.getpid()}-", dir=data_dir))
    try:
        with Store.open(work, account, read_only=False, create=True) as store:
            while chunk := list(islice(pages, 50)):  # one transaction per 50 pages: fewer commits
                with store.transaction():
                    for entity, page in chunk:
                        store.ingest_page(entity, page)
            synced = make_plan_cutoff(today)
            for entity in ENDPOINTS:
                store.set_state(entity, None if entity in _FULL_STREAMS else synced)
            store.set_meta("demo", {"seed": seed, "today": today.isoformat(), "scale": scale})
            store.mark_synced(datetime.fromtimestamp(synced, timezone.utc))
            store.con.execute("CHECKPOINT")
        wal = target.with_name(target.name + ".wal")
        if wal.exists():
            wal.unlink()
        os.replace(work / target.name, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def make_plan_cutoff(today: date) -> int:
    """``today`` 00:00 in Moscow as Unix seconds: the end of the demo's data."""
    return int(datetime.combine(today, datetime.min.time(), ZoneInfo(ds.TZ_NAME)).timestamp())


def _remove_stale_builds(data_dir: Path, account: str) -> None:
    """Delete build folders of ``account`` left by builds whose process is gone."""
    for folder in data_dir.glob(f".{account}.build-*"):
        try:
            pid = int(folder.name[len(f".{account}.build-"):].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            continue
