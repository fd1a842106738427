"""SMART task audit (kpi-definitions.md §6): are tasks specific, measurable, achievable, relevant, time-bound?"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .common import (Span, clean_words, grid_index, local_days, member, positions, ratio, scope, span_items, tally,
                     to_local_times)
from .detail import finish_rows
from .facts import ENTITY_TYPES, facts_of

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context

CRITERIA = ("S", "M", "A", "R", "T")

def text_facts(ctx: "Context") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct task text: word count and whether it is generic; per distinct result: word count.

    Each array has one extra last entry (0 words, not generic) for a missing text, so that a
    code of -1 indexes it.
    """
    if "text_facts" not in ctx.cache:
        f = facts_of(ctx)  # the texts' words are cleaned once per sync (kpi_lib.kpis.history)
        generic = {" ".join(clean_words(t)) for t in ctx.settings.kpi.generic_task_texts}
        words = np.array([len(w.split()) if w else 0 for w in f.task_words] + [0], dtype="int64")
        is_generic = np.array([w in generic if w is not None else False for w in f.task_words] + [False], dtype=bool)
        results = np.array([len(w.split()) if w else 0 for w in f.result_words] + [0], dtype="int64")
        ctx.cache["text_facts"] = (words, is_generic, results)
    return ctx.cache["text_facts"]


@span_items(renumber=False)
def audited_tasks(ctx: "Context", span: Span) -> pd.DataFrame:
    """Managers' tasks due in the span (not on a deleted lead) with the five criteria checked.

    Columns: ``row`` (the task's position in the facts' tasks, whose other columns the detail
    takes), ``w``, ``m``, the criteria ``S, M, A, R, T`` holding 1.0 (passed), 0.0 (failed) or
    NaN (not applicable), ``passed``, ``applicable``, ``score``, ``complete`` and ``overdue``.
    """
    kpi = ctx.settings.kpi
    f = facts_of(ctx)
    tasks = scope(ctx, f.tasks, span, "complete_till", "responsible", mask=~f.tasks["lead_deleted"].to_numpy(),
                  columns=["row"])
    row, m = tasks["row"].to_numpy(), tasks["m"].to_numpy()
    as_of = span.as_of[tasks["w"].to_numpy()] if len(tasks) else np.zeros(0)
    created_by, done = f.task_column(row, "created_by"), f.task_column(row, "is_completed").astype(bool)
    due, created = f.task_column(row, "complete_till"), f.task_column(row, "created_at")
    words, generic, results = text_facts(ctx)
    text, result = f.task_column(row, "text_code"), f.task_column(row, "result_code")
    specific = (words[text] >= kpi.min_task_words) & ~generic[text]
    out = {"row": row, "w": tasks["w"].to_numpy(), "m": m,
           "S": np.where(created_by != 0, specific, np.nan),
           "M": np.where(done, results[result] >= kpi.min_result_words, np.nan)}
    due_day = local_days(ctx, due).to_numpy()
    who = positions(np.unique(ctx.manager_ids), m)
    out["A"] = ((due >= created - 60) & (_per_day(who, due_day) <= kpi.max_tasks_per_day)).astype(float)
    out["R"] = f.task_column(row, "relevant").astype(float)
    done_day = local_days(ctx, f.task_column(row, "done_at")).to_numpy()
    on_time = np.where(done, done_day <= due_day, due >= as_of)
    out["T"] = (~np.isnan(due) & on_time).astype(float)
    crit = [np.asarray(out[c], dtype="float64") for c in CRITERIA]
    out["passed"] = sum(np.nan_to_num(c) for c in crit)
    out["applicable"] = sum((~np.isnan(c)).astype("int64") for c in crit)
    out["score"] = out["passed"] / out["applicable"]
    out["complete"] = (out["passed"] == out["applicable"]).astype(float)
    out["overdue"] = (~done & (due < as_of)).astype(float)
    return pd.DataFrame(out, index=tasks.index, copy=False)  # fresh columns: no copies


def _per_day(who: np.ndarray, day: np.ndarray) -> np.ndarray:
    """For each task, how many of the tasks share its manager (``who``: their position among the
    managers) and local due date (§6 A)."""
    if len(day) == 0:
        return np.zeros(0, dtype="int64")
    days = day.astype("datetime64[D]").astype("int64")
    first = days.min()
    key = who * (days.max() - first + 1) + (days - first)
    return np.bincount(key)[key]


def compute_smart_audit(ctx: "Context", span: Span) -> pd.DataFrame:
    """SMART task audit per manager and team per week (kpi-definitions.md §6).

    Tasks of a manager in a week: tasks the manager is responsible for that are due in the
    week, except tasks on a deleted lead.  ``smart_index`` (primary): the mean over those tasks
    of the share of applicable criteria passed (S: a specific, non-generic text; M: a result
    written for a completed task; A: not born overdue and at most ``max_tasks_per_day`` due
    that day; R: on a lead that was open; T: done by its due date, not overdue at ``as_of``).
    ``due_today`` / ``due_tomorrow`` are added by :func:`kpi_lib.kpis.compute_kpis` for the
    current week only.
    """
    idx = grid_index(span, ctx.managers["user_id"])
    tasks = audited_tasks(ctx, span)
    out = pd.DataFrame(index=idx)
    # criteria passed and applicable as sums of columns with no value missing: the items are counted once
    flags = {"complete": tasks["complete"].to_numpy(), "overdue": tasks["overdue"].to_numpy()}
    for crit in CRITERIA:
        values = tasks[crit].to_numpy()
        flags[crit], flags[f"{crit} applicable"] = np.nan_to_num(values), (~np.isnan(values)).astype("float64")
    sums = tally(idx, pd.DataFrame({"w": tasks["w"].to_numpy(), "m": tasks["m"].to_numpy(), **flags}, copy=False),
                 "sum", list(flags))
    out["tasks"] = tally(idx, tasks)
    out["smart_index"] = 100 * tally(idx, tasks, "mean", "score", fill=None)
    out["smart_complete_pct"] = ratio(sums["complete"], out["tasks"], 100)
    for key, crit in zip(("specific_pct", "measurable_pct", "achievable_pct", "relevant_pct", "time_bound_pct"),
                         CRITERIA):
        out[key] = ratio(sums[crit], sums[f"{crit} applicable"], 100)
    out["overdue_pct"] = ratio(sums["overdue"], out["tasks"], 100)
    return out


def detail_smart_audit(ctx: "Context", span: Span) -> pd.DataFrame:
    """The audited tasks behind the block (§6): one row per task of a manager due in the span.

    Returns
    -------
    DataFrame
        ``task_id, name`` (the name of the task's lead, else None), ``manager, manager_name,
        text, entity_type`` (``leads``, ``contacts``, ``companies`` or None), ``entity_id,
        lead_id, complete_till, is_completed, completed_at`` (NaT when open), ``S, M, A, R, T``
        (boolean; NA when not applicable), ``score`` (criteria passed / applicable),
        ``overdue``, ``url`` (the task's entity in amoCRM).
    """
    tasks = audited_tasks(ctx, span)
    f = facts_of(ctx)
    row = tasks["row"].to_numpy()
    kinds = np.array(ENTITY_TYPES, dtype=object)[f.task_column(row, "etype").astype("int64")]
    rows = {
        "task_id": f.task_column(row, "id").astype("int64"), "name": f.lead_names(f.task_column(row, "lead_id")),
        "manager": tasks["m"].to_numpy(), "text": f.task_column(row, "text"), "entity_type": kinds,
        "entity_id": pd.array(f.task_column(row, "entity_id"), dtype="Float64").astype("Int64"),
        "lead_id": pd.array(f.task_column(row, "lead_id"), dtype="Float64").astype("Int64"),
        "complete_till": to_local_times(ctx, f.task_column(row, "complete_till")),
        "is_completed": f.task_column(row, "is_completed").astype(bool),
        "completed_at": to_local_times(ctx, f.task_column(row, "done_at")),
    }
    for crit in CRITERIA:
        rows[crit] = pd.array(tasks[crit].to_numpy(), dtype="Float64").astype("boolean")
    rows["score"] = tasks["score"].to_numpy(dtype="float64")
    rows["overdue"] = tasks["overdue"].to_numpy(dtype=bool)
    return finish_rows(ctx, rows, ["manager", "complete_till", "task_id"], entity_col="entity_id")


def due_tasks(ctx: "Context") -> pd.DataFrame:
    """Managers' open tasks due on the local date of ``now`` and the day after (any week).

    Columns: manager, task_id, text, entity_type, entity_id, lead_id, due (local), day
    ('today' | 'tomorrow').  Tasks on deleted leads are left out.
    """
    f = facts_of(ctx)
    tasks = f.tasks
    tasks = tasks.loc[~tasks["is_completed"].to_numpy() & ~tasks["lead_deleted"].to_numpy()
                      & member(tasks["responsible"], ctx.manager_ids)]
    today = pd.Timestamp(ctx.now.date())
    day = local_days(ctx, tasks["complete_till"]).to_numpy()
    which = np.select([day == today.to_datetime64(), day == (today + pd.Timedelta(days=1)).to_datetime64()],
                      ["today", "tomorrow"], "")
    keep = which != ""
    tasks = tasks.loc[keep]
    out = pd.DataFrame({
        "manager": tasks["responsible"].astype("int64").to_numpy(), "task_id": tasks["id"].astype("int64").to_numpy(),
        "text": f.task_column(tasks["row"], "text"),
        "entity_type": np.array(ENTITY_TYPES, dtype=object)[tasks["etype"].to_numpy(dtype="int64")],
        "entity_id": pd.array(tasks["entity_id"].to_numpy(), dtype="Float64").astype("Int64"),
        "lead_id": pd.array(tasks["lead_id"].to_numpy(), dtype="Float64").astype("Int64"),
        "due": to_local_times(ctx, tasks["complete_till"]), "day": which[keep],
    })
    return out.sort_values(["manager", "due", "task_id"], ignore_index=True)
