"""The five KPIs and the SMART audit, exactly as defined in ``docs/kpi-definitions.md``.

Typical use (as in the notebooks)::

    from kpi_lib.kpis import load_context, compute_kpis, compute_trends, target_table
    ctx = load_context(settings)
    result = compute_kpis(ctx)                 # the JSON of §8
    trends = compute_trends(ctx, weeks=12)     # tidy: week, week_start, block, key, manager, value

Every block is computed over a span of weeks at once from per-item facts built once per
context, so twelve weeks of trends cost little more than one week.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..periods import Week
from .average_check import compute_average_check, detail_average_check
from .command import kpis_command
from .common import TEAM, Span, make_span
from .context import Context, load_context, read_frames
from .cost_of_service import compute_cost_of_service, detail_cost_of_service
from .customer_satisfaction import compute_customer_satisfaction, detail_customer_satisfaction
from .first_call import compute_first_call, detail_first_call
from .productivity import compute_productivity, detail_productivity
from .quality import compute_quality
from .smart_audit import compute_smart_audit, detail_smart_audit, due_tasks
from .targets import target_table

BLOCKS = ("customer_satisfaction", "cost_of_service", "first_call", "average_check", "productivity", "smart_audit")

#: The keys of each block, in the order of kpi-definitions.md (``nps``, ``due_*`` only when they apply).
KEYS: dict[str, tuple[str, ...]] = {
    "customer_satisfaction": ("won", "responses", "csat_pct", "csat_mean", "coverage_pct", "repeat_win_share_pct",
                              "nps"),
    "cost_of_service": ("escalated_leads", "worked_leads", "escalation_rate_pct", "escalation_events",
                        "supervisor_minutes", "won", "cost_per_won_deal"),
    "first_call": ("fcr_eligible", "fcr_resolved", "fcr_pct", "fcr_final", "first_call_connect_pct", "new_leads",
                   "uncalled_leads", "stl_median_min", "stl_within_5_pct"),
    "average_check": ("won", "priced_won", "avg_check", "median_check", "won_revenue", "unpriced_share_pct", "lost",
                      "win_rate_pct"),
    "productivity": ("active_days", "connected_calls", "talk_minutes", "revenue_per_active_day",
                     "calls_per_active_day", "wins_per_100_calls", "check_x_calls_per_day"),
    "smart_audit": ("tasks", "smart_index", "smart_complete_pct", "specific_pct", "measurable_pct", "achievable_pct",
                    "relevant_pct", "time_bound_pct", "overdue_pct", "due_today", "due_tomorrow"),
}
#: Keys that are counts (JSON integers); ``fcr_final`` is a boolean; every other key a number or null.
COUNTS = frozenset({"won", "responses", "escalated_leads", "worked_leads", "escalation_events", "fcr_eligible",
                    "fcr_resolved", "new_leads", "uncalled_leads", "priced_won", "lost", "active_days",
                    "connected_calls", "tasks", "due_today", "due_tomorrow"})
_DETAIL = {
    "customer_satisfaction": detail_customer_satisfaction, "cost_of_service": detail_cost_of_service,
    "first_call": detail_first_call, "average_check": detail_average_check, "productivity": detail_productivity,
    "smart_audit": detail_smart_audit,
}

__all__ = ["BLOCKS", "KEYS", "Context", "block_detail", "compute_blocks", "compute_kpis", "compute_trends",
           "data_quality", "due_tasks", "kpis_command", "load_context", "read_frames", "target_table"]


def compute_blocks(ctx: Context, span: Span) -> dict[str, pd.DataFrame]:
    """Every block's table over a span: indexed by (week index, manager or 'team'), a column per key."""
    checks = compute_average_check(ctx, span)
    return {
        "customer_satisfaction": compute_customer_satisfaction(ctx, span),
        "cost_of_service": compute_cost_of_service(ctx, span),
        "first_call": compute_first_call(ctx, span),
        "average_check": checks,
        "productivity": compute_productivity(ctx, span, checks),
        "smart_audit": compute_smart_audit(ctx, span),
    }


def _value(key: str, value):
    if key == "fcr_final":
        return bool(value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return 0 if key in COUNTS else None
    return int(round(value)) if key in COUNTS else float(value)


def _as_of(ctx: Context, week: Week) -> datetime:
    return min(ctx.now, week.end).astimezone(ctx.tz)


def compute_kpis(ctx: Context, week: Week | None = None) -> dict:
    """One week's KPIs in exactly the structure of ``kpi-report kpis --json`` (§8).

    Parameters
    ----------
    week : Week, optional
        Default: the context's week.  ``due_today``/``due_tomorrow`` appear only when ``now``
        falls inside the week.
    """
    week = week or ctx.week
    span = make_span(ctx, [week])
    tables = compute_blocks(ctx, span)
    current = week.start <= ctx.now < week.end
    due = due_tasks(ctx) if current else None
    people = [str(int(m)) for m in ctx.managers["user_id"]]
    kpis = {}
    for block in BLOCKS:
        table = tables[block].xs(0, level="w")
        keys = [k for k in KEYS[block] if k in table.columns]
        if current and block == "smart_audit":
            keys += ["due_today", "due_tomorrow"]
            for day in ("today", "tomorrow"):
                per = due.loc[due["day"] == day].groupby("manager").size()
                counts = per.reindex([int(p) for p in people], fill_value=0).to_numpy()
                table = table.assign(**{f"due_{day}": np.append(counts, counts.sum()).astype("float64")})
        rows = {manager: {k: _value(k, table.at[manager, k]) for k in keys} for manager in people + [TEAM]}
        kpis[block] = {"team": rows.pop(TEAM), "by_manager": rows}
    return {
        "week": week.label,
        "timezone": ctx.tz.key,
        "currency": ctx.account.get("currency"),
        "as_of": _as_of(ctx, week).isoformat(timespec="seconds"),
        "managers": [{"user_id": int(r.user_id), "name": str(r.name), "active": bool(r.active)}
                     for r in ctx.managers.itertuples(index=False)],
        "kpis": kpis,
    }


def compute_trends(ctx: Context, weeks: int = 12, end: Week | None = None) -> pd.DataFrame:
    """The KPIs over the ``weeks`` weeks ending with ``end`` (default: the context's week), tidy.

    Returns
    -------
    DataFrame
        week (label), week_start (local Timestamp), block, key, manager ('team' or user id
        string), value (float; NaN where the figure is null; ``fcr_final`` as 1.0/0.0).
    """
    if isinstance(weeks, bool) or not isinstance(weeks, int) or weeks < 1:
        raise ConfigError(f"trend weeks {weeks!r} is not a whole number of weeks: use 1 or more (e.g. 12)")
    end = end or ctx.week
    span = make_span(ctx, [end.shift(-i) for i in range(weeks - 1, -1, -1)])
    labels = np.array([w.label for w in span.weeks], dtype=object)
    starts = np.array([pd.Timestamp(w.start.replace(tzinfo=None)) for w in span.weeks], dtype="datetime64[ns]")
    parts = []
    for block, table in compute_blocks(ctx, span).items():
        long = table.reset_index().melt(id_vars=["w", "manager"], var_name="key", value_name="value")
        w = long["w"].to_numpy()
        parts.append(pd.DataFrame({"week": labels[w], "week_start": starts[w], "block": block,
                                   "key": long["key"].to_numpy(dtype=object),
                                   "manager": long["manager"].to_numpy(dtype=object),
                                   "value": long["value"].to_numpy(dtype="float64")}))
    return pd.concat(parts, ignore_index=True)


def block_detail(ctx: Context, block: str, week: Week | None = None) -> pd.DataFrame:
    """The item-level rows behind one block for a week (columns per block: see the module docs)."""
    if block not in _DETAIL:
        raise ConfigError(f"unknown KPI block {block!r}: use one of {', '.join(BLOCKS)}")
    return _DETAIL[block](ctx, make_span(ctx, [week or ctx.week]))


def data_quality(ctx: Context, week: Week | None = None) -> dict[str, pd.DataFrame]:
    """Data-quality tables for a week: unpriced_wins, unmapped_calls, calls_without_status,
    won_without_contact, survey_coverage (see :func:`kpi_lib.kpis.quality.compute_quality`)."""
    return compute_quality(ctx, make_span(ctx, [week or ctx.week]))
