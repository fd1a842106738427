"""Charts: one theme, one function per chart kind, PNG bytes out.

Figures are built with the object-oriented API (no pyplot state, nothing to close) and
returned as PNG bytes at a modest resolution, so a report page stays small.  Names from the
CRM are drawn as plain text: mathtext parsing of ``$`` is off in the theme.
"""

from __future__ import annotations

import functools
import io
import math
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

DPI = 80
COLORS = {"line": "#2563eb", "team": "#111827", "target": "#dc2626", "bar": "#60a5fa", "good": "#16a34a",
          "bad": "#dc2626", "muted": "#9ca3af"}
PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#8b5cf6", "#ef4444", "#06b6d4", "#84cc16", "#ec4899")
THEME = {
    "text.parse_math": False,
    "text.usetex": False,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.8,
    "axes.edgecolor": "#9ca3af",
    "legend.frameon": False,
    "figure.facecolor": "white",
    "svg.fonttype": "none",
}
Formatter = Callable[[float], str]


@functools.cache
def _matplotlib():
    """matplotlib with its figure, Agg canvas and ticker, loaded and themed at the first chart: figures and
    tables need no charting library, so opening a report does not wait for it.  The one theme is
    set once for the process (a per-chart rc_context copies every setting twice)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update({**THEME, "axes.prop_cycle": matplotlib.cycler(color=PALETTE)})
    import matplotlib.backends.backend_agg
    import matplotlib.figure
    import matplotlib.ticker

    return matplotlib


def _png(fig: Figure, dpi: int = DPI) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, pil_kwargs={"compress_level": 3})  # fast; pages stay small
    return buffer.getvalue()


def _figure(width: float, height: float, left: float = 0.75, bottom: float = 0.45, top: float = 0.3,
            right: float = 0.15, hspace: float = 0.45, wspace: float = 0.35) -> Figure:
    """A figure with fixed margins in inches (a layout engine would draw everything twice)."""
    mpl = _matplotlib()
    fig = mpl.figure.Figure(figsize=(width, height))
    mpl.backends.backend_agg.FigureCanvasAgg(fig)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        hspace=hspace, wspace=wspace)
    return fig


def _label_width(labels: Sequence[str]) -> float:
    """Inches needed left of the axes for horizontal-bar labels."""
    return 0.35 + 0.08 * max((len(str(x)) for x in labels), default=4)


def _axis_format(ax, formatter: Formatter | None, axis: str = "y") -> None:
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(_matplotlib().ticker.MaxNLocator(nbins=3))
    if formatter is not None:
        target.set_major_formatter(_matplotlib().ticker.FuncFormatter(lambda v, _pos: formatter(v)))


def _target_tick(ax, target: float) -> None:
    """Put the target's value among the y ticks, so the dashed line can be read off the axis."""
    low, high = ax.get_ylim()
    ticks = [t for t in ax.yaxis.get_major_locator().tick_values(low, high) if low <= t <= high]
    close = 0.12 * (high - low)
    ax.set_yticks(sorted([t for t in ticks if abs(t - target) > close] + [target]))
    ax.set_ylim(low, high)


def _fit_title(ax, text: str, fig: Figure) -> None:
    """A left-aligned title that stays inside the figure: smaller, then on two lines, never cut off."""
    title = ax.set_title(text, loc="left")
    renderer = fig.canvas.get_renderer()
    room = fig.bbox.x1 - 4

    def fits() -> bool:
        return title.get_window_extent(renderer).x1 <= room

    for size in (9, 8):
        if fits():
            return
        title.set_fontsize(size)
    if not fits():
        lines = [""]
        for word in text.split():  # greedy wrap on the measured width
            trial = f"{lines[-1]} {word}".strip()
            title.set_text(trial)
            if fits() or not lines[-1]:
                lines[-1] = trial
            else:
                lines.append(word)
        title.set_text("\n".join(lines[:2]) + ("…" if len(lines) > 2 else ""))
        top = 1 - (title.get_window_extent(renderer).height + 8) / fig.bbox.height
        fig.subplots_adjust(top=min(fig.subplotpars.top, top))


def _shared_limits(values: Sequence[float]) -> tuple[float, float] | None:
    """One y range for every panel: the data and the targets, with a margin."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return None
    low, high = min(finite), max(finite)
    pad = 0.08 * (high - low) if high > low else max(abs(high) * 0.1, 1.0)
    return low - pad, high + pad


def _short(label: str, size: int = 28) -> str:
    return label if len(label) <= size else label[: size - 1] + "…"


def plot_trend_grid(weeks: Sequence[str], series: dict[str, Sequence[float]], targets: dict[str, float | None],
                    *, target_label: str, formatter: Formatter | None = None, empty: str = "") -> bytes:
    """Small multiples: one panel per manager, a line over ``weeks``, the target dashed.

    ``weeks`` are the x tick labels; ``series`` maps a display name to one value per week
    (NaN for no data); ``targets`` maps the same names to a target or None; a panel without
    data says ``empty``.  Every panel has the same y range, so panels compare at a glance.
    """
    names = list(series)
    cols = 3 if len(names) > 4 else max(1, min(len(names), 2))
    rows = max(1, math.ceil(len(names) / cols))
    fig = _figure(3.3 * cols, 2.0 * rows + 0.3, left=0.75, top=0.35, bottom=0.35, hspace=0.55)
    xs = list(range(len(weeks)))
    short = list(weeks)
    drawn = []
    for name in names:
        values = [float(v) for v in series[name] if v is not None]
        if any(not math.isnan(v) for v in values):
            drawn += values + ([float(targets[name])] if targets.get(name) is not None else [])
    limits = _shared_limits(drawn)
    for i, name in enumerate(names):
        # separate axes (a shared axis re-invalidates every panel's transforms on each change)
        ax = fig.add_subplot(rows, cols, i + 1)
        values = [float("nan") if v is None else float(v) for v in series[name]]
        has_data = not all(math.isnan(v) for v in values)
        ax.plot(xs, values, marker="o", markersize=3, linewidth=1.6, color=COLORS["line"])
        target = targets.get(name)
        if has_data and target is not None and not math.isnan(target):
            ax.axhline(target, color=COLORS["target"], linestyle="--", linewidth=1, label=target_label)
        ax.set_title(_short(name), loc="left")
        ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_xticks(xs[::3], short[::3] if i + cols >= len(names) else [])
        _axis_format(ax, formatter)
        if has_data and limits:
            ax.set_ylim(*limits)
            if target is not None and not math.isnan(target):
                _target_tick(ax, target)
        if not has_data:
            ax.set_yticks([])
            ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center", color=COLORS["muted"])
    return _png(fig)


def plot_team_trend(weeks: Sequence[str], values: Sequence[float], target: float | None, *, title: str,
                    target_label: str, formatter: Formatter | None = None, empty: str = "") -> bytes:
    """One line: the team's figure over ``weeks`` with the target line (the email's chart)."""
    fig = _figure(6.0, 2.6, left=0.85, top=0.35)
    ax = fig.add_subplot()
    xs = list(range(len(weeks)))
    vals = [float("nan") if v is None else float(v) for v in values]
    ax.plot(xs, vals, marker="o", markersize=4, linewidth=2, color=COLORS["team"])
    _fit_title(ax, title, fig)
    ax.set_xticks(xs[::2], list(weeks)[::2])
    _axis_format(ax, formatter)
    if all(math.isnan(v) for v in vals):
        ax.set_yticks([])
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center", color=COLORS["muted"])
    elif target is not None and not math.isnan(target):
        ax.axhline(target, color=COLORS["target"], linestyle="--", linewidth=1.2, label=target_label)
        _target_tick(ax, target)
        ax.legend(loc="best")
    return _png(fig)


def plot_histogram(values: Sequence[float], *, title: str, xlabel: str, ylabel: str,
                   bins: int | Sequence[float] = 20, marker: float | None = None, marker_label: str = "",
                   formatter: Formatter | None = None) -> bytes:
    """A histogram of ``values`` with an optional vertical marker (a median or a target)."""
    data = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    fig = _figure(6.0, 2.8, bottom=0.6)
    ax = fig.add_subplot()
    if data:
        ax.hist(data, bins=bins, color=COLORS["bar"], edgecolor="white")
    if marker is not None and not math.isnan(marker):
        ax.axvline(marker, color=COLORS["target"], linestyle="--", linewidth=1.2, label=marker_label)
        ax.legend(loc="best")
    _fit_title(ax, title, fig)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.yaxis.set_major_locator(_matplotlib().ticker.MaxNLocator(integer=True, nbins=5))
    _axis_format(ax, formatter, axis="x")
    return _png(fig)


def plot_bars(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str = "",
              formatter: Formatter | None = None, target: float | None = None, target_label: str = "",
              value_labels: Sequence[str] | None = None) -> bytes:
    """Horizontal bars, one per label, with the value written at the end of each bar."""
    vals = [0.0 if v is None or math.isnan(float(v)) else float(v) for v in values]
    short = [_short(str(x), 32) for x in labels]
    fig = _figure(6.0, 0.9 + 0.32 * max(len(labels), 2), left=_label_width(short), bottom=0.5 if xlabel else 0.35)
    ax = fig.add_subplot()
    ys = list(range(len(labels)))
    ax.barh(ys, vals, color=COLORS["bar"])
    ax.set_yticks(ys, short)
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    for y, v, shown in zip(ys, vals, value_labels or [formatter(v) if formatter else f"{v:g}" for v in vals]):
        ax.annotate(shown, (v, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    if target is not None and not math.isnan(target):
        ax.axvline(target, color=COLORS["target"], linestyle="--", linewidth=1.2, label=target_label)
        ax.legend(loc="lower right")
    _fit_title(ax, title, fig)
    ax.set_xlabel(xlabel)
    ax.margins(x=0.15)
    _axis_format(ax, formatter, axis="x")
    return _png(fig)


def plot_stacked_bars(labels: Sequence[str], parts: dict[str, Sequence[float]], *, title: str,
                      xlabel: str = "") -> bytes:
    """Horizontal stacked bars: one bar per label, one colour per part (with a legend)."""
    short = [_short(str(x), 32) for x in labels]
    fig = _figure(7.0, 1.5 + 0.32 * max(len(labels), 2), left=_label_width(short), top=0.35, bottom=0.95)
    ax = fig.add_subplot()
    ys = list(range(len(labels)))
    left = [0.0] * len(labels)
    for name, values in parts.items():
        vals = [float(v or 0) for v in values]
        ax.barh(ys, vals, left=left, label=name)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_yticks(ys, short)
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    ax.xaxis.set_major_locator(_matplotlib().ticker.MaxNLocator(integer=True, nbins=5))
    _fit_title(ax, title, fig)
    ax.set_xlabel(xlabel)
    fig.legend(loc="lower left", bbox_to_anchor=(0.01, 0.01), ncols=len(parts), fontsize=8)
    return _png(fig)


def plot_funnel(ns: Sequence[float], limits: dict[str, tuple[Sequence[float], Sequence[float]]], centre: float,
                n: Sequence[float], rates: Sequence[float], names: Sequence[str], *, title: str, xlabel: str,
                team_label: str, formatter: Formatter | None = None) -> bytes:
    """A funnel plot: each manager's rate against n, the team's rate and its control limits.

    ``limits`` maps a label (``95%``) to the lower and upper limit at each of ``ns``; the
    first is drawn dashed, the next dotted.
    """
    fig = _figure(7.0, 3.2, bottom=0.55, right=1.75)
    ax = fig.add_subplot()
    ax.axhline(centre, color=COLORS["team"], linewidth=1.2, label=team_label)
    for (label, (low, high)), style in zip(limits.items(), ("--", ":")):
        ax.plot(ns, low, color=COLORS["muted"], linestyle=style, linewidth=1.2, label=label)
        ax.plot(ns, high, color=COLORS["muted"], linestyle=style, linewidth=1.2)
    ax.scatter(n, rates, color=COLORS["line"], zorder=3, s=22)
    for x, y, name in zip(n, rates, names):
        ax.annotate(_short(str(name), 18), (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.set_xlim(min(ns), max(ns))
    ax.set_title(title, loc="left")
    ax.set_xlabel(xlabel)
    _axis_format(ax, formatter)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _png(fig)
