"""Data quality behind the KPIs: shown next to the figures, never hidden (kpi-definitions.md §0–§4)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .common import WON, Span, grid_index, manager_ids, ratio, tally, to_local_times
from .facts import closed_in, facts_of
from .customer_satisfaction import lead_scores

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context

TABLES = ("unpriced_wins", "unmapped_calls", "calls_without_status", "won_without_contact", "survey_coverage")


def compute_quality(ctx: "Context", span: Span, tables: tuple[str, ...] = TABLES) -> dict[str, pd.DataFrame]:
    """Data-quality tables for the span (``tables``: only these).

    Returns
    -------
    dict of DataFrame
        ``unpriced_wins`` (won deals of managers without a price: lead_id, name, manager, closed_at);
        ``unmapped_calls`` (contact calls that found no lead: call_id, contact_id, caller, at, connected);
        ``calls_without_status`` (calls with no ``call_status``, judged by duration: call_id, caller, at,
        duration, connected);
        ``won_without_contact`` (won deals of managers with no linked contact: lead_id, name, manager,
        closed_at);
        ``survey_coverage`` (per manager and team: week, manager (int; NA for the team row),
        won, responses, coverage_pct).
    """
    won = functools.cache(lambda: closed_in(ctx, span, WON))  # read by the tables of won deals only
    calls = functools.cache(lambda: facts_of(ctx).calls_in(span.start, span.end))  # read by two tables, once

    def deals(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({
            "lead_id": frame["lead_id"].astype("int64").to_numpy(), "name": facts_of(ctx).lead_names(frame["lead_id"]),
            "manager": frame["m"].astype("int64").to_numpy(), "price": frame["price"].to_numpy(dtype="float64"),
            "closed_at": to_local_times(ctx, frame["closed_at"]),
        }).sort_values(["manager", "closed_at"], ignore_index=True)

    def unpriced_wins() -> pd.DataFrame:
        return deals(won().loc[~(np.nan_to_num(won()["price"].to_numpy(dtype="float64")) > 0)])

    def won_without_contact() -> pd.DataFrame:
        linked = facts_of(ctx).main_contact.index.to_numpy()  # every lead with a contact link has a row
        return deals(won().loc[~np.isin(won()["lead_id"].to_numpy(), linked)])

    def unmapped_calls() -> pd.DataFrame:
        unmapped = calls().loc[calls()["on_contact"].to_numpy() & ~calls()["mapped"].to_numpy()]
        return pd.DataFrame({
            "call_id": unmapped["id"].astype("int64").to_numpy(),
            "contact_id": unmapped["entity_id"].astype("int64").to_numpy(),
            "caller": pd.array(unmapped["caller"].to_numpy(), dtype="Float64").astype("Int64"),
            "at": to_local_times(ctx, unmapped["t"]), "connected": unmapped["connected"].to_numpy(dtype=bool),
        }).sort_values(["at", "call_id"], ignore_index=True)

    def calls_without_status() -> pd.DataFrame:
        silent = calls().loc[np.isnan(calls()["call_status"].to_numpy())]
        return pd.DataFrame({
            "call_id": silent["id"].astype("int64").to_numpy(),
            "caller": pd.array(silent["caller"].to_numpy(), dtype="Float64").astype("Int64"),
            "at": to_local_times(ctx, silent["t"]), "duration": silent["duration"].astype("int64").to_numpy(),
            "connected": silent["connected"].to_numpy(dtype=bool),
        }).sort_values(["at", "call_id"], ignore_index=True)

    def survey_coverage() -> pd.DataFrame:
        idx = grid_index(span, ctx.managers["user_id"])
        responded = won().loc[np.isin(won()["lead_id"].to_numpy(),
                                    lead_scores(ctx, ctx.settings.kpi.csat_field, 1, 5).index.to_numpy())]
        coverage = pd.DataFrame(index=idx)
        coverage["won"] = tally(idx, won(), "nunique", "lead_id").astype("int64")
        coverage["responses"] = tally(idx, responded, "nunique", "lead_id").astype("int64")
        coverage["coverage_pct"] = ratio(coverage["responses"], coverage["won"], 100)
        coverage = coverage.reset_index()
        coverage["week"] = [span.weeks[w].label for w in coverage["w"]]
        coverage["manager"] = manager_ids(coverage["manager"])
        return coverage[["week", "manager", "won", "responses", "coverage_pct"]]

    builders = {"unpriced_wins": unpriced_wins, "unmapped_calls": unmapped_calls,
                "calls_without_status": calls_without_status, "won_without_contact": won_without_contact,
                "survey_coverage": survey_coverage}
    return {name: builders[name]() for name in TABLES if name in tables}
