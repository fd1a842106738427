"""The store's typed rows: each table's columns, and one function per entity building its rows.

A row is a dict by column name, so adding a column is one edit here (its name and type in
:data:`TABLES`, its value in the entity's function), and :func:`typed_frame` refuses rows whose
columns differ from the table's.  :func:`page_items` unwraps one HAL list page.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Iterator, Mapping

import pandas as pd

from .errors import StoreError

#: Typed tables: name -> columns (name, DuckDB type).
TABLES: dict[str, list[tuple[str, str]]] = {
    "account": [("id", "BIGINT"), ("name", "VARCHAR"), ("subdomain", "VARCHAR"), ("timezone", "VARCHAR"),
                ("currency", "VARCHAR"), ("country", "VARCHAR")],
    "users": [("id", "BIGINT"), ("name", "VARCHAR"), ("email", "VARCHAR"), ("lang", "VARCHAR"),
              ("is_admin", "BOOLEAN"), ("is_active", "BOOLEAN"), ("is_free", "BOOLEAN"), ("group_id", "BIGINT")],
    "pipelines": [("id", "BIGINT"), ("name", "VARCHAR"), ("sort", "BIGINT"), ("is_main", "BOOLEAN"),
                  ("is_archive", "BOOLEAN")],
    "statuses": [("id", "BIGINT"), ("pipeline_id", "BIGINT"), ("name", "VARCHAR"), ("sort", "BIGINT"),
                 ("type", "BIGINT"), ("color", "VARCHAR")],
    "lead_custom_fields": [("id", "BIGINT"), ("name", "VARCHAR"), ("code", "VARCHAR"), ("type", "VARCHAR"),
                           ("sort", "BIGINT")],
    "leads": [("id", "BIGINT"), ("name", "VARCHAR"), ("price", "DOUBLE"), ("responsible_user_id", "BIGINT"),
              ("status_id", "BIGINT"), ("pipeline_id", "BIGINT"), ("created_by", "BIGINT"),
              ("updated_by", "BIGINT"), ("created_at", "BIGINT"), ("updated_at", "BIGINT"),
              ("closed_at", "BIGINT"), ("loss_reason_id", "BIGINT"), ("is_deleted", "BOOLEAN")],
    "lead_contacts": [("lead_id", "BIGINT"), ("contact_id", "BIGINT"), ("is_main", "BOOLEAN"), ("position", "INTEGER")],
    "lead_companies": [("lead_id", "BIGINT"), ("company_id", "BIGINT")],
    "contacts": [("id", "BIGINT"), ("name", "VARCHAR"), ("responsible_user_id", "BIGINT"), ("created_by", "BIGINT"),
                 ("created_at", "BIGINT"), ("updated_at", "BIGINT"), ("is_deleted", "BOOLEAN")],
    "companies": [("id", "BIGINT"), ("name", "VARCHAR"), ("responsible_user_id", "BIGINT"), ("created_by", "BIGINT"),
                  ("created_at", "BIGINT"), ("updated_at", "BIGINT"), ("is_deleted", "BOOLEAN")],
    "tasks": [("id", "BIGINT"), ("created_by", "BIGINT"), ("updated_by", "BIGINT"), ("created_at", "BIGINT"),
              ("updated_at", "BIGINT"), ("responsible_user_id", "BIGINT"), ("entity_id", "BIGINT"),
              ("entity_type", "VARCHAR"), ("is_completed", "BOOLEAN"), ("task_type_id", "BIGINT"),
              ("text", "VARCHAR"), ("result_text", "VARCHAR"), ("complete_till", "BIGINT"), ("duration", "BIGINT")],
    "calls": [("id", "BIGINT"), ("entity_type", "VARCHAR"), ("entity_id", "BIGINT"), ("note_type", "VARCHAR"),
              ("created_by", "BIGINT"), ("responsible_user_id", "BIGINT"), ("created_at", "BIGINT"),
              ("updated_at", "BIGINT"), ("uniq", "VARCHAR"), ("duration", "BIGINT"), ("call_status", "BIGINT"),
              ("phone", "VARCHAR"), ("source", "VARCHAR")],
    "events": [("id", "VARCHAR"), ("seq", "BIGINT"), ("type", "VARCHAR"), ("entity_type", "VARCHAR"),
               ("entity_id", "BIGINT"), ("created_by", "BIGINT"), ("created_at", "BIGINT"),
               ("status_before", "BIGINT"), ("pipeline_before", "BIGINT"), ("status_after", "BIGINT"),
               ("pipeline_after", "BIGINT"), ("responsible_before", "BIGINT"), ("responsible_after", "BIGINT"),
               ("note_id", "BIGINT")],
    "custom_field_values": [("entity_type", "VARCHAR"), ("entity_id", "BIGINT"), ("field_id", "BIGINT"),
                            ("field_name", "VARCHAR"), ("field_code", "VARCHAR"), ("field_type", "VARCHAR"),
                            ("position", "INTEGER"), ("value", "VARCHAR"), ("enum_id", "BIGINT")],
}

#: Raw entity -> (typed table keyed by ``id``, key column of child tables to clear).
ENTITIES: dict[str, tuple[str, dict[str, str]]] = {
    "account": ("account", {}),
    "users": ("users", {}),
    "pipelines": ("pipelines", {"statuses": "pipeline_id"}),
    "lead_custom_fields": ("lead_custom_fields", {}),
    "leads": ("leads", {"lead_contacts": "lead_id", "lead_companies": "lead_id"}),
    "contacts": ("contacts", {}),
    "companies": ("companies", {}),
    "tasks": ("tasks", {}),
    "lead_notes": ("calls", {}),
    "contact_notes": ("calls", {}),
    "events": ("events", {}),
}
#: Raw entity -> the `_embedded` key of its list pages, where the two differ.
COLLECTIONS = {"lead_notes": "notes", "contact_notes": "notes", "lead_custom_fields": "custom_fields"}
CF_ENTITY = {"leads": "lead", "contacts": "contact", "companies": "company"}
def as_int(value: Any) -> int | None:
    """An integer, or None for anything that is not one (booleans, "", junk)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _first(values: Any, key: str) -> dict:
    if isinstance(values, list) and values and isinstance(values[0], dict):
        inner = values[0].get(key)
        return inner if isinstance(inner, dict) else {}
    return {}


Rows = Iterator[tuple[str, dict[str, Any]]]


def _account_rows(it: dict) -> Rows:
    dts = (it.get("_embedded") or {}).get("datetime_settings") or {}
    yield "account", {"id": it["id"], "name": it.get("name"), "subdomain": it.get("subdomain"),
                      "timezone": dts.get("timezone"), "currency": it.get("currency"), "country": it.get("country")}


def _user_rows(it: dict) -> Rows:
    rights = it.get("rights") or {}
    yield "users", {"id": it["id"], "name": it.get("name"), "email": it.get("email"), "lang": it.get("lang"),
                    "is_admin": bool(rights.get("is_admin")), "is_active": rights.get("is_active", True) is not False,
                    "is_free": bool(rights.get("is_free")), "group_id": as_int(rights.get("group_id"))}


def _pipeline_rows(it: dict) -> Rows:
    yield "pipelines", {"id": it["id"], "name": it.get("name"), "sort": as_int(it.get("sort")),
                        "is_main": bool(it.get("is_main")), "is_archive": bool(it.get("is_archive"))}
    for st in (it.get("_embedded") or {}).get("statuses") or []:
        yield "statuses", {"id": st["id"], "pipeline_id": it["id"], "name": st.get("name"),
                           "sort": as_int(st.get("sort")), "type": as_int(st.get("type")), "color": st.get("color")}


def _custom_field_rows(it: dict) -> Rows:
    yield "lead_custom_fields", {"id": it["id"], "name": it.get("name"), "code": it.get("code"),
                                 "type": it.get("type"), "sort": as_int(it.get("sort"))}


def _lead_rows(it: dict) -> Rows:
    if it.get("is_deleted"):  # what a full sync can know of a deleted lead (with=only_deleted, events)
        yield "leads", deleted_lead_row(it["id"])
        return
    yield "leads", {"id": it["id"], "name": it.get("name"), "price": _float(it.get("price")),
                    **{c: as_int(it.get(c)) for c in ("responsible_user_id", "status_id", "pipeline_id", "created_by",
                                                    "updated_by", "created_at", "updated_at", "closed_at",
                                                    "loss_reason_id")},
                    "is_deleted": False}
    emb = it.get("_embedded") or {}
    for pos, link in enumerate(emb.get("contacts") or []):
        yield "lead_contacts", {"lead_id": it["id"], "contact_id": link["id"], "is_main": bool(link.get("is_main")),
                                "position": pos}
    for link in emb.get("companies") or []:
        yield "lead_companies", {"lead_id": it["id"], "company_id": link["id"]}
    yield from _custom_value_rows("lead", it)


def deleted_lead_row(lead_id: int) -> dict[str, Any]:
    """The ``leads`` row of a deleted lead: its id, marked deleted, and nothing else."""
    return {**dict.fromkeys(c for c, _ in TABLES["leads"]), "id": lead_id, "is_deleted": True}


def _party_rows(table: str) -> Callable[[dict], Rows]:
    def rows(it: dict) -> Rows:
        yield table, {"id": it["id"], "name": it.get("name"),
                      **{c: as_int(it.get(c)) for c in ("responsible_user_id", "created_by", "created_at", "updated_at")},
                      "is_deleted": bool(it.get("is_deleted"))}
        yield from _custom_value_rows(CF_ENTITY[table], it)
    return rows


def _custom_value_rows(kind: str, it: dict) -> Rows:
    for cf in it.get("custom_fields_values") or []:
        for pos, val in enumerate(cf.get("values") or []):
            value = val.get("value") if isinstance(val, dict) else val
            yield "custom_field_values", {
                "entity_type": kind, "entity_id": it["id"], "field_id": as_int(cf.get("field_id")),
                "field_name": cf.get("field_name"), "field_code": cf.get("field_code"),
                "field_type": cf.get("field_type"), "position": pos,
                "value": None if value is None else (value if isinstance(value, str) else json.dumps(value)),
                "enum_id": as_int(val.get("enum_id")) if isinstance(val, dict) else None}


def _task_rows(it: dict) -> Rows:
    result = it.get("result")
    yield "tasks", {"id": it["id"], **{c: as_int(it.get(c)) for c in (
        "created_by", "updated_by", "created_at", "updated_at", "responsible_user_id", "entity_id")},
        "entity_type": it.get("entity_type"), "is_completed": bool(it.get("is_completed")),
        "task_type_id": as_int(it.get("task_type_id")), "text": it.get("text"),
        "result_text": result.get("text") if isinstance(result, dict) else None,
        "complete_till": as_int(it.get("complete_till")), "duration": as_int(it.get("duration"))}


def _note_rows(kind: str) -> Callable[[dict], Rows]:
    def rows(it: dict) -> Rows:
        if it.get("note_type") not in ("call_in", "call_out"):
            return
        params = it.get("params") or {}
        yield "calls", {"id": it["id"], "entity_type": kind, "entity_id": as_int(it.get("entity_id")),
                        "note_type": it["note_type"], "created_by": as_int(it.get("created_by")),
                        "responsible_user_id": as_int(it.get("responsible_user_id")),
                        "created_at": as_int(it.get("created_at")), "updated_at": as_int(it.get("updated_at")),
                        "uniq": str(params["uniq"]) if params.get("uniq") else None,
                        "duration": as_int(params.get("duration")), "call_status": as_int(params.get("call_status")),
                        "phone": _text(params.get("phone")), "source": _text(params.get("source"))}
    return rows


def _event_rows(it: dict) -> Rows:
    before, after = it.get("value_before"), it.get("value_after")
    sb, sa = _first(before, "lead_status"), _first(after, "lead_status")
    rb, ra = _first(before, "responsible_user"), _first(after, "responsible_user")
    yield "events", {"id": str(it["id"]), "seq": None, "type": it.get("type"), "entity_type": it.get("entity_type"),
                     "entity_id": as_int(it.get("entity_id")), "created_by": as_int(it.get("created_by")),
                     "created_at": as_int(it.get("created_at")), "status_before": as_int(sb.get("id")),
                     "pipeline_before": as_int(sb.get("pipeline_id")), "status_after": as_int(sa.get("id")),
                     "pipeline_after": as_int(sa.get("pipeline_id")), "responsible_before": as_int(rb.get("id")),
                     "responsible_after": as_int(ra.get("id")), "note_id": as_int(_first(after, "note").get("id"))}


#: Raw entity -> the function giving one item's typed rows as ``(table, {column: value})``.
ROWS: dict[str, Callable[[dict], Rows]] = {
    "account": _account_rows, "users": _user_rows, "pipelines": _pipeline_rows,
    "lead_custom_fields": _custom_field_rows, "leads": _lead_rows, "contacts": _party_rows("contacts"),
    "companies": _party_rows("companies"), "tasks": _task_rows, "lead_notes": _note_rows("lead"),
    "contact_notes": _note_rows("contact"), "events": _event_rows,
}


def typed_rows(entity: str, items: Iterable[dict]) -> dict[str, list[dict[str, Any]]]:
    """Typed rows (by column name) for one batch of raw items of ``entity``."""
    out: dict[str, list[dict]] = {}
    build = ROWS[entity]
    for it in items:
        for table, row in build(it):
            out.setdefault(table, []).append(row)
    return out


def page_items(entity: str, payload: Mapping[str, Any] | None) -> list[dict]:
    """The items of one HAL list page of ``entity`` (``[]`` for a 204 answer; the account is one item)."""
    if not payload:
        return []
    if entity == "account":
        return [dict(payload)]
    collection = COLLECTIONS.get(entity, entity)
    items = (payload.get("_embedded") or {}).get(collection)
    if not isinstance(items, list):
        raise StoreError(f"a page of {entity} has no _embedded.{collection}: not an amoCRM v4 list answer")
    return items


def typed_frame(table: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows of ``table`` (dicts by column name) as a frame with the table's columns and types."""
    cols = TABLES[table]
    if rows and set(rows[0]) != {c for c, _ in cols}:
        raise StoreError(f"rows for {table} have columns {sorted(rows[0])}, the table {[c for c, _ in cols]}")
    frame = pd.DataFrame({name: [r[name] for r in rows] for name, _ in cols})
    for name, kind in cols:
        if kind in ("BIGINT", "INTEGER"):
            frame[name] = frame[name].astype("Int64")
        elif kind == "DOUBLE":
            frame[name] = frame[name].astype("Float64")
        elif kind == "BOOLEAN":
            frame[name] = frame[name].astype("boolean")
        else:
            frame[name] = frame[name].astype("object")
    return frame
