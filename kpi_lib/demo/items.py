"""The demo account in amoCRM API v4 shapes: list pages and the items in them.

Every item has the keys and JSON types of the real and documented answers in
``shared/amocrm-samples`` (tests/test_demo.py compares them), including the real capture's
quirks: ``labor_cost``, ``score`` and item links that repeat the list's query string.
"""

from __future__ import annotations

import base64
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlencode

from ..amocrm.endpoints import ENDPOINTS as API_ENDPOINTS, LOST, WON
from . import plan as dp
from .plan import Plan, User
from .story import Story

ACCOUNT_ID = 31960417
SUBDOMAIN = "demo-sales"
BASE = f"https://{SUBDOMAIN}.amocrm.ru"
PHONE_FIELD, EMAIL_FIELD, SITE_FIELD = 1511001, 1511003, 1511005
#: entity -> (path, list query, collection, page size), from the endpoint table the sync walks.
ENDPOINTS = {e.name: (e.path, e.params, e.collection, e.limit) for e in API_ENDPOINTS if e.mode != "deleted"}


def _make_link(path: str) -> dict:
    """A HAL ``_links`` object pointing at ``path`` on the demo account."""
    return {"self": {"href": f"{BASE}{path}"}}

def paginate(entity: str, records: Iterable[Any], build: Callable[[Any, str], dict] | None = None,
           total: bool = False) -> Iterator[tuple[str, dict | None]]:
    """HAL pages of ``records`` as the list endpoint of ``entity`` returns them."""
    path, params, collection, limit = ENDPOINTS[entity]
    records = list(records) if total else records
    count = len(records) if total else 0
    chunk: list[Any] = []
    page = 0

    def make(last: bool) -> dict:
        """One page of the current chunk."""
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


def make_account(plan: Plan) -> dict:
    """``GET /api/v4/account`` with every ``with=`` extra, including ``datetime_settings``."""
    offset = plan.clock.offset // 3600
    return {
        "id": ACCOUNT_ID, "name": "Демо Продажи", "subdomain": SUBDOMAIN, "current_user_id": plan.supervisor.id,
        "country": "RU", "customers_mode": "disabled", "is_unsorted_on": True, "is_loss_reason_enabled": True,
        "is_helpbot_enabled": False, "is_technical_account": False, "is_api_filter_enabled": True,
        "contact_name_display_order": 1, "amojo_id": "5d0e6a52-8c4b-4f0e-9a51-3f0d2c7b9e11",
        "uuid": "a3c2f1e4-7b6d-4c5e-8f9a-1b2c3d4e5f60", "drive_url": "https://drive-b.amocrm.ru", "version": 16,
        "currency": "RUB", "currency_symbol": "₽", "created_at": plan.start - 400 * dp.DAY,
        "entity_names": {"leads": {
            "ru": {"gender": "f",
                   "plural_form": {"dative": "сделкам", "default": "сделки", "genitive": "сделок",
                                   "accusative": "сделки", "instrumental": "сделками", "prepositional": "сделках"},
                   "singular_form": {"dative": "сделке", "default": "сделка", "genitive": "сделки",
                                     "accusative": "сделку", "instrumental": "сделкой", "prepositional": "сделке"}},
            "en": {"singular_form": {"default": "lead"}, "plural_form": {"default": "leads"}, "gender": "f"},
            "es": {"singular_form": {"default": "acuerdo"}, "plural_form": {"default": "acuerdos"}, "gender": "m"}}},
        "_links": _make_link("/api/v4/account"),
        "_embedded": {
            "amojo_rights": {"can_direct": True, "can_create_groups": True},
            "users_groups": [{"id": 0, "name": "Отдел продаж", "uuid": None}],
            "task_types": [{"id": 1, "name": "Связаться", "color": None, "icon_id": None, "code": "FOLLOW_UP"},
                           {"id": 2, "name": "Встреча", "color": None, "icon_id": None, "code": "MEETING"}],
            "datetime_settings": {"date_pattern": "d.m.Y H:i", "short_date_pattern": "d.m.Y",
                                  "short_time_pattern": "H:i", "date_formant": "d.m.Y", "time_format": "H:i:s",
                                  "timezone": dp.TZ_NAME, "timezone_offset": f"{offset:+03d}:00"},
        },
    }


def make_user(plan: Plan, user: User) -> dict:
    """A ``/api/v4/users`` item (``with=role,group``): flags inside ``rights``."""
    level = "A" if user.is_admin else "M"
    entity = {"view": "A", "edit": level, "add": "A", "delete": level if user.is_admin else "D",
              "export": level if user.is_admin else "D"}
    status_rights = None if user.is_admin else [
        {"entity_type": "leads", "pipeline_id": pid, "status_id": statuses[0][0],
         "rights": {"view": "A", "edit": "A", "delete": "D"}} for pid, (_, statuses) in dp.PIPELINES.items()]
    role = [] if user.is_admin else [{"id": 3141, "name": "Менеджер", "_links": _make_link("/api/v4/roles/3141")}]
    return {
        "id": user.id, "name": user.name, "email": user.email, "lang": "ru",
        "rights": {"leads": dict(entity), "contacts": dict(entity), "companies": dict(entity),
                   "tasks": {"edit": level, "delete": level}, "mail_access": user.is_admin,
                   "catalog_access": user.is_admin, "status_rights": status_rights, "is_admin": user.is_admin,
                   "is_free": False, "is_active": user.is_active, "group_id": None, "role_id": None},
        "_links": _make_link(f"/api/v4/users/{user.id}"),
        "_embedded": {"roles": role, "groups": [] if user.is_admin else [{"id": 0, "name": "Отдел продаж"}]},
    }


def make_pipelines_page() -> dict:
    """The ``/api/v4/leads/pipelines`` answer: both pipelines with their statuses."""
    pipelines = []
    for sort, (pid, (name, statuses)) in enumerate(dp.PIPELINES.items(), start=1):
        rows = [(sid, sname, ssort, stype, color, stype != 1) for sid, sname, ssort, stype, color in statuses]
        rows += [(WON, "Успешно реализовано", 10000, 0, "#CCFF66", False),
                 (LOST, "Закрыто и не реализовано", 11000, 0, "#D5D8DB", False)]
        pipelines.append({
            "id": pid, "name": name, "sort": sort, "is_main": sort == 1, "is_unsorted_on": True, "is_archive": False,
            "account_id": ACCOUNT_ID, "_links": _make_link(f"/api/v4/leads/pipelines/{pid}"),
            "_embedded": {"statuses": [
                {"id": sid, "name": sname, "sort": ssort, "is_editable": editable, "pipeline_id": pid,
                 "color": color, "type": stype, "account_id": ACCOUNT_ID,
                 "_links": _make_link(f"/api/v4/leads/pipelines/{pid}/statuses/{sid}")}
                for sid, sname, ssort, stype, color, editable in rows]},
        })
    return {"_total_items": len(pipelines), "_links": _make_link("/api/v4/leads/pipelines"),
            "_embedded": {"pipelines": pipelines}}


def make_custom_fields() -> list[dict]:
    """The lead custom fields: CSAT and NPS (numeric), the lead source (select), a contract number."""

    def make_field(fid: int, name: str, kind: str, sort: int, enums: list | None = None) -> dict:
        """One field definition."""
        return {"id": fid, "name": name, "type": kind, "code": None, "sort": sort, "is_predefined": False,
                "is_deletable": True, "is_api_only": False, "is_computed": False, "entity_type": "leads",
                "settings": None, "remind": None, "group_id": None, "enums": enums, "required_statuses": None,
                "_links": _make_link(f"/api/v4/leads/custom_fields/{fid}")}

    sources = [{"id": eid, "value": value, "sort": 500 + k, "code": None} for k, (eid, value) in enumerate(dp.SOURCES)]
    return [make_field(dp.CSAT_FIELD, "CSAT", "numeric", 504), make_field(dp.NPS_FIELD, "NPS", "numeric", 505),
            make_field(dp.SOURCE_FIELD, "Источник", "select", 506, sources),
            make_field(dp.CONTRACT_FIELD, "Номер договора", "text", 507)]


_FIELD_META = {dp.CSAT_FIELD: ("CSAT", "numeric"), dp.NPS_FIELD: ("NPS", "numeric"),
               dp.SOURCE_FIELD: ("Источник", "select"), dp.CONTRACT_FIELD: ("Номер договора", "text")}


def _make_field_value(field_id: int, value: Any) -> dict:
    """One ``custom_fields_values`` entry of a lead."""
    name, kind = _FIELD_META[field_id]
    values = [{"value": value[1], "enum_id": value[0], "enum_code": None}] if kind == "select" else [{"value": value}]
    return {"field_id": field_id, "field_name": name, "field_code": None, "field_type": kind, "values": values}


def make_lead(plan: Plan, story: Story, query: str) -> dict:
    """A ``/api/v4/leads?with=contacts`` item with the real capture's keys and link quirk."""
    lead, i = story.lead, story.i
    contacts = []
    if plan.contact[i]:
        contacts.append({"id": plan.contact[i], "is_main": True,
                         "_links": _make_link(f"/api/v4/contacts/{plan.contact[i]}{query}")})
    if plan.second[i]:
        contacts.append({"id": plan.second[i], "is_main": False,
                         "_links": _make_link(f"/api/v4/contacts/{plan.second[i]}{query}")})
    companies = [{"id": plan.company[i], "_links": _make_link(f"/api/v4/companies/{plan.company[i]}{query}")}
                 ] if plan.company[i] else []
    return {
        "id": lead["id"], "name": lead["name"], "price": lead["price"],
        "responsible_user_id": lead["responsible_user_id"], "group_id": 0, "status_id": lead["status_id"],
        "pipeline_id": lead["pipeline_id"], "loss_reason_id": lead["loss_reason_id"],
        "created_by": lead["created_by"], "updated_by": lead["updated_by"], "created_at": lead["created_at"],
        "updated_at": lead["updated_at"], "closed_at": lead["closed_at"], "closest_task_at": lead["closest_task_at"],
        "is_deleted": False,
        "custom_fields_values": [_make_field_value(fid, value) for fid, value in lead["fields"]] or None,
        "score": None, "account_id": ACCOUNT_ID, "labor_cost": None,
        "_links": _make_link(f"/api/v4/leads/{lead['id']}{query}"),
        "_embedded": {"tags": [{"id": tid, "name": name, "color": None} for tid, name in lead["tags"]],
                      "companies": companies, "contacts": contacts},
    }


def list_contacts(plan: Plan) -> Iterator[tuple[int, int]]:
    """(lead index, contact id) of every contact, in id order: made with the lead that first needed it."""
    for i in range(len(plan)):
        if plan.own_contact[i]:
            yield i, plan.contact[i]
            if plan.second[i]:
                yield i, plan.second[i]


def make_contact(plan: Plan, record: tuple[int, int], query: str) -> dict:
    """A ``/api/v4/contacts`` item: Russian name, phone (and often email) multitext fields."""
    i, cid = record
    first, last = dp.make_contact_name(plan.seed, cid)
    created = dp.compute_contact_created(plan, i, cid)
    h = dp.mix(plan.seed, cid + 7)
    manager = plan.managers[plan.manager[i]].id
    fields = [{"field_id": PHONE_FIELD, "field_name": "Телефон", "field_code": "PHONE", "field_type": "multitext",
               "values": [{"value": dp.make_phone(plan.seed, cid), "enum_id": 1511002,
                           "enum_code": "MOB" if h % 3 else "WORK"}]}]
    if h % 5 < 3:
        fields.append({"field_id": EMAIL_FIELD, "field_name": "Email", "field_code": "EMAIL",
                       "field_type": "multitext",
                       "values": [{"value": f"client{cid}@example.ru", "enum_id": 1511004, "enum_code": "WORK"}]})
    company = plan.company[i]
    links = [{"id": company, "_links": _make_link(f"/api/v4/companies/{company}{query}")}] if company else []
    return {
        "id": cid, "name": f"{first} {last}", "first_name": first, "last_name": last,
        "responsible_user_id": manager, "group_id": 0, "created_by": 0 if plan.robot[i] else manager,
        "updated_by": manager, "created_at": created, "updated_at": created + h % 7200, "closest_task_at": None,
        "is_deleted": False, "custom_fields_values": fields, "account_id": ACCOUNT_ID,
        "_links": _make_link(f"/api/v4/contacts/{cid}{query}"),
        "_embedded": {"tags": [], "companies": links},
    }


def list_companies(plan: Plan) -> list[tuple[int, int]]:
    """(company id, lead index of its first lead), in id order."""
    first: dict[int, int] = {}
    for i, company in enumerate(plan.company):
        if company and company not in first:
            first[company] = i
    return sorted(first.items())


def make_company(plan: Plan, record: tuple[int, int], query: str) -> dict:
    """A ``/api/v4/companies`` item."""
    cid, i = record
    created = plan.created[i] - plan.pre_call[i] - 3600 - dp.mix(plan.seed, cid) % 7200
    manager = plan.managers[plan.manager[i]].id
    fields = None
    if cid % 2:
        fields = [{"field_id": SITE_FIELD, "field_name": "Web", "field_code": "WEB", "field_type": "url",
                   "values": [{"value": f"https://company{cid}.ru"}]}]
    return {
        "id": cid, "name": dp.make_company_name(plan.seed, cid), "responsible_user_id": manager, "group_id": 0,
        "created_by": manager, "updated_by": manager, "created_at": created, "updated_at": created + 600,
        "closest_task_at": None, "is_deleted": False, "custom_fields_values": fields, "account_id": ACCOUNT_ID,
        "_links": _make_link(f"/api/v4/companies/{cid}{query}"), "_embedded": {"tags": []},
    }


def make_task(task: tuple, query: str) -> dict:
    """A ``/api/v4/tasks`` item: ``result`` is ``[]`` when empty, else ``{"text": ...}``."""
    tid, by, created, updated, resp, entity_id, entity_type, done, kind, text, result, due, duration = task
    return {
        "id": tid, "created_by": by, "updated_by": resp if done else by, "created_at": created, "updated_at": updated,
        "responsible_user_id": resp, "group_id": 0, "entity_id": entity_id, "entity_type": entity_type,
        "duration": duration, "is_completed": done, "task_type_id": kind, "text": text,
        "result": {"text": result} if result else [], "complete_till": due, "account_id": ACCOUNT_ID,
        "_links": _make_link(f"/api/v4/tasks/{tid}"),
    }


def make_note(call: tuple, query: str) -> dict:
    """A ``call_in``/``call_out`` note; ``call_status`` is left out where the telephony sends none."""
    nid, kind, entity_id, note_type, t, by, resp, uniq, duration, status, result, source, phone = call
    params: dict[str, Any] = {"uniq": uniq, "duration": duration, "source": source,
                              "link": f"https://rec.{SUBDOMAIN}.ru/records/{uniq or nid}.mp3" if duration else None,
                              "phone": phone}
    if status != dp.MISSING:
        params["call_status"] = status
    params["call_result"] = result
    return {
        "id": nid, "entity_id": entity_id, "created_by": by, "updated_by": by, "created_at": t, "updated_at": t,
        "responsible_user_id": resp, "group_id": 0, "note_type": note_type, "params": params,
        "account_id": ACCOUNT_ID, "_links": _make_link(f"/api/v4/{kind}s/{entity_id}/notes/{nid}"),
    }


_PLURAL = {"lead": "leads", "contact": "contacts", "company": "companies", "task": "tasks"}
_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789abcdefghjkmnpqrstvwxyz")


def make_event_id(seed: int, n: int) -> str:
    """A 26-character event id in amoCRM's style (``01`` + 120 bits in base 32), unique per ``n``."""
    bits = dp.mix(seed, n) << 56 | dp.mix(seed + 1, n) >> 8
    return "01" + base64.b32encode(bits.to_bytes(15, "big")).decode().translate(_CROCKFORD)


def make_event(event: tuple, query: str) -> dict:
    """An ``/api/v4/events`` item with its string id, values and ``_embedded.entity``."""
    eid, kind, entity_type, entity_id, by, before, after, t = event
    path = f"/api/v4/{_PLURAL[entity_type]}/{entity_id}"
    return {"id": eid, "type": kind, "entity_id": entity_id, "entity_type": entity_type, "created_by": by,
            "created_at": t, "value_after": after, "value_before": before, "account_id": ACCOUNT_ID,
            "_links": _make_link(f"/api/v4/events/{eid}"),
            "_embedded": {"entity": {"id": entity_id, "_links": _make_link(path)}}}
