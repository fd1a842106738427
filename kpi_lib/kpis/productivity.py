"""Manager productivity (kpi-definitions.md §5): revenue and calls per active day."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .average_check import compute_average_check
from .common import Span, distinct, grid_index, local_days, ratio, scope, tally
from .facts import facts_of

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context

_DAYS = 1 << 20  # days since 1970 stay below this until the year 4840


def connected_calls(ctx: "Context", span: Span) -> pd.DataFrame:
    """Managers' connected calls in the span, mapped or not, after de-duplication (``w, m, t, duration``)."""
    calls = facts_of(ctx).calls
    return scope(ctx, calls, span, "t", "caller", calls["connected"], ["t", "caller", "duration"])


def active_days(ctx: "Context", span: Span) -> pd.DataFrame:
    """Distinct (week, manager, local date) with a connected call, a status change or a completed task."""
    f = facts_of(ctx)
    tasks = f.tasks
    parts = [connected_calls(ctx, span), scope(ctx, f.status, span, "t", "actor", columns=["t", "actor"]),
             scope(ctx, tasks, span, "done_at", "responsible", tasks["is_completed"], ["done_at", "responsible"])]
    w = np.concatenate([p["w"].to_numpy() for p in parts]).astype("int64")
    m = np.concatenate([p["m"].to_numpy() for p in parts]).astype("int64")
    t = np.concatenate([p.iloc[:, 0].to_numpy(dtype="float64") for p in parts])
    day = local_days(ctx, t).to_numpy().astype("datetime64[D]").astype("int64")
    people = np.unique(m)
    n = max(len(people), 1)
    cell, day = np.divmod(distinct((w * n + np.searchsorted(people, m)) * _DAYS + day), _DAYS)
    return pd.DataFrame({"w": cell // n, "m": np.append(people, 0)[cell % n],
                         "date": day.astype("datetime64[D]").astype("datetime64[ns]")})


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


def detail_productivity(ctx: "Context", span: Span) -> pd.DataFrame:
    """Per manager and active date: manager, date, connected_calls, talk_minutes."""
    days = active_days(ctx, span)
    calls = connected_calls(ctx, span)
    calls["date"] = local_days(ctx, calls["t"]).to_numpy()
    per = calls.groupby(["m", "date"]).agg(connected_calls=("t", "size"), talk=("duration", "sum"))
    out = days.merge(per.reset_index(), on=["m", "date"], how="left")
    return pd.DataFrame({
        "manager": out["m"].astype("int64").to_numpy(), "date": out["date"].to_numpy(),
        "connected_calls": out["connected_calls"].fillna(0).astype("int64").to_numpy(),
        "talk_minutes": out["talk"].fillna(0.0).to_numpy(dtype="float64") / 60.0,
    }).sort_values(["manager", "date"], ignore_index=True)
