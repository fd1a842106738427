"""Per-item facts built once per context (kpi-definitions.md §0, §9).

Every lead, each lead's owner at any instant rebuilt from responsible changes, each won or lost
lead with its owner at close, each lead's first calls and whether the first connected call
resolved it, each task due with its completion time, text codes and relevance, and two
aggregates: each user's activity per local date (§5) and the leads each user worked per local
ISO week (§2).  Blocks group these by week × manager.

The row selection, the heavy joins and the two aggregates run as DuckDB SQL on the store's own
connection, so that only numbers come back to Python.  What depends on the data alone comes
from :mod:`kpi_lib.kpis.history`, kept in the store after a sync; here only the rows of the
window are read, with which leads count (params ``pipelines``), the FCR window and the report
timezone applied.  Each part of :data:`PARTS` is read when a block asks for it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from ..periods import offset_changes
from .common import WON, Span, num, scope, span_items, sort_key
from .history import open_history

if TYPE_CHECKING:  # pragma: no cover
    import duckdb
    import pyarrow as pa

    from .context import Context

#: Task ``entity_type`` codes (index = code): none or other, leads, contacts, companies.
ENTITY_TYPES = (None, "leads", "contacts", "companies")
#: The parts of the facts read from the window's items, with the attributes each sets.
PARTS: dict[str, tuple[str, ...]] = {
    "closed": ("closed",),
    "owners": ("responsible_events", "_resp_pos", "_resp_key", "_resp_before"),
    "links": ("main_contact", "first_win"),
    "calls": ("calls",),
    "first_calls": ("lead_calls",),
    "tasks": ("tasks", "task_texts", "result_texts", "task_words", "result_words"),
    "activity": ("activity",),
    "service": ("worked", "escalation_tasks", "supervisor_calls"),
}

#: Every lead with whether it counts (not deleted; with params ``pipelines``, in one of them): a
#: table, so that the queries joining it do not each cast a million leads again.
_LEADS_SQL = """
CREATE OR REPLACE TEMP TABLE _facts_leads AS
SELECT CAST(id AS DOUBLE) AS id, CAST(created_at AS DOUBLE) AS created_at,
       NOT coalesce(is_deleted, false) AND {counted} AS counted, status_id, CAST(closed_at AS DOUBLE) AS closed_at
FROM leads
"""

#: Counted won and lost leads closed in the window [$lo, $hi), with their owner at the close, by id.
_CLOSED_SQL = """
SELECT lead_id, price, status_id, closed_at, owner FROM {closed}
WHERE NOT deleted AND {counted} AND closed_at >= $lo AND closed_at < $hi ORDER BY lead_id
"""

#: Each lead's main contact (§1 "repeat"): the contact marked main, else the first by position,
#: else the first stored.
_MAIN_CONTACT_SQL = """
SELECT CAST(lead_id AS DOUBLE) AS lead, CAST(contact_id AS DOUBLE) AS contact FROM lead_contacts
QUALIFY row_number() OVER (PARTITION BY lead_id ORDER BY coalesce(is_main, false) DESC, position ASC NULLS LAST,
                                                         rowid) = 1
"""

#: Per contact, the earliest close of a counted won lead linked to it.
_FIRST_WIN_SQL = f"""
SELECT CAST(c.contact_id AS DOUBLE) AS contact, min(l.closed_at) AS first_win
FROM lead_contacts c JOIN _facts_leads l ON l.id = c.lead_id
WHERE l.counted AND l.status_id = {WON} AND l.closed_at IS NOT NULL AND c.contact_id IS NOT NULL
GROUP BY c.contact_id
"""

#: The window's calls that data quality notes (§9): contact calls that found no lead, and calls
#: without a ``call_status``.
_WINDOW_CALLS_SQL = """
SELECT * FROM {calls}
WHERE ((on_contact AND NOT mapped) OR call_status IS NULL) AND {where} ORDER BY t ASC NULLS LAST, id ASC NULLS LAST
"""

#: The first calls of counted leads whose first call or first connected call falls in the window
#: [$lo, $hi) or who were created in it (the only ones a block over the window reads), with whether
#: ``fc`` resolved the lead (§3: no call_in, no connected call_out, an advance within $window after
#: it) and those first callback / repeat call / advance.
_LEAD_CALLS_SQL = """
WITH f AS (
  SELECT f.*, CASE WHEN f.fc_next_call_in_t <= f.fc_t + $window THEN f.fc_next_call_in_t END AS callback_t,
         CASE WHEN f.fc_next_call_out_t <= f.fc_t + $window THEN f.fc_next_call_out_t END AS repeat_t,
         f.fc_next_advance_t <= f.fc_t + $window AS advanced
  FROM {firsts} f
  WHERE f.lead_known AND NOT f.lead_deleted AND {counted}
    AND ((f.fa_t >= $lo AND f.fa_t < $hi) OR (f.fc_t >= $lo AND f.fc_t < $hi)
         OR (f.created_at >= $lo AND f.created_at < $hi)))
SELECT lead_id, fa_t, fa_caller, fa_connected, fc_t, fc_caller,
       fc_t IS NOT NULL AND callback_t IS NULL AND repeat_t IS NULL AND coalesce(advanced, false) AS fc_resolved,
       callback_t AS fc_callback_t, repeat_t AS fc_repeat_t, fc_t IS NOT NULL AND coalesce(advanced, false) AS fc_advanced,
       t1
FROM f ORDER BY lead_id
"""

#: Per user and local date (days since 1970) of the window, what makes a day active (§5): connected
#: calls with their talk seconds, status changes made and tasks completed.
_ACTIVITY_SQL = """
SELECT user_id, day, CAST(sum(calls) AS BIGINT) AS calls, CAST(sum(talk) AS DOUBLE) AS talk,
       CAST(sum(changes) AS BIGINT) AS changes, CAST(sum(done) AS BIGINT) AS done
FROM (SELECT caller AS user_id, {day} AS day, 1 AS calls, duration AS talk, 0 AS changes, 0 AS done
      FROM {calls} WHERE connected AND {where}
      UNION ALL
      SELECT actor, {day}, 0, 0, 1, 0 FROM {status} WHERE {where}
      UNION ALL
      SELECT responsible, {done_day}, 0, 0, 0, 1 FROM {tasks} WHERE {done_where})
WHERE user_id IS NOT NULL
GROUP BY user_id, day ORDER BY user_id, day
"""

#: Per user, counted lead and ISO week (of local dates) of the window: the leads the user worked (§2:
#: called, moved, or completed a task on), each once, in no order.  The rows are made distinct
#: before the leads that count are looked up: a third as many look-ups.
_WORKED_SQL = """
WITH worked AS MATERIALIZED (
  SELECT DISTINCT user_id, lead_id, CAST(floor(({day} + 3) / 7.0) AS BIGINT) AS week
  FROM (SELECT caller AS user_id, lead_id, t FROM {calls} WHERE {where}
        UNION ALL
        SELECT actor, lead_id, t FROM {status} WHERE {where}
        UNION ALL
        SELECT responsible, lead_id, done_at FROM {tasks} WHERE lead_id IS NOT NULL AND {done_where})
  WHERE user_id IS NOT NULL)
SELECT w.* FROM worked w SEMI JOIN _facts_leads l ON l.id = w.lead_id AND l.counted
"""

#: Tasks on counted leads created in the window for a supervisor (§2 E1), by id.
_ESCALATION_TASKS_SQL = """
SELECT t.id, t.created_at, t.created_by, t.lead_id, t.responsible, x.value AS text
FROM {tasks} t SEMI JOIN _facts_leads l ON l.id = t.lead_id AND l.counted
LEFT JOIN {texts} x ON x.kind = 'text' AND x.code = t.text_code
WHERE t.responsible IN ({supervisors}) AND {where}
ORDER BY t.id ASC NULLS LAST
"""

#: Supervisors' connected calls on counted leads in the window (§2 E3), in time order.
_SUPERVISOR_CALLS_SQL = """
SELECT c.t, c.lead_id, c.duration, c.caller FROM {calls} c SEMI JOIN _facts_leads l ON l.id = c.lead_id AND l.counted
WHERE c.connected AND c.caller IN ({supervisors}) AND {where}
ORDER BY c.t ASC NULLS LAST, c.id ASC NULLS LAST
"""

#: The tasks the SMART audit reads (§6), in id order: due in the window [$lo, $hi), or open and due
#: around ``now`` ($near_lo, $near_hi), with their completion time and text codes.
_TASKS_SQL = """SELECT * FROM {tasks} WHERE (complete_till >= $lo AND complete_till < $hi)
   OR (NOT is_completed AND complete_till >= $near_lo AND complete_till < $near_hi)"""

#: The texts and results of codes ``_task_codes`` (``kind, code``) with their cleaned words.
_TASK_TEXTS_SQL = "SELECT x.kind, x.code, x.value, x.words FROM {texts} x SEMI JOIN _task_codes c USING (kind, code)"


class Facts:
    """The per-item facts every block starts from, built once from the store.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A connection holding the store's typed tables (the store's own, or frames registered
        under the tables' names).
    pipelines : list of int or None
        Params ``pipelines``: counted leads are in one of them.

    Attributes
    ----------
    leads : DataFrame
        ``id, owner, pipeline_id, created_at, deleted, counted`` sorted by id; ``owner`` is the
        current ``responsible_user_id`` (a lead's name: :meth:`lead_names`; the closed ones:
        :attr:`closed`).
    calls : DataFrame
        The report week's de-duplicated call notes that data quality notes (contact calls that
        found no lead, calls without a ``call_status``): ``id, on_contact, entity_id, call_in,
        call_out, t, caller, connected, duration, call_status, lead_id`` (own or mapped lead, NaN
        when unmapped) and ``mapped`` (a contact call that found a lead).
    activity : DataFrame
        Per user and local date of the window (``user_id, day``: days since 1970 in the report
        timezone) with a connected call, a status change made or a task completed: ``calls``
        (connected), ``talk`` (their seconds), ``changes``, ``done`` (§5).
    worked : DataFrame
        The counted leads each user called, moved or completed a lead task on, once per ISO week of
        local dates: ``user_id, lead_id, week`` (weeks since 1970, Monday 1969-12-29 being 0) (§2).
    escalation_tasks : DataFrame
        Tasks on counted leads created in the window for a supervisor: ``id, created_at,
        created_by, lead_id, responsible, text`` (§2 E1).
    supervisor_calls : DataFrame
        Supervisors' connected calls on counted leads: ``t, lead_id, duration, caller`` (§2 E3).
    tasks : DataFrame
        Tasks due in the window or open and due around ``now`` (§6), in id order, with ``done_at``
        (completion time of completed tasks, else NaN), ``etype`` (see :data:`ENTITY_TYPES`),
        ``row`` (position in this frame), ``text_code`` / ``result_code`` (positions in
        :attr:`task_texts` / :attr:`result_texts`, -1 for none; by code, with the words after
        the §6 cleaning in :attr:`task_words` / :attr:`result_words`, None for a code no task of
        the window has), ``lead_id`` (a task on a lead),
        ``lead_deleted`` (that lead is deleted) and ``relevant`` (§6 R).
    closed : DataFrame
        Counted won and lost leads closed in the window: ``lead_id, price, status_id, closed_at,
        owner`` (``owner_at(lead, closed_at)``).
    responsible_events : DataFrame
        Responsible changes on leads (``lead_id, t, seq, before, after``), which :meth:`owner_at` reads.
    main_contact : Series
        Each linked lead's main contact id (NaN when the link has none), by lead id.
    first_win : Series
        Per contact id, the earliest ``closed_at`` of a counted won lead linked to it.
    """

    def __init__(self, con: "duckdb.DuckDBPyConnection", pipelines=None,
                 window_days: float = 7, lo: float = -np.inf, hi: float = np.inf, now: float | None = None,
                 parts=tuple(PARTS), reopen=None, tz: ZoneInfo | None = None, supervisors=(),
                 week: tuple[float, float] | None = None):
        """``parts``: the parts of :data:`PARTS` to read now; the others are read at their first
        use through ``reopen()``, a context manager giving a connection to the same data.  ``tz``:
        the report timezone, whose local dates the ``activity`` and ``service`` parts count (default
        UTC); ``supervisors``: the supervisors' user ids, whose tasks and calls ``service`` reads;
        ``week``: the instants of the report week, whose calls ``calls`` holds (default: the window's)."""
        self.lo, self.hi = float(lo), float(hi)
        self._week = (self.lo, self.hi) if week is None else (float(week[0]), float(week[1]))
        self._pipelines, self._window_s, self._now, self._reopen = pipelines, window_days * 86400.0, now, reopen
        self._tz, self._supervisors = tz or ZoneInfo("UTC"), tuple(int(s) for s in supervisors)
        self._changes: list[tuple[int, int]] | None = None
        self._read(con, ("leads",) + tuple(parts))

    def __getattr__(self, name: str):
        """An attribute of a part not read yet: read the part (see :data:`PARTS`)."""
        for part, names in PARTS.items():
            if name in names and self.__dict__.get("_reopen") is not None:
                with self._reopen() as con:
                    self._read(con, (part,))
                return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _read(self, con: "duckdb.DuckDBPyConnection", parts: tuple[str, ...]) -> None:
        """Read ``parts`` (of :data:`PARTS`, or ``leads``: every lead) from ``con``."""
        wanted = set(parts)
        history, leads = bool(wanted - {"links"}), bool({"links", "service"} & wanted)
        with self._session(con, history=history, leads=leads) as tables:
            if "leads" in parts:
                self._build_leads(con, tables)
            if "closed" in parts:
                self.closed = fetch(con, _CLOSED_SQL.format(counted=self._counted("pipeline_id"), **tables),
                                    {"lo": self.lo, "hi": self.hi})
            if "owners" in parts:
                self._build_owner_history(con, tables)
            if "links" in parts:
                self.main_contact = fetch(con, _MAIN_CONTACT_SQL).set_index("lead")["contact"]
                self.first_win = fetch(con, _FIRST_WIN_SQL).set_index("contact")["first_win"]
            if "calls" in parts:
                self._build_calls(con, tables)
            if "first_calls" in parts:
                self._build_first_calls(con, tables, self._window_s)
            if "tasks" in parts:
                self._build_tasks(con, tables, self._now)
            if "activity" in parts:
                self._build_activity(con, tables)
            if "service" in parts:
                self._build_service(con, tables)

    @contextmanager
    def _session(self, con: "duckdb.DuckDBPyConnection", history: bool = True, leads: bool = False):
        """With ``history``, the history tables' names (:func:`~kpi_lib.kpis.history.open_history`),
        and with ``leads`` the leads with whether they count as ``_facts_leads`` on ``con`` (for the
        links and the service); what it made is dropped after."""
        if leads:
            con.execute(_LEADS_SQL.format(counted=self._counted("pipeline_id")))
        tables, temporary = open_history(con) if history else ({}, False)
        try:
            yield tables
        finally:
            made = ("_facts_leads",) if leads else ()
            for name in made + (tuple(tables.values()) if temporary else ()):
                con.execute(f"DROP TABLE IF EXISTS {name}")

    def _counted(self, column: str) -> str:
        """SQL of whether a lead of the pipeline in ``column`` counts (params ``pipelines``)."""
        if not self._pipelines:
            return "true"
        return f"coalesce({column} IN ({', '.join(str(int(p)) for p in self._pipelines)}), false)"

    def calls_in(self, lo: float, hi: float) -> pd.DataFrame:
        """The calls data quality notes at instants ``[lo, hi)``: from the calls held when they cover
        them, else from the store for these instants alone."""
        held = "calls" in self.__dict__ and self._week[0] <= lo and hi <= self._week[1]
        if held or self._reopen is None:
            t = self.calls["t"].to_numpy()
            return self.calls.loc[(t >= lo) & (t < hi)]
        with self._reopen() as con, self._session(con) as tables:
            return fetch(con, _WINDOW_CALLS_SQL.format(where=_window(lo, hi), **tables))

    def covers(self, lo: float, hi: float) -> bool:
        """Whether the items held (calls, tasks, activity, worked leads) cover the instants ``[lo, hi)``."""
        return self.lo <= lo and hi <= self.hi

    # leads and their owners ---------------------------------------------------------------
    def _build_leads(self, con: "duckdb.DuckDBPyConnection", tables: dict[str, str]) -> None:
        columns = "id, owner, pipeline_id, created_at, deleted, name"
        table = _by_id(_arrow(con, f"SELECT {columns} FROM {tables['lead_rows']}"))
        self._names = table.column("name").combine_chunks()  # a take from one array, not from its chunks: faster
        cols = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names if name != "name"}
        counted = ~cols["deleted"]
        if self._pipelines:
            counted &= np.isin(cols["pipeline_id"], np.asarray(self._pipelines, dtype="float64"))
        self.leads = pd.DataFrame({**cols, "counted": counted}, copy=False)
        self.lead_ids = self.leads["id"].to_numpy(dtype="float64")

    def lead_pos(self, lead_ids) -> tuple[np.ndarray, np.ndarray]:
        """Row positions of ``lead_ids`` in :attr:`leads` and whether each is known."""
        ids = num(lead_ids)
        if len(self.lead_ids) == 0:
            return np.zeros(len(ids), dtype="int64"), np.zeros(len(ids), dtype=bool)
        pos = np.clip(np.searchsorted(self.lead_ids, ids), 0, len(self.lead_ids) - 1)
        return pos, self.lead_ids[pos] == ids

    def lead_names(self, lead_ids) -> np.ndarray:
        """Lead names for ``lead_ids`` (None when unknown)."""
        pos, known = self.lead_pos(lead_ids)
        names = (self._names.take(pos).to_pandas().to_numpy(dtype=object) if len(self._names)
                 else np.full(len(pos), None))
        return np.where(known, names, None)

    def lead_attr(self, lead_ids, column: str) -> np.ndarray:
        """A column of :attr:`leads` looked up for ``lead_ids`` (NaN/False when unknown)."""
        pos, known = self.lead_pos(lead_ids)
        column = self.leads[column].to_numpy()
        if column.dtype == bool:
            return column[pos] & known if len(column) else np.zeros(len(pos), dtype=bool)
        return np.where(known, column[pos], np.nan) if len(column) else np.full(len(pos), np.nan)

    def _build_owner_history(self, con: "duckdb.DuckDBPyConnection", tables: dict[str, str]) -> None:
        ev = fetch(con, f"SELECT * FROM {tables['owners']} ORDER BY t, seq")
        pos, known = self.lead_pos(ev["lead_id"])
        t, seq = num(ev["t"]), num(ev["seq"])
        keep = known & ~np.isnan(t)
        order = np.lexsort((seq[keep], t[keep], pos[keep]))
        self._resp_pos = pos[keep][order]
        self._resp_key = sort_key(self._resp_pos, t[keep][order])
        self._resp_before = num(ev["before"])[keep][order]
        self.responsible_events = ev
    def owner_at(self, lead_ids, t) -> np.ndarray:
        """``owner_at(lead, t)`` (§0): ``value_before`` of the earliest responsible change on the
        lead strictly after ``t`` (same-second events in API order), else the current owner."""
        pos, known = self.lead_pos(lead_ids)
        t = num(t)
        current = np.where(known, self.leads["owner"].to_numpy()[pos] if len(self.leads) else np.nan, np.nan)
        if len(self._resp_key) == 0:
            return current
        key = sort_key(pos, t)
        j = np.searchsorted(self._resp_key, key, side="right")
        jc = np.minimum(j, len(self._resp_key) - 1)
        hit = (j < len(self._resp_key)) & (self._resp_pos[jc] == pos) & known & ~np.isnan(t)
        return np.where(hit, self._resp_before[jc], current)

    # calls and status changes -------------------------------------------------------------
    def _build_calls(self, con: "duckdb.DuckDBPyConnection", tables: dict[str, str]) -> None:
        """The report week's calls that data quality notes."""
        self.calls = fetch(con, _WINDOW_CALLS_SQL.format(where=_window(*self._week), **tables))

    def _build_first_calls(self, con: "duckdb.DuckDBPyConnection", tables: dict[str, str], window_s: float) -> None:
        """The first calls of the leads the window reads, and whether they resolved the lead."""
        bounds = {"window": window_s, "lo": self.lo, "hi": self.hi}
        self.lead_calls = fetch(con, _LEAD_CALLS_SQL.format(counted=self._counted("f.pipeline_id"), **tables),
                                bounds).set_index("lead_id")

    def _local_day(self, column: str) -> str:
        """SQL of the local date of the instants of the window in ``column`` (see :func:`_local_day`)."""
        if self._changes is None:
            self._changes = offset_changes(self.lo, self.hi, self._tz)
        return _local_day(column, self._changes)

    def _build_activity(self, con: "duckdb.DuckDBPyConnection", tables: dict[str, str]) -> None:
        """Per user and local date of the window: connected calls, talk seconds, status changes, tasks completed."""
        self.activity = fetch(con, _ACTIVITY_SQL.format(
            where=_window(self.lo, self.hi), done_where=_window(self.lo, self.hi, "done_at"),
            day=self._local_day("t"), done_day=self._local_day("done_at"), **tables))

    def _build_service(self, con: "duckdb.DuckDBPyConnection", tables: dict[str, str]) -> None:
        """The leads worked per user and week, and the supervisors' tasks and calls of the window."""
        supervisors = ", ".join(str(s) for s in self._supervisors) or "NULL"
        self.worked = fetch(con, _WORKED_SQL.format(
            where=_window(self.lo, self.hi), done_where=_window(self.lo, self.hi, "done_at"),
            day=self._local_day("t"), **tables))
        self.escalation_tasks = fetch(con, _ESCALATION_TASKS_SQL.format(
            supervisors=supervisors, where=_window(self.lo, self.hi, "t.created_at"), **tables))
        self.supervisor_calls = fetch(con, _SUPERVISOR_CALLS_SQL.format(
            supervisors=supervisors, where=_window(self.lo, self.hi, "c.t"), **tables))

    # tasks ---------------------------------------------------------------------------------
    def _build_tasks(self, con: "duckdb.DuckDBPyConnection", tables: dict[str, str], now: float | None) -> None:
        near = (-np.inf, np.inf) if now is None else (now - 3 * 86400.0, now + 3 * 86400.0)
        bounds = {"lo": self.lo, "hi": self.hi, "near_lo": near[0], "near_hi": near[1]}
        out = _by_id(_arrow(con, _TASKS_SQL.format(**tables), bounds)).to_pandas()
        codes = {kind: np.unique(out[column].to_numpy()) for kind, column in (("text", "text_code"),
                                                                                ("result", "result_code"))}
        con.register("_task_codes", pd.DataFrame({"kind": np.repeat(list(codes), [len(c) for c in codes.values()]),
                                                  "code": np.concatenate(list(codes.values()))}))
        try:
            texts = con.execute(_TASK_TEXTS_SQL.format(**tables)).fetchall()
        finally:
            con.unregister("_task_codes")
        for kind, column, name in (("text", "text_code", "task"), ("result", "result_code", "result")):
            values, words = (np.full(int(out[column].to_numpy().max(initial=-1)) + 1, None, dtype=object)
                             for _ in range(2))
            for _, code, value, cleaned in (row for row in texts if row[0] == kind):
                values[code], words[code] = value, cleaned
            setattr(self, f"{name}_texts", values)
            setattr(self, f"{name}_words", words)
        out.insert(1, "row", np.arange(len(out)))
        self.tasks = out

    def task_column(self, rows, column: str) -> np.ndarray:
        """A column of :attr:`tasks` at the positions ``rows``; the store's ``text`` and
        ``result_text`` from their codes (None when missing)."""
        rows = np.asarray(rows, dtype="int64")
        codes = {"text": (self.tasks["text_code"], self.task_texts),
                 "result_text": (self.tasks["result_code"], self.result_texts)}
        if column not in codes:
            return self.tasks[column].to_numpy()[rows]
        code, values = codes[column]
        code = np.asarray(code, dtype="int64")[rows]
        table = np.append(np.asarray(values, dtype=object), None)
        return table[code]


def facts_of(ctx: "Context") -> Facts:
    """The context's :class:`Facts`, read from the store at first use (see
    :meth:`kpi_lib.kpis.context.Context.cover`)."""
    if ctx.facts is None:
        ctx.cover(*ctx.span)
    return ctx.facts


@span_items(renumber=False)
def closed_in(ctx: "Context", span: Span, status: int) -> pd.DataFrame:
    """``won(M, W)`` (``status=142``) or ``lost(M, W)`` (143) for every manager and week of the span."""
    closed = facts_of(ctx).closed
    return scope(ctx, closed.loc[closed["status_id"].to_numpy() == status], span, "closed_at", "owner")


def fetch(con: "duckdb.DuckDBPyConnection", sql: str, params: dict | None = None) -> pd.DataFrame:
    """A query's rows as a frame, through Arrow: for millions of rows several times faster than
    the DB-API result's ``df()``, and the same dtypes for these queries' columns (numbers as
    ``DOUBLE`` or ``TINYINT``/``BIGINT`` without nulls, flags without nulls).  A result of
    ``execute()`` left on the connection (a ``fetchone()``) is finished first, as DuckDB asks."""
    return _arrow(con, sql, params).to_pandas()


def _arrow(con: "duckdb.DuckDBPyConnection", sql: str, params: dict | None = None) -> "pa.Table":
    """A query's rows as an Arrow table (a result of ``execute()`` left on the connection finished first)."""
    con.complete()
    return con.sql(sql, params=params).to_arrow_table()


def _by_id(table: "pa.Table") -> "pa.Table":
    """A history table's rows in ``id`` order: kept so, and sorted here should a scan not keep it."""
    ids = table.column("id").to_numpy()
    if len(ids) > 1 and not (ids[1:] >= ids[:-1]).all():
        table = table.take(np.argsort(ids, kind="stable"))
    return table


def _window(lo: float, hi: float, column: str = "t") -> str:
    """SQL bounds of the instants ``[lo, hi)`` on ``column`` (nothing when unbounded)."""
    bounds = [f"{column} >= {float(lo)!r}" if np.isfinite(lo) else "",
              f"{column} < {float(hi)!r}" if np.isfinite(hi) else ""]
    return " AND ".join(b for b in bounds if b) or "true"


def _local_day(column: str, changes: list[tuple[int, int]]) -> str:
    """SQL of the local date (days since 1970) of the whole-second instants in ``column``, with the
    zone's offsets :func:`~kpi_lib.periods.offset_changes` over the instants it reads."""
    offset = " ".join(f"WHEN {column} < {start} THEN {before}" for (start, _), (_, before) in zip(changes[1:], changes))
    offset = f"CASE {offset} ELSE {changes[-1][1]} END" if offset else str(changes[-1][1])
    return f"CAST(floor(({column} + {offset}) / 86400) AS BIGINT)"
