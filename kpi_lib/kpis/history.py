"""The facts of the whole history that depend on the data only, never on params (§0, §3).

Every lead by id, every responsible change on a lead, every de-duplicated call with its caller,
connected flag and lead (own, or mapped from a contact with the 600 s rule and ``owner_at``),
every status change on a lead with whether it advances the lead, each lead's first calls (the
first call, the first connected call, ``t1`` and what followed the first connected call), each
won or lost lead with its owner at the close, each completed task's completion time, every
distinct task text with its words after the §6 cleaning, and every task with codes for its
texts, its relevance (§6 R) and whether its lead is deleted.  Which leads count (params
``pipelines``), the report timezone and the FCR window are applied when the facts are read
(:mod:`kpi_lib.kpis.facts`).

Building them reads every call and event, the costliest part of a report on a big account.
:func:`save_facts` therefore keeps them in the store as tables, stamped with the store's data
generation (changed by every write, see :meth:`kpi_lib.store.Store.mark_changed`); the sync and
the demo build call it.  :func:`open_history` returns the stored tables while their stamp matches
the data, else builds the same tables as temporary ones on the reader's connection, so a report
reads the same facts either way.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..store import GENERATION_KEY, Store
from .common import LOST, MAP_SLACK_S, WON, clean_words

if TYPE_CHECKING:  # pragma: no cover
    import duckdb

#: Bumped whenever the tables' SQL changes: stored facts of another version are not read.
FACTS_VERSION = 10
#: The meta key holding the stored facts' stamp.
FACTS_KEY = "facts"

#: Every lead row with what the contact-call mapping reads.
_LEADS_SQL = """
SELECT CAST(id AS DOUBLE) AS id, CAST(created_at AS DOUBLE) AS created_at, CAST(closed_at AS DOUBLE) AS closed_at,
       CAST(responsible_user_id AS DOUBLE) AS owner, coalesce(is_deleted, false) AS deleted,
       CAST(price AS DOUBLE) AS price, CAST(status_id AS DOUBLE) AS status_id, CAST(pipeline_id AS DOUBLE) AS pipeline_id
FROM leads
"""

#: Responsible changes on leads, the first of each second in API order (for ``owner_at`` in SQL).
_CHANGES_SQL = """
SELECT lead_id, t, before FROM {owners} WHERE t IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY lead_id, t ORDER BY seq ASC NULLS LAST) = 1
"""

#: Every responsible change on a lead in time order, then API order (``owner_at`` in Python reads them).
_OWNERS_SQL = """
SELECT CAST(entity_id AS DOUBLE) AS lead_id, CAST(created_at AS DOUBLE) AS t, CAST(seq AS DOUBLE) AS seq,
       CAST(responsible_before AS DOUBLE) AS before, CAST(responsible_after AS DOUBLE) AS after
FROM events WHERE type = 'entity_responsible_changed' AND entity_type = 'lead' ORDER BY created_at, seq
"""

#: De-duplicated call notes (the first of each ``uniq`` by time, then id).
_CALLS0_SQL = """
WITH dups AS (SELECT uniq FROM calls WHERE uniq <> '' GROUP BY uniq HAVING count(*) > 1),
repeated AS (SELECT c.rowid AS r FROM calls c SEMI JOIN dups d ON d.uniq = c.uniq
             QUALIFY row_number() OVER (PARTITION BY c.uniq ORDER BY c.created_at ASC NULLS LAST,
                                                                   c.id ASC NULLS LAST) > 1)
SELECT CAST(id AS DOUBLE) AS id, coalesce(entity_type = 'contact', false) AS on_contact,
       CAST(entity_id AS DOUBLE) AS entity_id, coalesce(note_type = 'call_in', false) AS call_in,
       coalesce(note_type = 'call_out', false) AS call_out, CAST(created_at AS DOUBLE) AS t,
       CAST(CASE WHEN responsible_user_id IS NULL OR responsible_user_id = 0 THEN created_by
                 ELSE responsible_user_id END AS DOUBLE) AS caller,
       coalesce(call_status = 4, false)
         OR ((call_status IS NULL OR call_status = 8) AND coalesce(duration, 0) >= 20) AS connected,
       CAST(coalesce(duration, 0) AS DOUBLE) AS duration, CAST(call_status AS DOUBLE) AS call_status
FROM calls c ANTI JOIN repeated r ON r.r = c.rowid
"""

#: Contact calls mapped to one of the contact's non-deleted leads (§0, the 600 s rule): the
#: lead the caller owned at the call first, then the latest created, then the highest id.
_MAP_SQL = f"""
WITH link AS (SELECT DISTINCT CAST(contact_id AS DOUBLE) AS contact, CAST(lead_id AS DOUBLE) AS lead_id
              FROM lead_contacts),
alive AS (SELECT link.contact, link.lead_id, l.created_at, l.closed_at, l.owner
          FROM link JOIN _history_leads l ON l.id = link.lead_id WHERE NOT l.deleted),
pairs AS (SELECT c.rowid AS row, c.t, c.caller, a.lead_id, a.created_at, a.owner
          FROM _history_calls0 c JOIN alive a ON a.contact = c.entity_id
          WHERE c.on_contact AND a.created_at <= c.t + {MAP_SLACK_S} AND (a.closed_at IS NULL OR a.closed_at >= c.t)),
owned AS (SELECT p.row, p.lead_id, p.created_at,
                 coalesce(CASE WHEN r.t IS NULL THEN p.owner ELSE r.before END = p.caller, false) AS own
          FROM pairs p ASOF LEFT JOIN _history_changes r ON r.lead_id = p.lead_id AND p.t < r.t)
SELECT row, arg_max(lead_id, (own, created_at, lead_id)) AS lead_id FROM owned GROUP BY row
"""

#: Every lead by id with what the facts read of it (the current owner, whether it is deleted) and its name.
_LEAD_ROWS_SQL = """
SELECT CAST(id AS BIGINT) AS id, CAST(price AS DOUBLE) AS price, CAST(responsible_user_id AS DOUBLE) AS owner,
       CAST(status_id AS DOUBLE) AS status_id, CAST(pipeline_id AS DOUBLE) AS pipeline_id,
       CAST(created_at AS DOUBLE) AS created_at, CAST(closed_at AS DOUBLE) AS closed_at,
       coalesce(is_deleted, false) AS deleted, name
FROM leads ORDER BY id, rowid
"""

#: Every won or lost lead with a close time, with its owner then (``owner_at(lead, closed_at)``), by id.
_CLOSED_SQL = f"""
SELECT CAST(l.id AS BIGINT) AS lead_id, l.price, l.status_id, l.closed_at,
       CASE WHEN r.t IS NULL THEN l.owner ELSE r.before END AS owner, l.pipeline_id, l.deleted
FROM _history_leads l ASOF LEFT JOIN _history_changes r ON r.lead_id = l.id AND l.closed_at < r.t
WHERE l.status_id IN ({WON}, {LOST}) AND l.closed_at IS NOT NULL
ORDER BY l.id
"""

#: Every call with its lead (own, or mapped from a contact), in time order.
_CALLS_SQL = """
SELECT c.*, CASE WHEN c.on_contact THEN m.lead_id ELSE c.entity_id END AS lead_id,
       c.on_contact AND m.lead_id IS NOT NULL AS mapped
FROM _history_calls0 c
LEFT JOIN _history_mapped m ON m.row = c.rowid
ORDER BY c.t ASC NULLS LAST, c.id ASC NULLS LAST
"""

#: ``lead_status_changed`` events on leads with whether each advances the lead (§0), in time order.
_STATUS_SQL = f"""
WITH sorts AS (SELECT id, pipeline_id, first(sort) AS sort FROM statuses GROUP BY id, pipeline_id)
SELECT CAST(e.entity_id AS DOUBLE) AS lead_id, CAST(e.created_at AS DOUBLE) AS t,
       CAST(e.created_by AS DOUBLE) AS actor,
       coalesce(e.status_after = {WON}, false)
         OR (coalesce(e.status_after <> {LOST}, true) AND coalesce(e.pipeline_after = e.pipeline_before, false)
             AND coalesce(a.sort > b.sort, false) AND e.status_before IS NOT NULL) AS advances,
       e.seq
FROM events e
LEFT JOIN sorts a ON a.id = e.status_after AND a.pipeline_id = e.pipeline_after
LEFT JOIN sorts b ON b.id = e.status_before AND b.pipeline_id = e.pipeline_before
WHERE e.type = 'lead_status_changed' AND e.entity_type = 'lead'
ORDER BY t ASC NULLS LAST, e.seq ASC NULLS LAST
"""

#: Per lead with timed calls: the first call (``fa``), the first connected call (``fc``), ``t1``
#: (the first call_out or connected call_in) and, after ``fc``, the first call_in, the first
#: connected call_out and the first advance (§3 reads whether they fall in the FCR window), with
#: what of its lead tells whether it counts and when it was created.
_FIRSTS_SQL = """
WITH firsts AS (
  SELECT lead_id, min(t) AS fa_t, arg_min({'caller': caller, 'connected': connected}, (t, id)) AS fa,
         min(t) FILTER (WHERE connected) AS fc_t, arg_min({'caller': caller}, (t, id)) FILTER (WHERE connected) AS fc,
         min(t) FILTER (WHERE call_out OR (call_in AND connected)) AS t1
  FROM {calls} WHERE lead_id IS NOT NULL AND t IS NOT NULL GROUP BY lead_id),
after AS (SELECT c.lead_id, min(c.t) FILTER (WHERE c.call_in) AS call_in_t,
                 min(c.t) FILTER (WHERE c.connected AND c.call_out) AS call_out_t
          FROM {calls} c JOIN firsts f ON f.lead_id = c.lead_id
          WHERE c.t > f.fc_t AND (c.call_in OR (c.connected AND c.call_out)) GROUP BY c.lead_id),
moves AS (SELECT s.lead_id, min(s.t) AS t FROM {status} s JOIN firsts f ON f.lead_id = s.lead_id
          WHERE s.advances AND s.t > f.fc_t GROUP BY s.lead_id)
SELECT f.lead_id, f.fa_t, CAST(f.fa.caller AS DOUBLE) AS fa_caller, coalesce(f.fa.connected, false) AS fa_connected,
       f.fc_t, CAST(f.fc.caller AS DOUBLE) AS fc_caller, f.t1, a.call_in_t AS fc_next_call_in_t,
       a.call_out_t AS fc_next_call_out_t, m.t AS fc_next_advance_t, l.id IS NOT NULL AS lead_known,
       coalesce(l.is_deleted, false) AS lead_deleted, CAST(l.pipeline_id AS DOUBLE) AS pipeline_id,
       CAST(l.created_at AS DOUBLE) AS created_at
FROM firsts f LEFT JOIN after a ON a.lead_id = f.lead_id LEFT JOIN moves m ON m.lead_id = f.lead_id
LEFT JOIN leads l ON l.id = f.lead_id
ORDER BY f.lead_id
"""

#: Completed tasks with their completion time: the latest ``task_completed`` event, else the
#: task's last update, in time order.
_DONE_SQL = """
WITH done AS (SELECT entity_id, max(created_at) AS t FROM events
              WHERE type = 'task_completed' AND entity_type = 'task' GROUP BY entity_id)
SELECT t.id, CAST(coalesce(d.t, t.updated_at) AS DOUBLE) AS done_at
FROM tasks t LEFT JOIN done d ON d.entity_id = t.id
WHERE coalesce(t.is_completed, false)
ORDER BY done_at ASC NULLS LAST
"""

#: Every task with its completion time, the codes of its text and result (-1 for none), its lead
#: (a task on a lead), whether that lead is deleted, and whether it is relevant (§6 R: its lead, or
#: a lead linked to its contact or company that is not deleted, was open when it was created), by id.
_TASKS_SQL = """
WITH linked AS (SELECT 'contacts' AS kind, c.contact_id AS entity_id, l.closed_at
                FROM lead_contacts c JOIN leads l ON l.id = c.lead_id WHERE NOT coalesce(l.is_deleted, false)
                UNION ALL
                SELECT 'companies', c.company_id, l.closed_at
                FROM lead_companies c JOIN leads l ON l.id = c.lead_id WHERE NOT coalesce(l.is_deleted, false)),
reached AS (SELECT DISTINCT t.id FROM tasks t JOIN linked k ON k.kind = t.entity_type AND k.entity_id = t.entity_id
            WHERE k.closed_at IS NULL OR k.closed_at > t.created_at)
SELECT CAST(t.id AS DOUBLE) AS id, CAST(t.created_by AS DOUBLE) AS created_by,
       CAST(t.created_at AS DOUBLE) AS created_at, CAST(t.responsible_user_id AS DOUBLE) AS responsible,
       CAST(t.entity_id AS DOUBLE) AS entity_id,
       CAST(CASE t.entity_type WHEN 'leads' THEN 1 WHEN 'contacts' THEN 2 WHEN 'companies' THEN 3 ELSE 0 END
            AS TINYINT) AS etype,
       coalesce(t.is_completed, false) AS is_completed, d.done_at, CAST(coalesce(x.code, -1) AS BIGINT) AS text_code,
       CAST(coalesce(r.code, -1) AS BIGINT) AS result_code, CAST(t.complete_till AS DOUBLE) AS complete_till,
       CAST(CASE WHEN t.entity_type = 'leads' THEN t.entity_id END AS DOUBLE) AS lead_id,
       coalesce(l.is_deleted, false) AS lead_deleted,
       CASE WHEN t.entity_type = 'leads'
            THEN coalesce(l.id IS NOT NULL AND (l.closed_at IS NULL OR l.closed_at > t.created_at), false)
            ELSE g.id IS NOT NULL END AS relevant
FROM tasks t
LEFT JOIN {done} d ON d.id = t.id
LEFT JOIN (SELECT value, code FROM {texts} WHERE kind = 'text') x ON x.value = t.text
LEFT JOIN (SELECT value, code FROM {texts} WHERE kind = 'result') r ON r.value = t.result_text
LEFT JOIN leads l ON t.entity_type = 'leads' AND l.id = t.entity_id
LEFT JOIN reached g ON g.id = t.id
ORDER BY t.id ASC NULLS LAST
"""

#: The kinds of history tables.
KINDS = ("lead_rows", "owners", "calls", "closed", "status", "firsts", "done", "texts", "tasks")

_STEPS = (("_history_leads", _LEADS_SQL), ("_history_changes", _CHANGES_SQL), ("_history_calls0", _CALLS0_SQL),
          ("_history_mapped", _MAP_SQL))


def build_history(con: "duckdb.DuckDBPyConnection", stored: bool = False) -> dict[str, str]:
    """Build the history tables from the typed tables on ``con``; their names by kind.

    ``stored``: as the store's tables ``facts_<kind>`` of :data:`KINDS` (inside the caller's
    transaction), else as temporary ``_facts_<kind>`` tables of the connection.
    """
    prefix, create = ("facts_", "CREATE OR REPLACE TABLE") if stored else ("_facts_", "CREATE OR REPLACE TEMP TABLE")
    names = {kind: f"{prefix}{kind}" for kind in KINDS}
    con.execute(f"{create} {names['owners']} AS {_OWNERS_SQL}")
    try:
        for name, sql in _STEPS:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql.replace('{owners}', names['owners'])}")
        con.execute(f"{create} {names['calls']} AS {_CALLS_SQL}")
        con.execute(f"{create} {names['closed']} AS {_CLOSED_SQL}")
    finally:
        for name, _ in _STEPS:
            con.execute(f"DROP TABLE IF EXISTS {name}")
    con.execute(f"{create} {names['lead_rows']} AS {_LEAD_ROWS_SQL}")
    con.execute(f"{create} {names['status']} AS {_STATUS_SQL}")
    firsts = _FIRSTS_SQL.replace("{calls}", names["calls"]).replace("{status}", names["status"])
    con.execute(f"{create} {names['firsts']} AS {firsts}")
    con.execute(f"{create} {names['done']} AS {_DONE_SQL}")
    con.register("_history_texts", _texts(con))
    try:
        con.execute(f"{create} {names['texts']} AS SELECT CAST(kind AS VARCHAR) AS kind, CAST(code AS BIGINT) AS code,"
                    " CAST(value AS VARCHAR) AS value, CAST(words AS VARCHAR) AS words FROM _history_texts")
    finally:
        con.unregister("_history_texts")
    con.execute(f"{create} {names['tasks']} AS {_TASKS_SQL.format(done=names['done'], texts=names['texts'])}")
    return names


def _texts(con: "duckdb.DuckDBPyConnection") -> pd.DataFrame:
    """Every distinct task text (``kind`` 'text') and result text ('result') with its code (its
    position among the kind's texts in sort order) and its words after the §6 cleaning, joined by
    single spaces."""
    parts = []
    for kind, column in (("text", "text"), ("result", "result_text")):
        con.complete()
        values = sorted(r[0] for r in con.execute(f"SELECT DISTINCT {column} FROM tasks WHERE {column} IS NOT NULL")
                        .fetchall())
        parts.append(pd.DataFrame({"kind": kind, "code": np.arange(len(values), dtype="int64"),
                                   "value": pd.Series(values, dtype=object),
                                   "words": pd.Series([" ".join(clean_words(v)) for v in values], dtype=object)}))
    return pd.concat(parts, ignore_index=True)


def stored_history(con: "duckdb.DuckDBPyConnection") -> dict[str, str] | None:
    """The stored history tables' names by kind when their stamp matches the data, else None."""
    has_meta = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
                           " AND schema_name = 'main' AND table_name = 'meta'").fetchone()[0]
    if not has_meta:
        return None
    rows = dict(con.execute("SELECT key, value FROM main.meta WHERE key IN (?, ?)", [FACTS_KEY, GENERATION_KEY]).fetchall())
    generation = json.loads(rows[GENERATION_KEY]) if GENERATION_KEY in rows else None
    if FACTS_KEY not in rows or json.loads(rows[FACTS_KEY]) != _stamp(generation):
        return None
    return {kind: f"main.facts_{kind}" for kind in KINDS}


def open_history(con: "duckdb.DuckDBPyConnection") -> tuple[dict[str, str], bool]:
    """The history tables to read (the stored ones if current, else built now) and whether they are temporary."""
    stored = stored_history(con)
    return (stored, False) if stored is not None else (build_history(con), True)


def save_facts(store: "Store") -> None:
    """Build the history tables into ``store`` (open for writing) and stamp them with its data generation."""
    store.con.execute("SET enable_progress_bar = false")  # a sync's log, not a terminal's
    with store.transaction():
        build_history(store.con, stored=True)
        store.set_meta(FACTS_KEY, _stamp(store.get_meta(GENERATION_KEY)))


def save_account_facts(data_dir, account: str) -> None:
    """:func:`save_facts` for the account's store under ``data_dir`` (after a sync or a demo build)."""
    with Store.open(data_dir, account, read_only=False) as store:
        save_facts(store)


def _stamp(generation: str | None) -> dict:
    """The stamp of facts built from the data of ``generation`` by this version of the SQL."""
    return {"version": FACTS_VERSION, "generation": generation}
