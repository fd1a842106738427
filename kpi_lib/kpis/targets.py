"""Targets of the primary figures and whether they were met (kpi-definitions.md §7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..periods import parse_week
from .common import manager_ids
from .compute import compute_trends
from .registry import check_targets, targeted_figures

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context

TRAILING_WEEKS = 12


def median_targeted(settings, blocks=None) -> bool:
    """Whether a figure of ``blocks`` (None: all) has no target but the team's trailing median."""
    explicit = check_targets(settings.kpi.targets)
    return any(_target(explicit, fig) is None for block, fig in targeted_figures()
               if blocks is None or block.name in blocks)


def _target(explicit: dict[str, float | None], figure) -> float | None:
    """A figure's target: from params ``targets`` (checked), else its default (None: the trailing median)."""
    return explicit[figure.key] if figure.key in explicit else figure.target


def trailing_median(trends: pd.DataFrame, block: str, key: str, labels: list[str]) -> float | None:
    """The team's median of ``key`` over the weeks ``labels`` (missing weeks ignored)."""
    rows = trends.loc[(trends["block"] == block) & (trends["key"] == key) & trends["manager"].isna()
                      & trends["week"].isin(labels), "value"].dropna()
    return float(rows.median()) if len(rows) else None


def target_table(ctx: "Context", result: dict, trends: pd.DataFrame | None = None) -> pd.DataFrame:
    """Targets and met/missed for one week's result (from :func:`compute_kpis`).

    A target comes from params ``targets:`` (``target_source='params'``), else the default
    (``'default'``); a figure without either (average check and revenue per active day by
    default) gets the team's median over the 12 weeks before the report week (``'median12'``).

    Parameters
    ----------
    result : dict
        One week's §8 structure.
    trends : DataFrame, optional
        Trends covering the 12 weeks before the report week; computed when missing.

    Returns
    -------
    DataFrame
        block, key, manager (int user id; NA for the team row), value, target, direction, met
        (boolean, NA when value or target is missing), target_source.
    """
    week = parse_week(result["week"], ctx.tz)
    labels = [week.shift(-i).label for i in range(TRAILING_WEEKS, 0, -1)]
    explicit = check_targets(ctx.settings.kpi.targets)
    rows = []
    for block, figure in targeted_figures():
        if block.name not in result["kpis"]:
            continue  # a result of some blocks only
        key, direction = figure.key, figure.direction
        target = _target(explicit, figure)
        source = "params" if key in explicit else "default"
        if target is None:
            if trends is None or not set(labels) <= set(trends["week"]):
                trends = compute_trends(ctx, TRAILING_WEEKS, end=week.shift(-1))
            target, source = trailing_median(trends, block.name, key, labels), "median12"
        table = result["kpis"][block.name]
        people = [("team", table["team"])] + list(table["by_manager"].items())
        for manager, figures in people:
            value = figures.get(key)
            if value is None or target is None:
                met = pd.NA
            else:
                met = bool(value >= target) if direction == ">=" else bool(value <= target)
            rows.append({"block": block.name, "key": key, "manager": manager,
                         "value": np.nan if value is None else float(value),
                         "target": np.nan if target is None else float(target), "direction": direction,
                         "met": met, "target_source": source})
    out = pd.DataFrame(rows, columns=["block", "key", "manager", "value", "target", "direction", "met",
                                      "target_source"])
    out["met"] = out["met"].astype("boolean")
    out["manager"] = manager_ids(out["manager"])
    return out
