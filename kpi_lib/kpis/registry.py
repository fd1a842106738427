"""The one place a KPI figure is declared: a frozen record per block, in kpi-definitions.md order.

Everything that lists figures reads :data:`BLOCKS` — the JSON of §8 (keys, counts), the
targets of §7 (primary figure, direction, default, range), the notebooks of the weekly run,
the labels' keys, the report sections (the ``n`` beside a figure, the distribution chart, the
data-quality notes) and the scorecard.  A new figure is one :class:`Figure` in its block's
record plus its compute function and its test; a test checks that every key has an English and
a Russian label, a row in ``docs/kpi-definitions.md`` and a section in its notebook.

Adding a field for every figure (say the numerator and denominator of a ratio) is one field on
:class:`Figure` with a default, set where it applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..errors import ConfigError
from .average_check import compute_average_check, detail_average_check
from .cost_of_service import compute_cost_of_service, detail_cost_of_service
from .customer_satisfaction import compute_customer_satisfaction, detail_customer_satisfaction
from .facts import PARTS
from .first_call import compute_first_call, detail_first_call, detail_speed_to_lead
from .productivity import compute_productivity, detail_productivity
from .smart_audit import compute_smart_audit, detail_smart_audit

#: How a figure is typed in the JSON and shown in a report.
KINDS_OF_FIGURE = ("count", "pct", "money", "minutes", "number0", "number1", "number2", "bool")
#: The range a target of each kind must lie in (a percentage within 0–100).
_RANGES: dict[str, tuple[float, float]] = {"pct": (0.0, 100.0)}


@dataclass(frozen=True)
class Figure:
    """One key of a block's table (kpi-definitions.md §1–§6).

    Attributes
    ----------
    key : str
        The JSON key.
    kind : str
        One of :data:`KINDS_OF_FIGURE`: ``count`` is a JSON integer, ``bool`` a boolean, every
        other kind a number or null.
    direction : str or None
        ``">="`` or ``"<="`` (which way is better) for a figure with a target (§7), else None.
    target : float or None
        The default target; None for a figure with a direction means the team's trailing
        12-week median.
    sample : str or None
        The key shown as ``n`` beside the figure.
    proportion : bool
        ``sample`` is the denominator of a proportion (a small n gets a 95 % interval).
    bounds : (float, float) or None
        The range a target must lie in; default by kind (0–100 for a percentage, else 0 or more).
    optional : bool
        Present only when it applies (``nps`` when configured, ``due_*`` in the current week).
    numerator : str or None
        For a ratio that ``kpi-report drivers`` splits (§11): what the team figure sums over
        managers above ``sample``, its denominator (``P = Σ num / Σ den``).
    """

    key: str
    kind: str = "count"
    direction: str | None = None
    target: float | None = None
    sample: str | None = None
    proportion: bool = False
    bounds: tuple[float, float] | None = None
    optional: bool = False
    numerator: str | None = None

    @property
    def target_range(self) -> tuple[float, float]:
        return self.bounds or _RANGES.get(self.kind, (0.0, math.inf))


@dataclass(frozen=True)
class Block:
    """One KPI block: its figures in §8 order, its primary figure, notebook and functions.

    Attributes
    ----------
    name : str
        The block's key in the §8 JSON.
    notebook : str
        The report notebook (``notebooks/<notebook>.ipynb``).
    figures : tuple of Figure
        Every key of the block's table, in the order of kpi-definitions.md.
    primary : str
        The key of the block's primary figure (it has a direction).
    compute : callable
        ``compute(ctx, span, *needed)``: the block's table over a span, indexed by (week index,
        manager or 'team'), a column per key.
    detail : callable
        ``detail(ctx, span)``: the item-level rows behind the block (§10).
    more_details : tuple of (str, callable)
        Further item-level rows behind some of its figures, by name (``speed_to_lead``: the new
        leads behind the first-call block's speed to lead).
    distribution : str
        The kind of distribution chart its report draws.
    quality : tuple of str
        The data-quality tables (:func:`kpi_lib.kpis.data_quality`) its report notes.
    needs : tuple of str
        Blocks whose tables ``compute`` takes after the span, in this order.
    reads : tuple of str
        The parts of the window's items (:data:`kpi_lib.kpis.facts.PARTS`) its figures, items,
        drivers and data-quality tables read, so that a report of this block reads them at once.
    """

    name: str
    notebook: str
    figures: tuple[Figure, ...]
    primary: str
    compute: Callable[..., Any]
    detail: Callable[..., Any]
    distribution: str
    quality: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    more_details: tuple[tuple[str, Callable[..., Any]], ...] = ()

    def figure(self, key: str) -> Figure:
        """The figure ``key`` of this block (KeyError when it has none)."""
        for fig in self.figures:
            if fig.key == key:
                return fig
        raise KeyError(f"block {self.name} has no figure {key!r}")

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key, in §8 order (optional ones included)."""
        return tuple(f.key for f in self.figures)

    @property
    def counts(self) -> frozenset[str]:
        """The keys that are counts (JSON integers)."""
        return frozenset(f.key for f in self.figures if f.kind == "count")

    @property
    def direction(self) -> str:
        """Which way the primary figure is better: ``">="`` or ``"<="``."""
        return self.figure(self.primary).direction

    @property
    def target(self) -> float | None:
        """The primary figure's default target (None: the trailing 12-week median)."""
        return self.figure(self.primary).target

    @property
    def targeted(self) -> tuple[Figure, ...]:
        """The figures with a target: the primary first, then the others in §8 order."""
        return (self.figure(self.primary),) + tuple(f for f in self.figures if f.direction and f.key != self.primary)


def _pct(key: str, **kw: Any) -> Figure:
    return Figure(key, "pct", **kw)


BLOCKS: tuple[Block, ...] = (
    Block(
        "customer_satisfaction", "01_customer_satisfaction",
        (Figure("won"), Figure("responses"),
         _pct("csat_pct", direction=">=", target=80.0, sample="responses", proportion=True,
              numerator="responses scoring 4 or 5"),
         Figure("csat_mean", "number2"), _pct("coverage_pct"), _pct("repeat_win_share_pct"),
         Figure("nps", "number0", optional=True)),
        primary="csat_pct", compute=compute_customer_satisfaction, detail=detail_customer_satisfaction,
        distribution="scores", quality=("survey_coverage", "won_without_contact"), reads=("closed", "links")),
    Block(
        "cost_of_service", "02_cost_of_service",
        (Figure("escalated_leads"), Figure("worked_leads"),
         _pct("escalation_rate_pct", direction="<=", target=10.0, sample="worked_leads", proportion=True,
              numerator="escalated_leads"),
         Figure("escalation_events"), Figure("supervisor_minutes", "minutes"), Figure("won"),
         Figure("cost_per_won_deal", "money")),
        primary="escalation_rate_pct", compute=compute_cost_of_service, detail=detail_cost_of_service,
        distribution="signals", quality=("unmapped_calls",), reads=("closed", "owners", "calls", "service")),
    Block(
        "first_call", "03_first_call_quality",
        (Figure("fcr_eligible"), Figure("fcr_resolved"),
         _pct("fcr_pct", direction=">=", target=70.0, sample="fcr_eligible", proportion=True, numerator="fcr_resolved"),
         Figure("fcr_final", "bool"), _pct("first_call_connect_pct"), Figure("new_leads"), Figure("uncalled_leads"),
         Figure("stl_median_min", "minutes", direction="<=", target=5.0, sample="new_leads"),
         _pct("stl_within_5_pct")),
        primary="fcr_pct", compute=compute_first_call, detail=detail_first_call,
        distribution="speed_to_lead", quality=("unmapped_calls", "calls_without_status"),
        reads=("owners", "calls", "first_calls"), more_details=(("speed_to_lead", detail_speed_to_lead),)),
    Block(
        "average_check", "04_average_check",
        (Figure("won"), Figure("priced_won"),
         Figure("avg_check", "money", direction=">=", sample="priced_won", numerator="price of the priced won deals"),
         Figure("median_check", "money"), Figure("won_revenue", "money"), _pct("unpriced_share_pct"), Figure("lost"),
         _pct("win_rate_pct")),
        primary="avg_check", compute=compute_average_check, detail=detail_average_check,
        distribution="deal_sizes", quality=("unpriced_wins",), reads=("closed",)),
    Block(
        "productivity", "05_manager_productivity",
        (Figure("active_days"), Figure("connected_calls"), Figure("talk_minutes", "minutes"),
         Figure("revenue_per_active_day", "money", direction=">=", sample="active_days", numerator="won_revenue"),
         Figure("calls_per_active_day", "number1"), Figure("wins_per_100_calls", "number1"),
         Figure("check_x_calls_per_day", "money")),
        primary="revenue_per_active_day", compute=compute_productivity, detail=detail_productivity,
        distribution="calls_per_day", quality=("unpriced_wins", "unmapped_calls", "calls_without_status"),
        needs=("average_check",), reads=("calls", "activity")),
    Block(
        "smart_audit", "06_smart_audit",
        (Figure("tasks"),
         Figure("smart_index", "number1", direction=">=", target=90.0, sample="tasks", bounds=(0.0, 100.0),
                numerator="task scores"),
         _pct("smart_complete_pct"), _pct("specific_pct"), _pct("measurable_pct"), _pct("achievable_pct"),
         _pct("relevant_pct"), _pct("time_bound_pct"), _pct("overdue_pct"),
         Figure("due_today", optional=True), Figure("due_tomorrow", optional=True)),
        primary="smart_index", compute=compute_smart_audit, detail=detail_smart_audit,
        distribution="criteria", reads=("tasks",)),
)

#: Block records by name, in §8 order.
BY_NAME: dict[str, Block] = {b.name: b for b in BLOCKS}
#: The block names, in §8 order.
BLOCK_NAMES: tuple[str, ...] = tuple(BY_NAME)
#: Every set of item-level rows (§10) by name: each block's, then its further ones, in §8 order.
DETAILS: dict[str, Callable[..., Any]] = {
    name: fn for b in BLOCKS for name, fn in ((b.name, b.detail), *b.more_details)}
#: What :func:`kpi_lib.kpis.block_detail` and ``kpi-report detail --block`` accept.
DETAIL_BLOCKS: tuple[str, ...] = tuple(DETAILS)
#: Display kind of every key (a key appearing in several blocks has one kind everywhere).
KINDS: dict[str, str] = {f.key: f.kind for b in BLOCKS for f in b.figures}
#: The report notebooks, in order, and the block each shows.
NOTEBOOKS: dict[str, str] = {b.notebook: b.name for b in BLOCKS}


def get_block(name: str) -> Block:
    """The record of block ``name``, else a ConfigError listing the blocks."""
    if name not in BY_NAME:
        raise ConfigError(f"unknown KPI block {name!r}: use one of {', '.join(BLOCK_NAMES)}")
    return BY_NAME[name]


def with_needs(names) -> tuple[str, ...]:
    """The blocks ``names`` and every block their computation needs, in §8 order (None: all)."""
    if names is None:
        return BLOCK_NAMES
    wanted: set[str] = set()
    todo = [get_block(name).name for name in names]
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(BY_NAME[name].needs)
    return tuple(name for name in BLOCK_NAMES if name in wanted)


def reads_of(blocks) -> tuple[str, ...]:
    """The parts of the window's items (:data:`kpi_lib.kpis.facts.PARTS`) the blocks ``blocks`` read."""
    return tuple(part for part in PARTS if any(part in BY_NAME[name].reads for name in blocks))


def details_of(blocks) -> tuple[str, ...]:
    """The item-level rows (:data:`DETAILS`) of the blocks ``blocks``: their own and further ones."""
    return tuple(detail for name in BLOCK_NAMES if name in blocks
                 for detail in (name, *(more for more, _ in BY_NAME[name].more_details)))


def targeted_figures() -> list[tuple[Block, Figure]]:
    """Every figure with a target: the six primary figures in §8 order, then the others."""
    primaries = [(block, block.figure(block.primary)) for block in BLOCKS]
    return primaries + [(block, fig) for block in BLOCKS for fig in block.targeted[1:]]


def default_targets() -> dict[str, float | None]:
    """The default target of every figure that has one (None: the trailing 12-week median)."""
    return {fig.key: fig.target for _, fig in targeted_figures()}


def _range_text(low: float, high: float) -> str:
    if math.isinf(high):
        return f"a number of {low:g} or more"
    return f"a number from {low:g} to {high:g}"


def check_targets(targets: Mapping[str, Any], where: str = "kpi.targets") -> dict[str, float | None]:
    """Targets from params checked against their figures: known, a number (or null), in range.

    Returns
    -------
    dict
        The given targets as floats (None kept: "no target, use the trailing median").

    Raises
    ------
    ConfigError
        Naming the figure, what it accepts and the value, e.g. ``kpi.targets.csat_pct: expected
        a number from 0 to 100 (a percentage), got 120``.
    """
    figures = {fig.key: fig for _, fig in targeted_figures()}
    out: dict[str, float | None] = {}
    for key, value in targets.items():
        fig = figures.get(key)
        if fig is None:
            raise ConfigError(f"{where}.{key}: unknown target: use one of {', '.join(sorted(figures))}")
        if value is None:
            out[key] = None
            continue
        low, high = fig.target_range
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and low <= value <= high
        if not ok:
            what = _range_text(low, high) + (" (a percentage)" if fig.kind == "pct" else "")
            raise ConfigError(f"{where}.{key}: expected {what}, got {value!r}")
        out[key] = float(value)
    return out
