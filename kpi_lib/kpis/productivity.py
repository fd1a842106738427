"""Manager productivity (kpi-definitions.md §5): revenue and calls per active day."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .average_check import compute_average_check
from .common import Span, grid_index, member, ratio, span_items, tally
from .detail import finish_rows
from .facts import facts_of

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context


@span_items(renumber=True)
def active_days(ctx: "Context", span: Span) -> pd.DataFrame:
    """Managers' active days in the span: one row per manager and local date with a connected call
    (mapped or not, after de-duplication), a status change made or a task completed, with how many
    of each: ``w, m, date, calls, talk`` (the connected calls' seconds), ``changes, done``."""
    days = facts_of(ctx).activity
    day = days["day"].to_numpy(dtype="int64")
    w = span.locate_days(day)
    keep = (w >= 0) & member(days["user_id"], ctx.manager_ids)
    rows = days.loc[keep]
    out = pd.DataFrame({"w": w[keep], "m": rows["user_id"].to_numpy(dtype="int64"),
                        "date": day[keep].astype("datetime64[D]").astype("datetime64[ns]"),
                        **{k: rows[k].to_numpy() for k in ("calls", "talk", "changes", "done")}})
    return out.iloc[np.lexsort((day[keep], out["m"].to_numpy(), out["w"].to_numpy()))].reset_index(drop=True)


def compute_productivity(ctx: "Context", span: Span, checks: pd.DataFrame | None = None) -> pd.DataFrame:
    """Manager productivity per manager and team per week (kpi-definitions.md §5).

    ``revenue_per_active_day`` (primary): revenue of the deals the manager won in the week
    (as in the average check) over the manager's active days — local dates with a connected
    call, a status change made or a task completed.  Connected calls count whatever lead they
    are on (or none); the team's active days are distinct (manager, date) pairs.
    ``check_x_calls_per_day`` keeps the seed's index: average check × connected calls per
    active day.

    Parameters
    ----------
    checks : DataFrame, optional
        The span's average-check table, when already computed.
    """
    idx = grid_index(span, ctx.managers["user_id"])
    checks = compute_average_check(ctx, span) if checks is None else checks
    days = active_days(ctx, span)
    out = pd.DataFrame(index=idx)
    out["active_days"] = tally(idx, days)
    out["connected_calls"] = tally(idx, days, "sum", "calls")
    out["talk_minutes"] = tally(idx, days, "sum", "talk") / 60.0
    out["revenue_per_active_day"] = ratio(checks["won_revenue"], out["active_days"])
    out["calls_per_active_day"] = ratio(out["connected_calls"], out["active_days"])
    out["wins_per_100_calls"] = ratio(checks["won"], out["connected_calls"], 100)
    out["check_x_calls_per_day"] = checks["avg_check"] * out["calls_per_active_day"]
    return out


#: What can make a day active (§5), in the order ``active_by`` lists them.
ACTIVITIES = ("connected_call", "status_change", "task_completed")


def detail_productivity(ctx: "Context", span: Span) -> pd.DataFrame:
    """The active days behind the block (§5): one row per manager and active local date.

    Returns
    -------
    DataFrame
        ``manager, manager_name, date`` (a ``datetime.date`` in the report timezone),
        ``active_by`` (list: what made the day active — ``connected_call``, ``status_change``,
        ``task_completed``), ``connected_calls``, ``talk_minutes``, ``status_changes``,
        ``tasks_completed``, ``url`` (None: a day has no page in amoCRM).
    """
    days = active_days(ctx, span)
    counts = days[["calls", "changes", "done"]].to_numpy(dtype="int64")
    frame = finish_rows(ctx, {
        "manager": days["m"].to_numpy(), "date": [d.date() for d in pd.to_datetime(days["date"])],
        "active_by": [[a for a, n in zip(ACTIVITIES, line) if n] for line in counts],
        "connected_calls": counts[:, 0], "talk_minutes": days["talk"].to_numpy(dtype="float64") / 60.0,
        "status_changes": counts[:, 1], "tasks_completed": counts[:, 2],
    }, ["manager", "date"], entity_type=None)
    frame["url"] = None
    return frame
