"""The report context: settings, the store's frames, the timezone, the week and the people.

:func:`load_context` reads only the columns the KPI definitions use, resolves the report
timezone (params ``timezone``, else the account's, else UTC), the week and ``as_of``, and the
supervisors and managers (kpi-definitions.md §0 "People"), checking every configured user id
against the account's users.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pandas as pd

from ..config import Settings
from ..errors import ConfigError, StoreError
from ..periods import Week, report_timezone, resolve_now, resolve_week
from ..store import GENERATION_KEY, Store
from .common import match_fields
from .facts import PARTS, Facts
from .registry import check_targets

#: Typed tables and the columns the KPIs read (``None``: every column).
COLUMNS: dict[str, list[str] | None] = {
    "account": None,
    "users": ["id", "name", "is_admin", "is_active"],
    "pipelines": ["id", "name"],
    "statuses": ["id", "pipeline_id", "sort"],
    "lead_custom_fields": ["id", "name", "sort"],
    "leads": ["id", "name", "price", "responsible_user_id", "status_id", "pipeline_id", "created_at", "closed_at",
              "is_deleted"],
    "lead_contacts": ["lead_id", "contact_id", "is_main", "position"],
    "lead_companies": ["lead_id", "company_id"],
    "tasks": ["id", "created_by", "created_at", "updated_at", "responsible_user_id", "entity_id", "entity_type",
              "is_completed", "text", "result_text", "complete_till"],
    "calls": ["id", "entity_type", "entity_id", "note_type", "created_by", "responsible_user_id", "created_at",
              "uniq", "duration", "call_status"],
    "events": ["seq", "type", "entity_type", "entity_id", "created_by", "created_at", "status_before",
               "pipeline_before", "status_after", "pipeline_after", "responsible_before", "responsible_after"],
    "custom_field_values": ["entity_id", "field_id", "field_name", "position", "value"],
}
#: Tables read whole into pandas (the small ones and the scored custom field values); the facts read
#: the rest, the leads and their links among them, in SQL.
FRAMES = ("account", "users", "pipelines", "statuses", "lead_custom_fields", "custom_field_values")
#: Row filters applied while reading (the KPIs use no other rows).
WHERE = {
    "custom_field_values": "entity_type = 'lead'",
}


@dataclass
class Context:
    """Everything a KPI computation needs, resolved once.

    Attributes
    ----------
    settings : Settings
    frames : dict of DataFrame
        The store's typed tables of :data:`FRAMES` (only the columns in :data:`COLUMNS`).
    tz : ZoneInfo
        The report timezone.
    week : Week
        The report week.
    as_of : datetime
        ``min(now, end of week)`` in the report timezone.
    now : datetime
        The current instant, pinned by ``--as-of`` when given.
    managers : DataFrame
        ``user_id, name, active``, ordered by user id.
    supervisors : list of int
    account : dict
        ``id, name, subdomain, currency, timezone``.
    last_sync_at : datetime or None
    generation : str or None
        The store's data generation the frames were read at (None for given frames).
    facts : Facts or None
        The per-item facts every block starts from: read from the store at first use
        (:meth:`cover`, :func:`kpi_lib.kpis.facts.facts_of`), for the span asked for then and
        :attr:`span`.
    span : (float, float)
        The instants ``[start, end)`` of the weeks the facts hold at least.
    parts : tuple of str
        The parts of the facts (:data:`kpi_lib.kpis.facts.PARTS`) read with them; the others are
        read at their first use (all by default, so that the facts are one read).
    """

    settings: Settings
    frames: dict[str, pd.DataFrame]
    tz: ZoneInfo
    week: Week
    as_of: datetime
    now: datetime
    managers: pd.DataFrame
    supervisors: list[int]
    account: dict[str, Any]
    last_sync_at: datetime | None
    generation: str | None = None
    facts: Facts | None = field(default=None, repr=False)
    span: tuple[float, float] = (0.0, 0.0)
    parts: tuple[str, ...] = tuple(PARTS)
    reader: Any = field(default=None, repr=False)
    cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def cover(self, start: float, end: float) -> None:
        """Make :attr:`facts` hold the items of ``[start, end)`` and the FCR window after it.

        The first call reads them together with :attr:`span`; facts for a wider window are read
        from the store again (the derived caches with them), which raises :class:`StoreError`
        when the store's data changed since the context was loaded.
        """
        held = self.facts
        hi = end + self.reader.window_s
        if held is not None and held.covers(start, hi):
            return
        lo, top = (held.lo, held.hi) if held is not None else (self.span[0], self.span[1] + self.reader.window_s)
        self.facts = self.reader.read(min(start, lo), max(hi, top), generation=self.generation, parts=self.parts)
        self.cache.clear()

    @property
    def manager_ids(self) -> np.ndarray:
        return self.managers["user_id"].to_numpy(dtype="float64")

    @property
    def supervisor_ids(self) -> np.ndarray:
        return np.asarray(self.supervisors, dtype="float64")


def read_frames(store: Store, settings: Settings | None = None) -> dict[str, pd.DataFrame]:
    """The columns of :data:`COLUMNS` of the tables in :data:`FRAMES` from an open store.

    With ``settings``, custom field values are read only for the fields that params
    ``csat_field`` and ``nps_field`` name (the only ones the KPIs score).
    """
    frames = {}
    for table in FRAMES:
        where = WHERE.get(table)
        if table == "custom_field_values" and settings is not None:
            where = _field_filter(store, settings, frames["lead_custom_fields"])
        frames[table] = store.frame(table, COLUMNS[table], where)
    return frames


def _field_filter(store: Store, settings: Settings, defs: pd.DataFrame) -> str:
    """The row filter of custom field values keeping the fields the CSAT and NPS settings match."""
    where = WHERE["custom_field_values"]
    pairs = store.con.execute(f"SELECT DISTINCT field_id, field_name FROM custom_field_values WHERE {where}").df()
    ids = set()
    for ref in (settings.kpi.csat_field, settings.kpi.nps_field):
        if ref is not None:
            ids.update(match_fields(defs, pairs, ref))
    return f"{where} AND field_id IN ({', '.join(str(int(i)) for i in sorted(ids)) or 'NULL'})"


def load_context(settings: Settings, now: datetime | None = None,
                 frames: dict[str, pd.DataFrame] | None = None, weeks: int | None = None,
                 parts: tuple[str, ...] = tuple(PARTS)) -> Context:
    """Open the account's store read-only and resolve the report context.

    The facts hold the items (calls, status changes, tasks) of the weeks ending with the
    report week (at least the week and the week before) and of the FCR window after it.  They
    are read at first use, for those weeks and the span a computation asks for (the 12 weeks
    of :func:`kpi_lib.kpis.compute_trends` are read once); a span outside what is held reads
    the store again (once, for the span and what was held).

    Parameters
    ----------
    settings : Settings
        From :func:`kpi_lib.config.load_settings`.
    now : datetime, optional
        The current instant (default: the clock); ``settings.as_of`` pins it.
    frames : dict of DataFrame, optional
        The store's typed tables as frames (every table the facts read: ``leads``, ``calls``,
        ``tasks`` and ``events`` too), to compute from them instead of the store.
    weeks : int, optional
        Weeks of items to read now, in the same read as the frames (the weekly run asks for
        :func:`kpi_lib.weekdata.context_weeks`, so that a sync finishing meanwhile cannot
        change what its figures read).  Without it the facts are read at first use, and a
        sync finishing before then raises :class:`~kpi_lib.errors.StoreError` (load the
        context again).
    parts : tuple of str
        The parts of the facts (:data:`kpi_lib.kpis.facts.PARTS`: closed leads, owner history,
        links, noted calls, first calls, tasks, activity, service) read with them; the others are
        read at their first use, as a single block's report asks.
    """
    last_sync = generation = None
    store = None
    if frames is None:
        store = Store.open(settings.data_dir, settings.account, read_only=True)
    try:
        if store is not None:
            frames = read_frames(store, settings)
            last_sync = store.last_sync_at()
            generation = store.get_meta(GENERATION_KEY)
        account = _account(frames["account"])
        tz = report_timezone(settings.kpi.timezone, account["timezone"])
        now = resolve_now(settings.as_of, tz, now)
        week, as_of = resolve_week(settings.week, settings.as_of, tz, now)
        supervisors, managers = resolve_people(settings, frames["users"])
        _check_pipelines(settings, frames["pipelines"])
        check_targets(settings.kpi.targets)
        _check_score_fields(settings, frames["lead_custom_fields"], frames["custom_field_values"])
        reader = _FactsReader(settings, None if store is not None else frames, now.timestamp(), tz, supervisors,
                              (week.start_ts, week.end_ts))
        span = (week.shift(1 - (weeks or 2)).start_ts, week.end_ts)
        facts = (reader.read(span[0], span[1] + reader.window_s, store, generation, parts) if weeks is not None
                 else None)
    finally:
        if store is not None:
            store.close()
    return Context(settings=settings, frames=frames, tz=tz, week=week, as_of=as_of, now=now, managers=managers,
                   supervisors=supervisors, account=account, last_sync_at=last_sync, generation=generation,
                   facts=facts, span=span, parts=tuple(parts), reader=reader)


class _FactsReader:
    """Builds :class:`Facts` for a window of instants, from the store or from given frames."""

    def __init__(self, settings: Settings, frames: dict[str, pd.DataFrame] | None, now: float, tz: ZoneInfo,
                 supervisors: list[int], week: tuple[float, float]):
        self.settings, self.frames, self.now = settings, frames, now
        self.tz, self.supervisors, self.week = tz, supervisors, week
        self.window_s = settings.kpi.fcr_window_days * 86400.0

    def read(self, lo: float, hi: float, store: Store | None = None, generation: str | None = None,
             parts=tuple(PARTS)) -> Facts:
        """The facts holding the items of ``[lo, hi)`` (``store``: an open store to read from,
        else the store is opened and its data must still be of ``generation``), with ``parts``
        read now and the others at first use."""
        kpi = self.settings.kpi
        with self.connection(store, generation) as con:
            return Facts(con, kpi.pipelines, kpi.fcr_window_days, lo, hi, self.now, parts=parts,
                         reopen=lambda: self.connection(None, generation), tz=self.tz,
                         supervisors=self.supervisors, week=self.week)

    @contextmanager
    def connection(self, store: Store | None = None, generation: str | None = None):
        """A connection to the data: the given frames as tables, the open ``store``, else the
        store opened read-only, whose data must still be of ``generation``."""
        if self.frames is not None:
            con = duckdb.connect()
            try:
                for name, frame in self.frames.items():
                    con.register("_frame", frame)
                    con.execute(f"CREATE TABLE {name} AS SELECT * FROM _frame")
                    con.unregister("_frame")
                yield con
            finally:
                con.close()
        elif store is not None:
            yield store.con
        else:
            with Store.open(self.settings.data_dir, self.settings.account, read_only=True) as store:
                if store.get_meta(GENERATION_KEY) != generation:
                    raise StoreError("the store's data changed after this report's context was loaded (a sync or a "
                                     "demo wrote to it): load the context again, or run the notebook again")
                yield store.con


def _account(frame: pd.DataFrame) -> dict[str, Any]:
    row = frame.iloc[0].to_dict() if len(frame) else {}

    def get(key):
        value = row.get(key)
        return None if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA else value

    return {"id": None if get("id") is None else int(get("id")), "name": get("name"),
            "subdomain": get("subdomain"), "currency": get("currency"), "timezone": get("timezone")}


def resolve_people(settings: Settings, users: pd.DataFrame) -> tuple[list[int], pd.DataFrame]:
    """Supervisors and managers (§0 "People"), checking configured ids against the users."""
    kpi = settings.kpi
    ids = [int(i) for i in users["id"].tolist()]
    known = set(ids)
    admin = dict(zip(ids, users["is_admin"].fillna(False).astype(bool).tolist()))
    for key in ("supervisors", "managers"):
        for uid in getattr(kpi, key) or ():
            if uid not in known:
                names = dict(zip(ids, users["name"].fillna("").astype(str).tolist()))
                shown = ", ".join(f"{i} {names[i]}".strip() for i in sorted(known)) or "none (sync the account first)"
                raise ConfigError(
                    f"kpi.{key}: user id {uid} is not a user of this account: use ids from the account's users"
                    f" ({shown})")
    supervisors = sorted(set(kpi.supervisors)) if kpi.supervisors is not None else sorted(
        u for u in ids if admin[u])
    if kpi.managers is not None:
        both = sorted(set(kpi.managers) & set(supervisors))
        if both:
            raise ConfigError(f"kpi.managers: user {both[0]} is also a supervisor: list each user in one of "
                              "kpi.managers and kpi.supervisors only")
        chosen = set(kpi.managers)
    else:
        chosen = set(ids) - set(supervisors)
    chosen.discard(0)
    table = users.assign(user_id=users["id"].astype("int64"))
    table = table.loc[table["user_id"].isin(chosen)].sort_values("user_id")
    managers = pd.DataFrame({
        "user_id": table["user_id"].to_numpy(dtype="int64"),
        "name": table["name"].fillna("").astype(str).to_numpy(dtype=object),
        "active": table["is_active"].fillna(True).astype(bool).to_numpy(),
    })
    return [int(s) for s in supervisors], managers


def _check_pipelines(settings: Settings, pipelines: pd.DataFrame) -> None:
    wanted = settings.kpi.pipelines
    if not wanted:
        return
    known = {int(i) for i in pipelines["id"].tolist()}
    for pid in wanted:
        if pid not in known:
            shown = ", ".join(str(i) for i in sorted(known)) or "none (sync the account first)"
            raise ConfigError(f"kpi.pipelines: pipeline id {pid} is not a pipeline of this account: use one of {shown}")


def _check_score_fields(settings: Settings, defs: pd.DataFrame, values: pd.DataFrame) -> None:
    """A ``csat_field`` or ``nps_field`` set in the params must name a lead custom field of the account."""
    fields_ = dict(zip(defs["id"].astype("int64").tolist(), defs["name"].fillna("").astype(str).tolist()))
    seen = values.loc[values["field_id"].notna(), ["field_id", "field_name"]].drop_duplicates()
    for fid, name in zip(seen["field_id"].astype("int64").tolist(),
                         seen["field_name"].fillna("").astype(str).tolist()):
        fields_.setdefault(fid, name)
    for key in ("csat_field", "nps_field"):
        ref = getattr(settings.kpi, key)
        if key not in settings.kpi_params or ref is None:
            continue
        text = str(ref).strip().casefold()
        if any(str(fid) == text or name.strip().casefold() == text for fid, name in fields_.items()):
            continue
        shown = ", ".join(f"{fid} {name!r}" for fid, name in sorted(fields_.items())) or "none (sync the account first)"
        raise ConfigError(f"kpi.{key}: {ref!r} names no lead custom field of this account: use the id or name of "
                          f"one of its lead fields ({shown})")
