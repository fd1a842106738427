"""One week's figures in the §8 structure, their trends, and the items and gaps behind them.

Every block is computed over a span of weeks at once by its registry record's ``compute``
function, from per-item facts built once per context, so twelve weeks of trends cost little
more than one week.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..periods import Week
from .common import TEAM, Span, make_span
from .context import Context
from .quality import compute_quality
from .registry import BLOCKS, KINDS, get_block
from .smart_audit import due_tasks


def compute_blocks(ctx: Context, span: Span) -> dict[str, pd.DataFrame]:
    """Every block's table over a span: indexed by (week index, manager or 'team'), a column per key."""
    tables: dict[str, pd.DataFrame] = {}
    for block in BLOCKS:
        tables[block.name] = block.compute(ctx, span, *(tables[name] for name in block.needs))
    return tables


def _value(key: str, value):
    kind = KINDS[key]
    if kind == "bool":
        return bool(value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return 0 if kind == "count" else None
    return int(round(value)) if kind == "count" else float(value)


def _as_of(ctx: Context, week: Week) -> datetime:
    return min(ctx.now, week.end).astimezone(ctx.tz)


def _with_due(ctx: Context, table: pd.DataFrame, people: list[str]) -> pd.DataFrame:
    """The SMART audit's table with ``due_today`` and ``due_tomorrow`` (the current week only)."""
    due = due_tasks(ctx)
    for day in ("today", "tomorrow"):
        per = due.loc[due["day"] == day].groupby("manager").size()
        counts = per.reindex([int(p) for p in people], fill_value=0).to_numpy()
        table = table.assign(**{f"due_{day}": np.append(counts, counts.sum()).astype("float64")})
    return table


def compute_kpis(ctx: Context, week: Week | None = None) -> dict:
    """One week's KPIs in exactly the structure of ``kpi-report kpis --json`` (§8).

    Parameters
    ----------
    week : Week, optional
        Default: the context's week.  ``due_today``/``due_tomorrow`` appear only when ``now``
        falls inside the week, ``nps`` only when ``nps_field`` is set.
    """
    week = week or ctx.week
    span = make_span(ctx, [week])
    tables = compute_blocks(ctx, span)
    current = week.start <= ctx.now < week.end
    people = [str(int(m)) for m in ctx.managers["user_id"]]
    kpis = {}
    for block in BLOCKS:
        table = tables[block.name].xs(0, level="w")
        if current and block.name == "smart_audit":
            table = _with_due(ctx, table, people)
        keys = [k for k in block.keys if k in table.columns]
        rows = {manager: {k: _value(k, table.at[manager, k]) for k in keys} for manager in people + [TEAM]}
        kpis[block.name] = {"team": rows.pop(TEAM), "by_manager": rows}
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
    return get_block(block).detail(ctx, make_span(ctx, [week or ctx.week]))


def data_quality(ctx: Context, week: Week | None = None) -> dict[str, pd.DataFrame]:
    """Data-quality tables for a week: unpriced_wins, unmapped_calls, calls_without_status,
    won_without_contact, survey_coverage (see :func:`kpi_lib.kpis.quality.compute_quality`)."""
    return compute_quality(ctx, make_span(ctx, [week or ctx.week]))
