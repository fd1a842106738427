"""Manager productivity (kpi-definitions.md §5): revenue and calls per active day."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .average_check import compute_average_check
from .common import Span, distinct, grid_index, local_days, num, positions, ratio, scope, span_items, tally
from .detail import finish_rows
from .facts import facts_of

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context

_DAYS = 1 << 20  # days since 1970 stay below this until the year 4840


@span_items(renumber=False)
def connected_calls(ctx: "Context", span: Span) -> pd.DataFrame:
    """Managers' connected calls in the span, mapped or not, after de-duplication (``w, m, t, duration``)."""
    calls = facts_of(ctx).calls
    return scope(ctx, calls, span, "t", "caller", calls["connected"], ["t", "caller", "duration"])


@span_items(renumber=True)
def active_days(ctx: "Context", span: Span) -> pd.DataFrame:
    """Distinct (week, manager, local date) with a connected call, a status change or a completed task."""
    f = facts_of(ctx)
    ids = np.unique(ctx.manager_ids)
    n = max(len(ids), 1)
    calls = connected_calls(ctx, span)
    keys = [_day_keys(ctx, calls["w"].to_numpy(), positions(ids, calls["m"]), calls["t"].to_numpy(), n)]
    for frame, when, who, mask in ((f.status, "t", "actor", True),
                                   (f.tasks, "done_at", "responsible", f.tasks["is_completed"].to_numpy())):
        t = num(frame[when])
        w, pos = span.locate(t), positions(ids, frame[who])
        keep = (w >= 0) & (pos >= 0) & mask  # as scope() keeps rows, without copying them
        keys.append(_day_keys(ctx, w[keep], pos[keep], t[keep], n))
    cell, day = np.divmod(distinct(np.concatenate(keys)), _DAYS)
    return pd.DataFrame({"w": cell // n, "m": np.append(ids, 0).astype("int64")[cell % n],
                         "date": day.astype("datetime64[D]").astype("datetime64[ns]")})


def _day_keys(ctx: "Context", w: np.ndarray, pos: np.ndarray, t: np.ndarray, n: int) -> np.ndarray:
    """One int64 key per item ordering (week, manager position among ``n``, local date)."""
    day = local_days(ctx, t).to_numpy().astype("datetime64[D]").astype("int64")
    return (w.astype("int64") * n + pos) * _DAYS + day


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
    calls = connected_calls(ctx, span)
    out = pd.DataFrame(index=idx)
    out["active_days"] = tally(idx, active_days(ctx, span))
    out["connected_calls"] = tally(idx, calls)
    out["talk_minutes"] = tally(idx, calls, "sum", "duration") / 60.0
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
    f = facts_of(ctx)
    tasks = f.tasks
    days = active_days(ctx, span)
    parts = {
        "connected_call": connected_calls(ctx, span),
        "status_change": scope(ctx, f.status, span, "t", "actor", columns=["t"]),
        "task_completed": scope(ctx, tasks, span, "done_at", "responsible", tasks["is_completed"], ["done_at"]),
    }
    out = days[["m", "date"]]
    for name, part in parts.items():
        part = part.assign(date=local_days(ctx, part.iloc[:, 0]).to_numpy())
        agg = {name: ("w", "size")} if name != "connected_call" else {name: ("w", "size"), "talk": ("duration", "sum")}
        out = out.merge(part.groupby(["m", "date"]).agg(**agg).reset_index(), on=["m", "date"], how="left")
    counts = out[list(ACTIVITIES)].fillna(0).astype("int64")
    frame = finish_rows(ctx, {
        "manager": out["m"].astype("int64").to_numpy(), "date": [d.date() for d in pd.to_datetime(out["date"])],
        "active_by": [[a for a, n in zip(ACTIVITIES, line) if n] for line in counts.to_numpy()],
        "connected_calls": counts["connected_call"].to_numpy(),
        "talk_minutes": out["talk"].fillna(0.0).to_numpy(dtype="float64") / 60.0,
        "status_changes": counts["status_change"].to_numpy(), "tasks_completed": counts["task_completed"].to_numpy(),
    }, ["manager", "date"], entity_type=None)
    frame["url"] = None
    return frame
