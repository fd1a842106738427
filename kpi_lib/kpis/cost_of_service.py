"""Cost of service (kpi-definitions.md §2): how often and how expensively managers call in a supervisor."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .common import WON, Span, grid_index, member, ratio, scope, span_items, tally, to_local_times
from .detail import finish_rows, user_names
from .facts import closed_in, facts_of

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context


@span_items(renumber=True)
def escalations(ctx: "Context", span: Span) -> pd.DataFrame:
    """Escalation signals E1, E2 and E3 attributed to managers in the span.

    Columns ``w, m, lead_id, kind, t, minutes`` (``minutes``: E3 call duration / 60, else 0),
    ``supervisor`` (the task's responsible, the new owner or the caller) and ``text`` (the E1
    task's text, else None).  Signals on leads that do not count (deleted, other pipelines,
    unknown) are dropped.
    """
    f = facts_of(ctx)
    sup = ctx.supervisor_ids
    tasks = f.escalation_tasks
    e1 = scope(ctx, tasks, span, "created_at", "created_by", columns=["created_at", "created_by", "lead_id", "responsible",
                                                                       "text"])
    e1 = e1.assign(kind="E1", t=e1["created_at"], minutes=0.0, supervisor=e1["responsible"],
                   text=e1["text"].to_numpy(dtype=object, na_value=None))
    ev = f.responsible_events
    ev = ev.loc[member(ev["after"], sup) & f.lead_attr(ev["lead_id"], "counted")]
    e2 = scope(ctx, ev, span, "t", "before").assign(kind="E2", minutes=0.0, text=None)
    e2["supervisor"] = e2["after"]
    calls = f.supervisor_calls
    t = calls["t"].to_numpy()
    calls = calls.loc[(t >= span.start) & (t < span.end)]
    calls = calls.assign(owner=f.owner_at(calls["lead_id"], calls["t"]))
    e3 = scope(ctx, calls, span, "t", "owner").assign(kind="E3", minutes=lambda d: d["duration"] / 60.0, text=None)
    e3["supervisor"] = e3["caller"]
    cols = ["w", "m", "lead_id", "kind", "t", "minutes", "supervisor", "text"]
    return pd.concat([e1[cols], e2[cols], e3[cols]], ignore_index=True)


def worked_leads(ctx: "Context", span: Span, signals: pd.DataFrame) -> pd.DataFrame:
    """Leads a manager worked in the span (calls, status changes, completed lead tasks) or escalated
    (the leads of ``signals``): ``w, m, lead_id``, each lead once per manager and week but for the
    signals."""
    worked = facts_of(ctx).worked
    w = span.locate_days(worked["week"].to_numpy(dtype="int64") * 7 - 3)  # the week's Monday
    keep = (w >= 0) & member(worked["user_id"], ctx.manager_ids)
    rows = pd.DataFrame({"w": w[keep], "m": worked["user_id"].to_numpy()[keep].astype("int64"),
                         "lead_id": worked["lead_id"].to_numpy()[keep]}, copy=False)
    return pd.concat([rows, signals[["w", "m", "lead_id"]]], ignore_index=True)


def compute_cost_of_service(ctx: "Context", span: Span) -> pd.DataFrame:
    """Cost of service per manager and team per week (kpi-definitions.md §2).

    ``escalation_rate_pct`` (primary): leads on which the manager escalated to a supervisor
    in the week (E1 an escalation task to a supervisor, E2 a hand-over of the lead to a
    supervisor, E3 a supervisor's connected call on the manager's lead), over the leads the
    manager worked in the week (called, moved or completed a lead task) plus the escalated
    ones.  ``supervisor_minutes`` prices the supervisor's time: E3 talk time plus fixed
    minutes per E1 and E2; ``cost_per_won_deal`` divides its cost by the week's won deals.
    Deleted leads and leads outside the configured pipelines are excluded.
    """
    kpi = ctx.settings.kpi
    idx = grid_index(span, ctx.managers["user_id"])
    signals = escalations(ctx, span)
    worked = worked_leads(ctx, span, signals)
    out = pd.DataFrame(index=idx)
    out["escalated_leads"] = tally(idx, signals, "nunique", "lead_id")
    out["worked_leads"] = tally(idx, worked, "nunique", "lead_id")
    out["escalation_rate_pct"] = ratio(out["escalated_leads"], out["worked_leads"], 100)
    out["escalation_events"] = tally(idx, signals)
    e1 = tally(idx, signals.loc[signals["kind"] == "E1"])
    e2 = tally(idx, signals.loc[signals["kind"] == "E2"])
    talk = tally(idx, signals.loc[signals["kind"] == "E3"], "sum", "minutes")
    out["supervisor_minutes"] = talk + kpi.minutes_per_escalation_task * e1 + kpi.minutes_per_takeover * e2
    out["won"] = tally(idx, closed_in(ctx, span, WON), "nunique", "lead_id")
    out["cost_per_won_deal"] = ratio(out["supervisor_minutes"] * kpi.supervisor_hourly_rate / 60.0, out["won"])
    return out


def detail_cost_of_service(ctx: "Context", span: Span) -> pd.DataFrame:
    """The escalation signals behind the block (§10): one row per signal.

    Returns
    -------
    DataFrame
        ``lead_id, name, manager, manager_name, kind`` (``E1`` escalation task, ``E2``
        take-over, ``E3`` supervisor call), ``at``, ``supervisor`` (user id),
        ``supervisor_name``, ``minutes`` (the supervisor minutes §2 charges for it), ``text``
        (the E1 task's text, else None), ``url``.
    """
    kpi = ctx.settings.kpi
    sig = escalations(ctx, span)
    minutes = np.select([sig["kind"] == "E1", sig["kind"] == "E2"],
                        [kpi.minutes_per_escalation_task, kpi.minutes_per_takeover], sig["minutes"])
    return finish_rows(ctx, {
        "lead_id": sig["lead_id"].astype("int64").to_numpy(), "manager": sig["m"].to_numpy(),
        "kind": sig["kind"].to_numpy(dtype=object), "at": to_local_times(ctx, sig["t"]),
        "supervisor": sig["supervisor"].astype("int64").to_numpy(), "supervisor_name": user_names(ctx, sig["supervisor"]),
        "minutes": minutes.astype(float), "text": sig["text"].to_numpy(dtype=object),
    }, ["manager", "at", "lead_id"])
