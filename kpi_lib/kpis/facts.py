"""Per-item facts built once per context (kpi-definitions.md §0, §9).

Each call with its caller, connected flag and lead (own, or mapped from a contact with the
600 s rule), each lead's owner at any instant rebuilt from responsible changes, each status
change with whether it advances the lead, each task with its completion time, and each won
or lost lead with its owner at close.  Blocks group these by week × manager.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .common import LOST, MAP_SLACK_S, WON, Span, flag, num, scope, sort_key

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context

#: Task ``entity_type`` codes (index = code): none or other, leads, contacts, companies.
ENTITY_TYPES = (None, "leads", "contacts", "companies")


class Facts:
    """The per-item facts every block starts from, built once from the context's frames.

    Attributes
    ----------
    leads : DataFrame
        ``id, price, owner, status_id, pipeline_id, created_at, closed_at, deleted, counted``
        sorted by id; ``owner`` is the current ``responsible_user_id``.
    calls : DataFrame
        De-duplicated call notes: ``id, on_contact, entity_id, call_in, call_out, t, caller,
        connected, duration, call_status, lead_id`` (own or mapped lead, NaN when unmapped),
        ``mapped`` (a contact call that found a lead), ``lead_counted``.
    status : DataFrame
        ``lead_status_changed`` events on leads: ``lead_id, t, actor, advances``.
    tasks : DataFrame
        Tasks with ``done_at`` (completion time of completed tasks, else NaN), ``etype`` (see
        :data:`ENTITY_TYPES`), ``row`` (position in the tasks frame) and ``text_code`` /
        ``result_code`` (positions in :attr:`task_texts` / :attr:`result_texts`, -1 for none).
    closed : DataFrame
        Counted won and lost leads: ``lead_id, price, status_id, closed_at, owner``
        (``owner_at(lead, closed_at)``).
    """

    def __init__(self, ctx: "Context"):
        frames = ctx.frames
        self._tasks_frame = frames["tasks"]
        self._build_leads(frames["leads"], ctx.settings.kpi.pipelines)
        self._build_owner_history(frames["events"])
        self._build_status(frames["events"], frames["statuses"])
        self._build_calls(frames["calls"], frames["lead_contacts"])
        self._build_tasks(frames["tasks"], frames["events"])
        self._build_closed()

    # leads and their owners ---------------------------------------------------------------
    def _build_leads(self, leads: pd.DataFrame, pipelines) -> None:
        leads = leads.sort_values("id", kind="stable")
        self._names = leads["name"].reset_index(drop=True)
        deleted = flag(leads["is_deleted"])
        counted = ~deleted
        if pipelines:
            counted &= np.isin(num(leads["pipeline_id"]), np.asarray(pipelines, dtype="float64"))
        self.leads = pd.DataFrame({
            "id": leads["id"].to_numpy(dtype="int64"),
            "price": num(leads["price"]),
            "owner": num(leads["responsible_user_id"]),
            "status_id": num(leads["status_id"]),
            "pipeline_id": num(leads["pipeline_id"]),
            "created_at": num(leads["created_at"]),
            "closed_at": num(leads["closed_at"]),
            "deleted": deleted,
            "counted": counted,
        })
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
        names = self._names.take(pos).to_numpy(dtype=object) if len(self._names) else np.full(len(pos), None)
        return np.where(known, names, None)

    def lead_attr(self, lead_ids, column: str) -> np.ndarray:
        """A column of :attr:`leads` looked up for ``lead_ids`` (NaN/False when unknown)."""
        pos, known = self.lead_pos(lead_ids)
        column = self.leads[column].to_numpy()
        if column.dtype == bool:
            return column[pos] & known if len(column) else np.zeros(len(pos), dtype=bool)
        return np.where(known, column[pos], np.nan) if len(column) else np.full(len(pos), np.nan)

    def _build_owner_history(self, events: pd.DataFrame) -> None:
        ev = events.loc[(events["type"] == "entity_responsible_changed") & (events["entity_type"] == "lead")]
        pos, known = self.lead_pos(ev["entity_id"])
        t, seq = num(ev["created_at"]), num(ev["seq"])
        keep = known & ~np.isnan(t)
        order = np.lexsort((seq[keep], t[keep], pos[keep]))
        self._resp_pos = pos[keep][order]
        self._resp_key = sort_key(self._resp_pos, t[keep][order])
        self._resp_before = num(ev["responsible_before"])[keep][order]
        self.responsible_events = pd.DataFrame({
            "lead_id": num(ev["entity_id"]), "t": t, "seq": seq,
            "before": num(ev["responsible_before"]), "after": num(ev["responsible_after"]),
        })

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

    # status history -----------------------------------------------------------------------
    def _build_status(self, events: pd.DataFrame, statuses: pd.DataFrame) -> None:
        ev = events.loc[(events["type"] == "lead_status_changed") & (events["entity_type"] == "lead")]
        sort = pd.Series(num(statuses["sort"]),
                         index=pd.MultiIndex.from_arrays([num(statuses["id"]), num(statuses["pipeline_id"])]))
        sort = sort[~sort.index.duplicated()]

        def sort_of(status, pipeline):
            idx = pd.MultiIndex.from_arrays([num(status), num(pipeline)])
            return sort.reindex(idx).to_numpy(dtype="float64")

        before, after = num(ev["status_before"]), num(ev["status_after"])
        same = num(ev["pipeline_after"]) == num(ev["pipeline_before"])
        higher = sort_of(ev["status_after"], ev["pipeline_after"]) > sort_of(ev["status_before"], ev["pipeline_before"])
        advances = (after == WON) | ((after != LOST) & same & higher & ~np.isnan(before))
        self.status = pd.DataFrame({
            "lead_id": num(ev["entity_id"]), "t": num(ev["created_at"]), "actor": num(ev["created_by"]),
            "advances": advances,
        })
        self.status["lead_counted"] = self.lead_attr(self.status["lead_id"], "counted")

    # calls --------------------------------------------------------------------------------
    def _build_calls(self, calls: pd.DataFrame, links: pd.DataFrame) -> None:
        t, ids = num(calls["created_at"]), num(calls["id"])
        order = np.lexsort((ids, t))
        uniq = calls["uniq"].take(order)
        has_uniq = (uniq.notna() & (uniq != "")).to_numpy(dtype=bool)
        order = order[~(has_uniq & uniq.duplicated().to_numpy())]

        def col(name: str) -> np.ndarray:
            return num(calls[name])[order]

        resp = col("responsible_user_id")
        caller = np.where(np.isnan(resp) | (resp == 0), col("created_by"), resp)
        status = col("call_status")
        duration = np.nan_to_num(col("duration"))
        no_status = np.isnan(status) | (status == 8)
        on_contact = (calls["entity_type"] == "contact").to_numpy(dtype=bool)[order]
        note = calls["note_type"]
        entity = col("entity_id")
        out = pd.DataFrame({
            "id": ids[order], "on_contact": on_contact, "entity_id": entity,
            "call_in": (note == "call_in").to_numpy(dtype=bool)[order],
            "call_out": (note == "call_out").to_numpy(dtype=bool)[order], "t": t[order],
            "caller": caller, "connected": (status == 4) | (no_status & (duration >= 20)), "duration": duration,
            "call_status": status,
        })
        lead_id = np.where(on_contact, np.nan, entity)
        mapped = np.zeros(len(out), dtype=bool)
        contact = np.flatnonzero(on_contact)
        if len(contact):
            lead_id[contact] = self._map_contact_calls(out.iloc[contact], links)
            mapped[contact] = ~np.isnan(lead_id[contact])
        out["lead_id"] = lead_id
        out["mapped"] = mapped
        out["lead_counted"] = self.lead_attr(lead_id, "counted")
        self.calls = out

    def _map_contact_calls(self, cc: pd.DataFrame, links: pd.DataFrame) -> np.ndarray:
        """Map contact calls to one of the contact's non-deleted leads (§0, the 600 s rule)."""
        link = pd.DataFrame({"contact": num(links["contact_id"]), "lead_id": num(links["lead_id"])})
        link = link.drop_duplicates()
        pos, known = self.lead_pos(link["lead_id"])
        leads = self.leads
        alive = known & ~leads["deleted"].to_numpy()[pos]
        link = link.loc[alive]
        link["created_at"] = leads["created_at"].to_numpy()[pos[alive]]
        link["closed_at"] = leads["closed_at"].to_numpy()[pos[alive]]
        q = pd.DataFrame({"row": np.arange(len(cc)), "contact": cc["entity_id"].to_numpy(),
                          "t": cc["t"].to_numpy(), "caller": cc["caller"].to_numpy()})
        pairs = q.merge(link, on="contact", how="inner")
        ok = (pairs["created_at"].to_numpy() <= pairs["t"].to_numpy() + MAP_SLACK_S) & (
            np.isnan(pairs["closed_at"].to_numpy()) | (pairs["closed_at"].to_numpy() >= pairs["t"].to_numpy()))
        pairs = pairs.loc[ok]
        own = self.owner_at(pairs["lead_id"], pairs["t"]) == pairs["caller"].to_numpy()
        order = np.lexsort((-pairs["lead_id"].to_numpy(), -pairs["created_at"].to_numpy(), ~own,
                            pairs["row"].to_numpy()))
        chosen = pairs.iloc[order].drop_duplicates("row", keep="first")
        out = np.full(len(cc), np.nan)
        out[chosen["row"].to_numpy()] = chosen["lead_id"].to_numpy()
        return out

    # tasks ---------------------------------------------------------------------------------
    def _build_tasks(self, tasks: pd.DataFrame, events: pd.DataFrame) -> None:
        ev = events.loc[(events["type"] == "task_completed") & (events["entity_type"] == "task")]
        last = pd.Series(num(ev["created_at"])).groupby(num(ev["entity_id"])).max()
        ids = num(tasks["id"])
        done = flag(tasks["is_completed"])
        event_t = last.reindex(ids).to_numpy(dtype="float64")
        done_at = np.where(np.isnan(event_t), num(tasks["updated_at"]), event_t)
        kind = tasks["entity_type"]
        etype = np.zeros(len(tasks), dtype="int8")
        for code, name in enumerate(ENTITY_TYPES[1:], start=1):
            etype[(kind == name).to_numpy(dtype=bool)] = code
        entity = num(tasks["entity_id"])
        text_code, self.task_texts = pd.factorize(tasks["text"], use_na_sentinel=True)
        result_code, self.result_texts = pd.factorize(tasks["result_text"], use_na_sentinel=True)
        out = pd.DataFrame({
            "id": ids, "row": np.arange(len(tasks)), "created_by": num(tasks["created_by"]),
            "created_at": num(tasks["created_at"]), "responsible": num(tasks["responsible_user_id"]),
            "entity_id": entity, "etype": etype, "is_completed": done, "done_at": np.where(done, done_at, np.nan),
            "text_code": text_code, "result_code": result_code, "complete_till": num(tasks["complete_till"]),
        })
        out["lead_id"] = np.where(etype == 1, entity, np.nan)
        out["lead_counted"] = self.lead_attr(out["lead_id"], "counted")
        out["lead_deleted"] = self.lead_attr(out["lead_id"], "deleted")
        self.tasks = out

    def task_column(self, rows, column: str) -> np.ndarray:
        """A column of the original tasks frame (``text``, ``entity_type``…) at ``rows``."""
        return self._tasks_frame[column].take(np.asarray(rows, dtype="int64")).to_numpy(dtype=object)

    # won and lost ----------------------------------------------------------------------------
    def _build_closed(self) -> None:
        leads = self.leads
        keep = leads["counted"].to_numpy() & np.isin(leads["status_id"].to_numpy(), [WON, LOST]) & ~np.isnan(
            leads["closed_at"].to_numpy())
        closed = leads.loc[keep, ["id", "price", "status_id", "closed_at"]].rename(columns={"id": "lead_id"})
        closed["owner"] = self.owner_at(closed["lead_id"], closed["closed_at"])
        self.closed = closed.reset_index(drop=True)


def facts_of(ctx: "Context") -> Facts:
    """The context's :class:`Facts`, built on first use."""
    if ctx.cache.get("facts") is None:
        ctx.cache["facts"] = Facts(ctx)
    return ctx.cache["facts"]


def closed_in(ctx: "Context", span: Span, status: int) -> pd.DataFrame:
    """``won(M, W)`` (``status=142``) or ``lost(M, W)`` (143) for every manager and week of the span."""
    closed = facts_of(ctx).closed
    return scope(ctx, closed.loc[closed["status_id"].to_numpy() == status], span, "closed_at", "owner")
