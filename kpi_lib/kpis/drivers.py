"""Why a figure moved (kpi-definitions.md §11): rate and mix effects per manager.

The team figure of five primary KPIs is a ratio ``P = Σ num / Σ den`` over managers.  From
one week to the next it moves because managers' own rates changed (rate effect) and because
the team's items shifted between managers with different rates (mix effect).  With manager
m's share ``s = den_m / Σ den`` and rate ``r = num_m / den_m`` in the week (1) and the week
before (0)::

    rate effect = (r1 − r0) × (s1 + s0) / 2        mix effect = (s1 − s0) × (r1 + r0) / 2

These add up to ``Σ r1 s1 − Σ r0 s0``, which is the change of the team figure when the
team's items are the disjoint union of the managers' items; ``other`` carries the rest (a
lead worked by two managers counts once in the team's worked leads; revenue a manager won in a
week without an active day has no rate to split).

:func:`compute_moves` gives the effects together with what the reports say about them
(each manager's rate, n and share in both weeks, and the noise limit of the change);
:func:`drivers_json` keeps exactly the §11 JSON of ``kpi-report drivers --json``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .common import TEAM, WON, make_span, manager_label
from .compute import compute_blocks, resolve_week
from .facts import closed_in
from .registry import BLOCKS
from .smart_audit import audited_tasks

if TYPE_CHECKING:  # pragma: no cover
    from ..periods import Week
    from .context import Context

#: Per block, the primary figure §11 splits and its denominator (the registry's figures with a
#: ``numerator``; a manager's numerator is their rate × their denominator).
FIGURES: dict[str, tuple[str, str]] = {b.name: (b.primary, b.figure(b.primary).sample) for b in BLOCKS
                                       if b.figure(b.primary).numerator}
#: The figures that are proportions of their denominator (binomial noise, funnel plots).
PROPORTIONS = tuple(b.primary for b in BLOCKS if b.name in FIGURES and b.figure(b.primary).proportion)
#: Two-sided 95 %: a change inside ±Z × its standard error is ordinary week-to-week noise.
Z95 = 1.959964


def _float(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def decompose(key: str, value: float | None, previous: float | None,
              managers: list[tuple[Any, float | None, float, float | None, float]]) -> dict[str, Any]:
    """The §11 split of ``value − previous`` into rate and mix effects per manager, plus ``other``.

    Parameters
    ----------
    key : str
        The figure's key (``fcr_pct``, …), copied into the result.
    value, previous : float or None
        The team figure in the week and in the week before (§8).
    managers : list of tuple
        ``(manager, rate_now, den_now, rate_before, den_before)``; a rate is None where its
        denominator is 0.

    Returns
    -------
    dict
        ``key, value, previous, change, managers [{manager, rate_effect, mix_effect}], other``;
        when either figure is null, ``change``, every effect and ``other`` are null.
    """
    if value is None or previous is None:
        rows = [{"manager": m, "rate_effect": None, "mix_effect": None} for m, *_ in managers]
        return {"key": key, "value": value, "previous": previous, "change": None, "managers": rows, "other": None}
    total1 = math.fsum(d1 for _, _, d1, _, _ in managers)
    total0 = math.fsum(d0 for _, _, _, _, d0 in managers)
    rows, effects = [], []
    for manager, r1, d1, r0, d0 in managers:
        if d1 <= 0 and d0 <= 0:
            rate = mix = 0.0
        else:
            r1, r0 = (r1 if d1 > 0 else r0), (r0 if d0 > 0 else r1)  # absent in a week: the other week's rate
            s1, s0 = d1 / total1, d0 / total0
            rate, mix = (r1 - r0) * (s1 + s0) / 2, (s1 - s0) * (r1 + r0) / 2
        rows.append({"manager": manager, "rate_effect": rate, "mix_effect": mix})
        effects += [rate, mix]
    change = value - previous
    return {"key": key, "value": value, "previous": previous, "change": change, "managers": rows,
            "other": change - math.fsum(effects)}


def compute_moves(ctx: "Context", week: "Week | str | None" = None, trends: pd.DataFrame | None = None,
                  blocks=None) -> dict[str, dict[str, Any]]:
    """The §11 drivers of every split figure, with what the reports need to tell them.

    Parameters
    ----------
    week : Week or str, optional
        ``"2026-W47"``, ``"last"``, ``"current"`` or a Week; default: the context's week.  The
        week before is the one it is compared with.
    trends : DataFrame, optional
        :func:`kpi_lib.kpis.compute_trends` covering both weeks, to read the figures from
        instead of computing them again.
    blocks : iterable of str, optional
        Only these blocks' drivers.

    Returns
    -------
    dict
        Per block, the :func:`decompose` record plus ``week``, ``previous_week``, ``n`` and
        ``previous_n`` (the team's denominator), ``limit`` (the noise limit of the change:
        :data:`Z95` standard errors of the difference, None when it cannot be told) and, for
        each manager, ``rate``/``previous_rate`` (the manager's own figure), ``n``/``previous_n``
        and ``share``/``previous_share`` of the managers' summed denominator.
    """
    week = resolve_week(ctx, week)
    before = week.shift(-1)
    span = make_span(ctx, [before, week])
    figures = {block: pair for block, pair in FIGURES.items() if blocks is None or block in blocks}
    cell = _figures(ctx, span, trends, tuple(figures))
    people = [str(int(m)) for m in ctx.managers["user_id"]]
    spread = _spread(ctx, span, tuple(figures))
    out = {}
    for block, (key, den) in figures.items():
        rows = [(int(m), cell(block, 1, m, key), cell(block, 1, m, den) or 0.0, cell(block, 0, m, key),
                 cell(block, 0, m, den) or 0.0) for m in people]
        record = decompose(key, cell(block, 1, TEAM, key), cell(block, 0, TEAM, key), rows)
        totals = (sum(r[2] for r in rows), sum(r[4] for r in rows))
        for row, (_, r1, d1, r0, d0) in zip(record["managers"], rows):
            row.update(rate=r1, previous_rate=r0, n=int(d1), previous_n=int(d0),
                       share=d1 / totals[0] if totals[0] else None, previous_share=d0 / totals[1] if totals[1] else None)
        n1, n0 = cell(block, 1, TEAM, den) or 0.0, cell(block, 0, TEAM, den) or 0.0
        record.update(week=week.label, previous_week=before.label, n=int(n1), previous_n=int(n0),
                      limit=noise_limit(key, record["value"], n1, record["previous"], n0, spread.get(block)))
        out[block] = record
    return out


def _figures(ctx: "Context", span, trends: pd.DataFrame | None, blocks: tuple[str, ...]):
    """``cell(block, w, manager, key)``: a figure of week 0 or 1 of the span (None when null)."""
    labels = [w.label for w in span.weeks]
    if trends is not None and set(labels) <= set(trends["week"]):
        keys = {k for pair in FIGURES.values() for k in pair}
        rows = trends.loc[trends["week"].isin(labels) & trends["key"].isin(keys)]
        index = {(b, labels.index(w), manager_label(m), k): v for b, w, m, k, v in
                 zip(rows["block"], rows["week"], rows["manager"], rows["key"], rows["value"])}
        return lambda block, w, m, key: _float(index.get((block, w, m, key)))
    tables = compute_blocks(ctx, span, blocks)
    return lambda block, w, m, key: _float(tables[block].at[(w, m), key])


def drivers_json(moves: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Exactly the §11 JSON: per block ``key, value, previous, change, managers, other``."""
    return {block: {"key": r["key"], "value": r["value"], "previous": r["previous"], "change": r["change"],
                    "managers": [{k: m[k] for k in ("manager", "rate_effect", "mix_effect")} for m in r["managers"]],
                    "other": r["other"]}
            for block, r in moves.items()}


def compute_drivers(ctx: "Context", week: "Week | str | None" = None) -> dict[str, dict[str, Any]]:
    """``kpi-report drivers --json`` for the context's week (or ``week``): see :func:`drivers_json`."""
    return drivers_json(compute_moves(ctx, week))


# --- noise ------------------------------------------------------------------------------------

def _spread(ctx: "Context", span, blocks: tuple[str, ...]) -> dict[str, tuple[float | None, float | None]]:
    """Per non-proportion block of ``blocks``, the standard error of the team figure in week 0 and week 1."""
    out: dict[str, tuple[float | None, float | None]] = {}
    if {"average_check", "productivity"} & set(blocks):
        won = closed_in(ctx, span, WON)
        price = np.nan_to_num(won["price"].to_numpy(dtype="float64"))
        w = won["w"].to_numpy()
        out["average_check"] = tuple(_sem(price[(w == i) & (price > 0)]) for i in (0, 1))
        # compound Poisson: √Σ price²
        out["productivity"] = tuple(float(np.sqrt(np.sum(price[w == i] ** 2))) for i in (0, 1))
    if "smart_audit" in blocks:
        tasks = audited_tasks(ctx, span)
        out["smart_audit"] = tuple(_sem(100 * tasks.loc[tasks["w"].to_numpy() == i, "score"].to_numpy(dtype="float64"))
                                   for i in (0, 1))
    return out


def _sem(values: np.ndarray) -> float | None:
    """The standard error of a mean (None below two values)."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) >= 2 else None


def noise_limit(key: str, value: float | None, n1: float, previous: float | None, n0: float,
                spread: tuple[float | None, float | None] | None = None) -> float | None:
    """How far the team figure moves from one week to the next by chance alone (95 %).

    Proportions: the two-proportion test's limit ``Z95 × √(p̄(1 − p̄)(1/n0 + 1/n1))`` with the
    pooled rate ``p̄`` (binomial noise from each week's n).  Means (average check, SMART
    index): ``Z95 × √(se0² + se1²)`` from each week's standard error of the mean.  Revenue per
    active day: the same with ``se = √(Σ price²) / active days`` (won deals as a compound
    Poisson count).  None when either week has no figure or too few items to tell.
    """
    if value is None or previous is None or n0 <= 0 or n1 <= 0:
        return None
    if key in PROPORTIONS:
        pooled = (value * n1 + previous * n0) / 100 / (n0 + n1)
        return 100 * Z95 * math.sqrt(max(pooled * (1 - pooled), 0.0) * (1 / n0 + 1 / n1))
    if spread is None or None in spread:
        return None
    se0, se1 = spread
    if key == "revenue_per_active_day":
        se0, se1 = se0 / n0, se1 / n1
    return Z95 * math.sqrt(se0 ** 2 + se1 ** 2)


def within_noise(record: dict[str, Any]) -> bool:
    """True when the change is inside its noise limit (or there is no limit to judge it by)."""
    change, limit = record.get("change"), record.get("limit")
    return change is not None and (limit is None or abs(change) <= limit)

