"""Average check (kpi-definitions.md §4): the value of won deals and the win rate."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .common import LOST, WON, Span, grid_index, ratio, tally, to_local_times
from .detail import finish_rows
from .facts import closed_in, facts_of

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context


def compute_average_check(ctx: "Context", span: Span) -> pd.DataFrame:
    """Average check per manager and team per week (kpi-definitions.md §4).

    ``avg_check`` (primary): mean price of the deals won in the week with a price above zero,
    each counted for the manager who owned it when it was won.  ``median_check`` is their
    median, ``won_revenue`` the sum of all won prices (a missing price is 0),
    ``unpriced_share_pct`` the share of won deals without a price (a data-quality figure) and
    ``win_rate_pct`` won over won plus lost deals closed in the week.  Deleted leads and leads
    outside the configured pipelines are excluded.
    """
    idx = grid_index(span, ctx.managers["user_id"])
    won = closed_in(ctx, span, WON)
    won["price0"] = np.nan_to_num(won["price"].to_numpy(dtype="float64"))
    priced = won.loc[won["price0"].to_numpy() > 0]
    out = pd.DataFrame(index=idx)
    out["won"] = tally(idx, won, "nunique", "lead_id")
    out["priced_won"] = tally(idx, priced, "nunique", "lead_id")
    out["avg_check"] = tally(idx, priced, "mean", "price0", fill=None)
    out["median_check"] = tally(idx, priced, "median", "price0", fill=None)
    out["won_revenue"] = tally(idx, won, "sum", "price0")
    out["unpriced_share_pct"] = ratio(out["won"] - out["priced_won"], out["won"], 100)
    out["lost"] = tally(idx, closed_in(ctx, span, LOST), "nunique", "lead_id")
    out["win_rate_pct"] = ratio(out["won"], out["won"] + out["lost"], 100)
    return out


def detail_average_check(ctx: "Context", span: Span) -> pd.DataFrame:
    """The won and lost deals behind the block (§4): one row per deal closed in the span.

    Returns
    -------
    DataFrame
        ``lead_id, name, manager, manager_name`` (the owner at closing), ``status`` (``won`` or
        ``lost``), ``closed_at``, ``price`` (NaN when not set; a won deal counts in the average
        only with a price above 0), ``pipeline_id``, ``pipeline`` (its name), ``url``.
    """
    won, lost = closed_in(ctx, span, WON), closed_in(ctx, span, LOST)
    rows = pd.concat([won.assign(status="won"), lost.assign(status="lost")], ignore_index=True)
    f = facts_of(ctx)
    pipeline = f.lead_attr(rows["lead_id"], "pipeline_id")
    pipelines = ctx.frames["pipelines"]
    names = dict(zip(pipelines["id"].astype("float64"), pipelines["name"].astype(object)))
    return finish_rows(ctx, {
        "lead_id": rows["lead_id"].astype("int64").to_numpy(), "manager": rows["m"].to_numpy(),
        "status": rows["status"].to_numpy(dtype=object), "closed_at": to_local_times(ctx, rows["closed_at"]),
        "price": rows["price"].to_numpy(dtype="float64"),
        "pipeline_id": pd.array(pipeline, dtype="Float64").astype("Int64"),
        "pipeline": np.array([names.get(p) for p in pipeline], dtype=object),
    }, ["manager", "closed_at", "lead_id"])
