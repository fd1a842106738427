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
from ..periods import Week, parse_week
from .common import TEAM, Span, make_span, manager_ids
from .context import Context
from .items import pick_items_pulling_down
from .quality import compute_quality
from .registry import BLOCKS, DETAIL_BLOCKS, DETAILS, KINDS, with_needs
from .smart_audit import due_tasks


def resolve_week(ctx: Context, week: Week | str | None = None) -> Week:
    """A week argument as a :class:`Week`: a Week, an ISO label (``"2026-W47"``), ``"last"``
    (the last complete week before the context's now), ``"current"``, or None (the context's week)."""
    if week is None:
        return ctx.week
    if isinstance(week, Week):
        return week
    if isinstance(week, str):
        return parse_week(week, ctx.tz, now=ctx.now)
    raise ConfigError(f"week {week!r} is not a week: use an ISO label such as '2026-W47', 'last' or 'current'")


def compute_blocks(ctx: Context, span: Span, blocks=None) -> dict[str, pd.DataFrame]:
    """Every block's table over a span: indexed by (week index, manager or 'team'), a column per key
    (``blocks``: only these block names and the blocks they need)."""
    tables: dict[str, pd.DataFrame] = {}
    wanted = with_needs(blocks)
    for block in BLOCKS:
        if block.name in wanted:
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


def compute_kpis(ctx: Context, week: Week | str | None = None) -> dict:
    """One week's KPIs in exactly the structure of ``kpi-report kpis --json`` (§8).

    Parameters
    ----------
    week : Week or str, optional
        ``"2026-W47"``, ``"last"``, ``"current"`` or a Week; default: the context's week.
        ``due_today``/``due_tomorrow`` appear only when ``now``
        falls inside the week, ``nps`` only when ``nps_field`` is set.
    """
    week = resolve_week(ctx, week)
    return _week_result(ctx, week, compute_blocks(ctx, make_span(ctx, [week])), 0)


def _week_result(ctx: Context, week: Week, tables: dict[str, pd.DataFrame], w: int) -> dict:
    """The §8 structure of week index ``w`` of the block tables of a span."""
    current = week.start <= ctx.now < week.end
    people = [str(int(m)) for m in ctx.managers["user_id"]]
    kpis = {}
    for block in BLOCKS:
        if block.name not in tables:
            continue
        table = tables[block.name].xs(w, level="w")
        if current and block.name == "smart_audit":
            table = _with_due(ctx, table, people)
        keys = [k for k in block.keys if k in table.columns]
        cells = table[keys].to_dict("index")
        rows = {manager: {k: _value(k, cells[manager][k]) for k in keys} for manager in people + [TEAM]}
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


def compute_trends(ctx: Context, weeks: int = 12, end: Week | str | None = None) -> pd.DataFrame:
    """The KPIs over the ``weeks`` weeks ending with ``end`` (default: the context's week), tidy.

    Returns
    -------
    DataFrame
        week (label), week_start (local midnight, timezone-aware), block, key, manager (int
        user id; NA for the team row), value (float; NaN where the figure is null;
        ``fcr_final`` as 1.0/0.0).

    Parameters
    ----------
    weeks : int
        How many weeks, oldest first.
    end : Week or str, optional
        The last week: ``"2026-W47"``, ``"last"``, ``"current"`` or a Week (default: the
        context's week).
    """
    span = _trend_span(ctx, weeks, end)
    return _tidy(ctx, span, compute_blocks(ctx, span))


def compute_week_and_trends(ctx: Context, weeks: int = 12, blocks=None) -> tuple[dict, pd.DataFrame]:
    """:func:`compute_kpis` of the context's week and :func:`compute_trends` of the ``weeks``
    weeks ending with it, from one computation of the blocks over those weeks (``blocks``: only
    these block names and the blocks they need)."""
    span = _trend_span(ctx, weeks, None)
    tables = compute_blocks(ctx, span, blocks)
    return _week_result(ctx, ctx.week, tables, weeks - 1), _tidy(ctx, span, tables)


def _trend_span(ctx: Context, weeks: int, end: Week | str | None) -> Span:
    if isinstance(weeks, bool) or not isinstance(weeks, int) or weeks < 1:
        raise ConfigError(f"trend weeks {weeks!r} is not a whole number of weeks: use 1 or more (e.g. 12)")
    end = resolve_week(ctx, end)
    return make_span(ctx, [end.shift(-i) for i in range(weeks - 1, -1, -1)])


def _tidy(ctx: Context, span: Span, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The block tables of a span as the tidy trends frame."""
    labels = np.array([w.label for w in span.weeks], dtype=object)
    starts = pd.DatetimeIndex([pd.Timestamp(w.start) for w in span.weeks]).tz_convert(ctx.tz)
    parts = []
    for block, table in tables.items():
        long = table.reset_index().melt(id_vars=["w", "manager"], var_name="key", value_name="value")
        w = long["w"].to_numpy()
        parts.append(pd.DataFrame({"week": labels[w], "week_start": starts[w], "block": block,
                                   "key": long["key"].to_numpy(dtype=object),
                                   "manager": manager_ids(long["manager"]),
                                   "value": long["value"].to_numpy(dtype="float64")}))
    return pd.concat(parts, ignore_index=True)


def block_detail(ctx: Context, block: str, week: Week | str | None = None, manager: int | None = None) -> pd.DataFrame:
    """The items behind one block's figures in a week (kpi-definitions.md §10): exactly the
    rows ``kpi-report detail --block BLOCK`` prints.

    Parameters
    ----------
    block : str
        One of :data:`~kpi_lib.kpis.registry.DETAIL_BLOCKS`: the six blocks and
        ``speed_to_lead`` (the new leads behind the first-call block's speed to lead).
    week : Week or str, optional
        ``"2026-W47"``, ``"last"``, ``"current"`` or a Week (default: the context's week).
    manager : int, optional
        Only this manager's rows.

    Returns
    -------
    DataFrame
        One row per item, sorted by manager then time.  Every frame has ``manager`` (int
        user id), ``manager_name`` and ``url``; times are timezone-aware in the report
        timezone.  The columns of each block are listed in its function's docstring:
        :func:`~kpi_lib.kpis.first_call.detail_first_call` (``first_call``: ``lead_id, name,
        manager, manager_name, fc_at, resolved, reasons, callback_at, repeat_call_at, url``),
        :func:`~kpi_lib.kpis.first_call.detail_speed_to_lead`,
        :func:`~kpi_lib.kpis.cost_of_service.detail_cost_of_service` (``cost_of_service``:
        ``lead_id, name, manager, manager_name, kind, at, supervisor, supervisor_name,
        minutes, text, url``),
        :func:`~kpi_lib.kpis.customer_satisfaction.detail_customer_satisfaction`,
        :func:`~kpi_lib.kpis.average_check.detail_average_check`,
        :func:`~kpi_lib.kpis.productivity.detail_productivity` and
        :func:`~kpi_lib.kpis.smart_audit.detail_smart_audit`.
    """
    if block not in DETAILS:
        raise ConfigError(f"unknown KPI block {block!r}: use one of {', '.join(DETAIL_BLOCKS)}")
    rows = DETAILS[block](ctx, make_span(ctx, [resolve_week(ctx, week)]))
    if manager is not None:
        ids = ctx.managers["user_id"].tolist()
        if int(manager) not in ids:
            raise ConfigError(f"manager {manager} is not a manager of this report: use one of "
                              f"{', '.join(str(i) for i in ids) or 'none'}")
        rows = rows.loc[rows["manager"].to_numpy() == int(manager)].reset_index(drop=True)
    return rows


def find_items_pulling_down(ctx: Context, week: Week | str | None = None,
                            manager: int | None = None) -> pd.DataFrame:
    """The items pulling each figure down in a week, per manager and reason (see
    :func:`kpi_lib.kpis.items.pick_items_pulling_down` for the columns).

    Parameters
    ----------
    week : Week or str, optional
        ``"2026-W47"``, ``"last"``, ``"current"`` or a Week (default: the context's week).
    manager : int, optional
        Only this manager's items.
    """
    return pick_items_pulling_down({b: block_detail(ctx, b, week, manager) for b in DETAIL_BLOCKS})


def data_quality(ctx: Context, week: Week | str | None = None, tables: tuple[str, ...] | None = None
                 ) -> dict[str, pd.DataFrame]:
    """Data-quality tables for a week: unpriced_wins, unmapped_calls, calls_without_status,
    won_without_contact, survey_coverage (see :func:`kpi_lib.kpis.quality.compute_quality`;
    ``tables``: only these)."""
    span = make_span(ctx, [resolve_week(ctx, week)])
    return compute_quality(ctx, span) if tables is None else compute_quality(ctx, span, tables)
