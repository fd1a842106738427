"""How the store mirrors deletions and restores (kpi-definitions.md §0 "Deleted items").

Three ways an item leaves the account, and how each reaches the typed tables:

* **An event.** ``lead_deleted``/``lead_restored``, ``task_deleted``, ``contact_deleted``/
  ``contact_restored``, ``company_deleted``/``company_restored`` and ``entity_merged`` are applied
  as the store writes them (:func:`apply_events`): the latest of an entity's deletion and restore
  events decides its state.  A deleted lead becomes a row marked deleted; a deleted contact or
  company goes with its call notes and its links to leads.  A restored contact or company is
  queued (:data:`RESTORES`) for the sync to fetch again with its links and notes, which amoCRM
  brings back without moving their ``updated_at``.
* **The trash listing** (``with=only_deleted``): rows marked deleted, like any listed item.
* **Nothing at all.** An item gone from every listing without an event is found by a full sync:
  each raw item records the sync that last wrote it, and :func:`drop_unseen` takes out what a
  full listing did not bring again.

The functions take a :class:`kpi_lib.store.Store` inside a transaction.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pandas as pd

from .rows import CF_ENTITY, ENTITIES, deleted_lead_row, typed_rows

if TYPE_CHECKING:  # the store calls in here; nothing here calls the store's module
    from .store import Store

#: Events that mark a lead deleted or restored (the latest one wins).
LEAD_STATES = ("lead_deleted", "lead_restored")
#: Events that take a contact or a company out, or bring it back (the latest one wins).
PARTY_STATES = ("contact_deleted", "contact_restored", "company_deleted", "company_restored", "entity_merged")
#: Events that take something out of the typed tables.
DELETIONS = ("lead_deleted", "task_deleted", "contact_deleted", "company_deleted", "entity_merged")
#: Events that bring something back.
RESTORES = ("lead_restored", "contact_restored", "company_restored")
#: Kinds of items by raw entity, as events and typed tables name them.
KINDS = {"leads": "lead", "contacts": "contact", "companies": "company"}

_PARTY_STATE_SQL = (
    "SELECT entity_type, entity_id, arg_max(type, (created_at, seq)) AS latest FROM events "
    "WHERE entity_type IN ('contact', 'company') AND type IN ('contact_deleted', 'contact_restored', "
    "'company_deleted', 'company_restored', 'entity_merged') GROUP BY entity_type, entity_id")


def apply_events(store: "Store", events: list[dict], new: set[str]) -> None:
    """Take out of the typed tables what the deletion events among ``events`` delete.

    A lead whose latest ``lead_deleted``/``lead_restored`` event is a deletion becomes a row
    marked deleted (its links and field values go); a restored lead comes back from its last
    listed body.  A task with a ``task_deleted`` event at or after its last update goes.  A
    contact or company whose latest state event is a deletion (or a merge) goes with its call
    notes and its links to leads; one whose latest is a restore, and whose restore event is
    among ``new`` (ids not stored before), is queued for the sync to fetch again.
    """
    con = store.con
    settle_leads(store, sorted({e["entity_id"] for e in events
                                if e["type"] in LEAD_STATES and e["entity_type"] == "lead"}))
    tasks = [e for e in events if e["type"] == "task_deleted" and e["entity_type"] == "task"]
    if tasks:
        con.register("_gone", pd.DataFrame({"id": pd.array([e["entity_id"] for e in tasks], dtype="Int64"),
                                            "at": pd.array([e["created_at"] for e in tasks], dtype="Int64")}))
        con.execute("DELETE FROM raw WHERE entity = 'tasks' AND id IN (SELECT CAST(t.id AS VARCHAR) FROM tasks t "
                    "JOIN _gone g ON g.id = t.id WHERE coalesce(t.updated_at, 0) <= g.at)")
        con.execute("DELETE FROM tasks t USING _gone g WHERE g.id = t.id AND coalesce(t.updated_at, 0) <= g.at")
        con.unregister("_gone")
    touched = {(e["entity_type"], e["entity_id"]) for e in events
               if e["type"] in PARTY_STATES and e["entity_type"] in ("contact", "company")}
    if not touched:
        return
    restored_now = {(e["entity_type"], e["entity_id"]) for e in events
                    if e["type"] in ("contact_restored", "company_restored") and e["id"] in new}
    states = {(kind, item_id): latest for kind, item_id, latest in con.execute(_PARTY_STATE_SQL).fetchall()
              if (kind, item_id) in touched}
    for kind in ("contact", "company"):
        drop_parties(store, kind, sorted(i for (k, i), latest in states.items()
                                         if k == kind and latest not in RESTORES))
        queued = sorted(i for (k, i), latest in states.items()
                        if k == kind and latest in RESTORES and (k, i) in restored_now)
        if queued:
            con.executemany("INSERT OR REPLACE INTO restores VALUES (?, ?)", [[kind, i] for i in queued])


def deleted_parties(store: "Store") -> set[tuple[str, int]]:
    """(kind, id) of every contact and company whose latest state event is a deletion or merge."""
    return {(kind, item_id) for kind, item_id, latest in store.con.execute(_PARTY_STATE_SQL).fetchall()
            if latest not in RESTORES}


def settle_leads(store: "Store", ids: list[int]) -> None:
    """Give leads ``ids`` the state their latest ``lead_deleted``/``lead_restored`` event says."""
    if not ids:
        return
    con = store.con
    con.register("_ids", pd.DataFrame({"id": pd.array(ids, dtype="Int64")}))
    rows = con.execute(
        "SELECT entity_id, arg_max(type, (created_at, seq)) FROM events WHERE entity_type = 'lead' "
        "AND type IN ('lead_deleted', 'lead_restored') AND entity_id IN (SELECT id FROM _ids) "
        "GROUP BY entity_id").fetchall()
    con.unregister("_ids")
    gone = sorted(lead_id for lead_id, latest in rows if latest == "lead_deleted")
    drop_leads(store, gone)
    store._insert({"leads": [deleted_lead_row(lead_id) for lead_id in gone]})
    restore_leads(store, sorted({lead_id for lead_id, latest in rows if latest == "lead_restored"}))


def restore_leads(store: "Store", ids: list[int]) -> None:
    """Rows of restored leads still marked deleted, from their last listed body (the lists
    bring them anew once their ``updated_at`` moves), without links to deleted contacts."""
    if not ids:
        return
    con = store.con
    con.register("_ids", pd.DataFrame({"id": pd.array(ids, dtype="Int64")}))
    bodies = [json.loads(r[0]) for r in con.execute(
        "SELECT r.body FROM raw r JOIN leads t ON CAST(r.id AS BIGINT) = t.id WHERE r.entity = 'leads' "
        "AND t.is_deleted AND t.id IN (SELECT id FROM _ids)").fetchall()]
    con.unregister("_ids")
    bodies = [b for b in bodies if not b.get("is_deleted")]
    if not bodies:
        return
    gone = deleted_parties(store)
    for body in bodies:
        emb = body.get("_embedded") or {}
        for key, kind in (("contacts", "contact"), ("companies", "company")):
            if emb.get(key):
                emb[key] = [link for link in emb[key] if (kind, link.get("id")) not in gone]
    drop_leads(store, [b["id"] for b in bodies])
    store._insert(typed_rows("leads", bodies))


def drop_leads(store: "Store", ids: list[int]) -> None:
    """Delete the typed rows of leads ``ids`` (the lead, its links and field values)."""
    _drop_typed(store, "leads", ids)


def drop_parties(store: "Store", kind: str, ids: list[int]) -> None:
    """Delete contacts or companies ``ids`` with what hangs on them: raw bodies, call notes, links."""
    if not ids:
        return
    con = store.con
    entity = {"contact": "contacts", "company": "companies"}[kind]
    _drop_typed(store, entity, ids)
    con.register("_ids", pd.DataFrame({"id": pd.array(ids, dtype="Int64")}))
    statements = [f"DELETE FROM raw WHERE entity = '{entity}' AND id IN (SELECT CAST(id AS VARCHAR) FROM _ids)"]
    if kind == "contact":
        statements += ["DELETE FROM raw WHERE entity = 'contact_notes' AND id IN (SELECT CAST(id AS VARCHAR) "
                       "FROM calls WHERE entity_type = 'contact' AND entity_id IN (SELECT id FROM _ids))",
                       "DELETE FROM calls WHERE entity_type = 'contact' AND entity_id IN (SELECT id FROM _ids)",
                       "DELETE FROM lead_contacts WHERE contact_id IN (SELECT id FROM _ids)",
                       # the links left keep consecutive positions, as the leads now list them
                       "UPDATE lead_contacts SET position = n.p FROM (SELECT lead_id, contact_id, position, "
                       "row_number() OVER (PARTITION BY lead_id ORDER BY position) - 1 AS p FROM lead_contacts) n "
                       "WHERE lead_contacts.lead_id = n.lead_id AND lead_contacts.contact_id = n.contact_id "
                       "AND lead_contacts.position = n.position AND n.p <> n.position"]
    else:
        statements += ["DELETE FROM lead_companies WHERE company_id IN (SELECT id FROM _ids)"]
    for sql in statements:
        con.execute(sql)
    con.unregister("_ids")


def drop_unseen(store: "Store", entity: str, before: int) -> int:
    """Take out the items of ``entity`` last written before sync ``before``; returns their count.

    Called once a full listing of ``entity`` has been written since sync ``before`` began: what
    it did not bring again is gone from the account.  Only the item's own rows go (as a fresh
    sync would not have them); a lead that its events say is deleted stays a row marked deleted
    and is not counted.
    """
    con = store.con
    ids = [r[0] for r in con.execute("SELECT id FROM raw WHERE entity = ? AND coalesce(sync_no, 0) < ?",
                                     [entity, before]).fetchall()]
    if not ids:
        return 0
    con.register("_ids", pd.DataFrame({"id": ids}))
    con.execute("DELETE FROM raw WHERE entity = ? AND id IN (SELECT id FROM _ids)", [entity])
    con.unregister("_ids")
    numbers = [int(i) for i in ids]
    if entity in ("lead_notes", "contact_notes"):
        con.register("_ids", pd.DataFrame({"id": pd.array(numbers, dtype="Int64")}))
        con.execute("DELETE FROM calls WHERE entity_type = ? AND id IN (SELECT id FROM _ids)",
                    ["lead" if entity == "lead_notes" else "contact"])
        con.unregister("_ids")
    else:
        _drop_typed(store, entity, numbers)
    if entity == "leads":  # a lead its events say is deleted stays, as a row marked deleted
        settle_leads(store, numbers)
        con.register("_ids", pd.DataFrame({"id": pd.array(numbers, dtype="Int64")}))
        kept = con.execute("SELECT count(*) FROM leads WHERE id IN (SELECT id FROM _ids)").fetchall()[0][0]
        con.unregister("_ids")
        return len(ids) - kept
    return len(ids)


def _drop_typed(store: "Store", entity: str, ids: list[int]) -> None:
    """Delete the typed rows of items ``ids`` of ``entity``: its table, child tables and field values."""
    if not ids:
        return
    con = store.con
    table, children = ENTITIES[entity]
    con.register("_ids", pd.DataFrame({"id": pd.array(ids, dtype="Int64")}))
    con.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM _ids)")
    for child, key in children.items():
        con.execute(f"DELETE FROM {child} WHERE {key} IN (SELECT id FROM _ids)")
    if entity in CF_ENTITY:
        con.execute("DELETE FROM custom_field_values WHERE entity_type = ? AND entity_id IN (SELECT id FROM _ids)",
                    [CF_ENTITY[entity]])
    con.unregister("_ids")
