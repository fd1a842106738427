"""The block-specific parts of a report: distribution charts, data-quality notes, method text
and the SMART audit's task lists.

Each function takes a :class:`kpi_lib.views.BlockReport` and returns plain data (a title
and PNG bytes, notes, rows) for the views' templates; nothing here builds HTML, so every
value from the CRM reaches the page through an autoescaping template.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import i18n, plots
from .kpis import manager_label

if TYPE_CHECKING:  # pragma: no cover
    from .views import BlockReport

SMALL_N = 30
STL_BINS = (0, 5, 15, 30, 60, 120, 240, 480)
_SUBDOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$", re.IGNORECASE)
_ENTITY_PATHS = {"leads": "leads", "lead": "leads", "contacts": "contacts", "contact": "contacts",
                 "companies": "companies", "company": "companies"}


def crm_link(report: "BlockReport", entity_type: Any, entity_id: Any) -> str | None:
    """``https://{subdomain}.amocrm.ru/leads/detail/{id}`` (or contacts/companies), if both are sane."""
    subdomain = str(report.data.account.get("subdomain") or "")
    path = _ENTITY_PATHS.get(str(entity_type))
    if not _SUBDOMAIN.match(subdomain) or path is None or i18n.is_missing(entity_id):
        return None
    return f"https://{subdomain}.amocrm.ru/{path}/detail/{int(entity_id)}"


def _mine(report: "BlockReport", frame: pd.DataFrame, column: str = "manager") -> pd.DataFrame:
    """Rows of the report's managers only."""
    ids = {int(m) for m in report.manager_ids()}
    values = pd.to_numeric(frame[column], errors="coerce")
    return frame.loc[values.isin(ids).to_numpy()]


def _scores(report: "BlockReport", detail: pd.DataFrame) -> tuple[str, bytes | None]:
    """Customer satisfaction: won deals by survey score, 1 to 5."""
    t, lang = report.t, report.lang
    scores = pd.to_numeric(_mine(report, detail)["score"], errors="coerce").dropna() if len(detail) else []
    counts = [int((np.floor(scores) == s).sum()) for s in range(1, 6)] if len(scores) else []
    title = t("chart.csat_title")
    png = plots.plot_bars([str(s) for s in range(1, 6)], counts, title=title, xlabel=t("chart.deals"),
                          formatter=lambda v: i18n.format_number(v, lang)) if sum(counts or [0]) else None
    return title, png


def _signals(report: "BlockReport", detail: pd.DataFrame) -> tuple[str, bytes | None]:
    """Cost of service: each manager's escalation signals, stacked by kind (E1, E2, E3)."""
    t = report.t
    title = t("chart.cost_title")
    if not len(detail):
        return title, None
    counts = pd.crosstab(pd.to_numeric(detail["manager"]), detail["kind"])
    ids = report.manager_ids()
    parts = {t(f"chart.{kind}"): [int(counts.at[int(m), kind]) if int(m) in counts.index and kind in counts
                                  else 0 for m in ids] for kind in ("E1", "E2", "E3")}
    return title, plots.plot_stacked_bars([report.name(m) for m in ids], parts, title=title,
                                          xlabel=t("chart.cost_x"))


def _speed_to_lead(report: "BlockReport", detail: pd.DataFrame) -> tuple[str, bytes | None]:
    """First call: new leads by speed to lead in business minutes, and those not called."""
    t, lang = report.t, report.lang
    title = t("chart.stl_title")
    detail = report.data.details.get("speed_to_lead", pd.DataFrame())  # the new leads, not the FCR rows
    stl = pd.to_numeric(_mine(report, detail)["stl_min"], errors="coerce").dropna() if len(detail) else []
    if not len(stl):
        return title, None
    edges = list(STL_BINS) + [float("inf")]
    counts = pd.cut(stl, edges, include_lowest=True).value_counts(sort=False).astype(int).tolist()
    labels = [_span_label(lo, hi, t) for lo, hi in zip(edges, edges[1:])]
    counts.append(int(report.figures("team").get("uncalled_leads") or 0))
    labels.append(t("chart.not_called"))
    return title, plots.plot_bars(labels, counts, title=title, xlabel=t("chart.leads"),
                                  formatter=lambda v: i18n.format_number(v, lang))


def _deal_sizes(report: "BlockReport", detail: pd.DataFrame) -> tuple[str, bytes | None]:
    """Average check: a histogram of priced won deals with the median marked."""
    t, lang = report.t, report.lang
    title = t("chart.check_title")
    won = _mine(report, detail) if len(detail) else detail
    prices = pd.to_numeric(won.loc[won["status"] == "won", "price"], errors="coerce") if len(won) else []
    prices = [p for p in prices if p > 0]
    if not prices:
        return title, None
    return title, plots.plot_histogram(
        prices, bins=min(20, max(5, len(prices) // 3)), title=title,
        xlabel=f"{t('chart.check_x')}, {i18n.currency_unit(report.currency, lang)}", ylabel=t("chart.deals"),
        marker=float(np.median(prices)), marker_label=t("chart.median"),
        formatter=lambda v: i18n.format_number(v, lang))


def _calls_per_day(report: "BlockReport", detail: pd.DataFrame) -> tuple[str, bytes | None]:
    """Productivity: each manager's connected calls per active day."""
    lang = report.lang
    title = report.t("chart.calls_title")
    ids = report.manager_ids()
    figures = [report.figures(m).get("calls_per_active_day") for m in ids]
    if all(i18n.is_missing(v) for v in figures):
        return title, None
    return title, plots.plot_bars([report.name(m) for m in ids], figures, title=title,
                                  value_labels=[i18n.format_number(v, lang, 1) for v in figures],
                                  formatter=lambda v: i18n.format_number(v, lang))


def _criteria(report: "BlockReport", detail: pd.DataFrame) -> tuple[str, bytes | None]:
    """SMART audit: the team's pass rate of each criterion."""
    lang = report.lang
    title = report.t("chart.smart_title")
    keys = ("specific_pct", "measurable_pct", "achievable_pct", "relevant_pct", "time_bound_pct")
    team = report.figures("team")
    if not team.get("tasks"):
        return title, None
    values = [team.get(k) for k in keys]
    return title, plots.plot_bars([i18n.label(k, lang) for k in keys], values, title=title,
                                  value_labels=[i18n.format_pct(v, lang) for v in values],
                                  formatter=report.axis_formatter("specific_pct"))


#: The chart of each distribution kind a block record names.
DISTRIBUTIONS = {"scores": _scores, "signals": _signals, "speed_to_lead": _speed_to_lead,
                 "deal_sizes": _deal_sizes, "calls_per_day": _calls_per_day, "criteria": _criteria}


def distribution(report: "BlockReport") -> tuple[str, bytes | None]:
    """The block's distribution chart: a title and PNG bytes (None when there is nothing to show)."""
    detail = report.data.details.get(report.block, pd.DataFrame())
    return DISTRIBUTIONS[report.record.distribution](report, detail)


def _span_label(low: float, high: float, t) -> str:
    """``≤ 5 min``, ``5–15 min``, ``1–2 h``, ``> 8 h``: a speed-to-lead bucket in business time."""
    hours = low >= 60  # one unit per bucket, from its lower edge: 30–60 min, 1–2 h

    def part(minutes: float) -> str:
        return f"{minutes / 60:g}" if hours else f"{minutes:g}"

    unit = t("unit_h") if hours else t("unit_min")
    if low == 0:
        return f"≤ {part(high)} {unit}"
    if high == float("inf"):
        return f"> {part(low)} {unit}"
    return f"{part(low)}–{part(high)} {unit}"


def quality_notes(report: "BlockReport") -> list[dict[str, Any]]:
    """Notes: ``{"text", "links": [{"text", "href"}], "table": {"columns", "rows"} | None}``."""
    notes: list[dict[str, Any]] = []
    t, lang = report.t, report.lang
    for key in report.record.quality:
        frame = report.data.quality.get(key)
        if frame is None:
            continue
        if key == "survey_coverage":
            frame = frame[frame["week"] == report.data.week.label] if "week" in frame else frame
            rows = [[report.name(manager_label(r["manager"])), i18n.format_number(r["won"], lang),
                     i18n.format_number(r["responses"], lang), i18n.format_pct(r["coverage_pct"], lang)]
                    for _, r in frame.iterrows()]
            if rows:
                columns = [t("col.manager"), i18n.label("won", lang), i18n.label("responses", lang),
                           i18n.label("coverage_pct", lang)]
                notes.append({"text": t("dq.survey_coverage"), "links": [], "table": {"columns": columns, "rows": rows}})
            continue
        if not len(frame):
            continue
        items = []
        if "lead_id" in frame:
            for _, r in frame.head(10).iterrows():
                label = f"#{int(r['lead_id'])} {r.get('name') or ''}".strip()
                items.append({"text": f"{label} — {report.name(r.get('manager'))}",
                              "href": crm_link(report, "leads", r["lead_id"])})
            if len(frame) > 10:
                items.append({"text": t("dq.more", n=len(frame) - 10), "href": None})
        notes.append({"text": t(f"dq.{key}", n=i18n.format_number(len(frame), lang)), "links": items, "table": None})
    small = []
    sample, proportion = report.sample(report.key)
    if proportion:
        for m in report.manager_ids():
            n = report.figures(m).get(sample)
            if not i18n.is_missing(n) and 0 < n < SMALL_N:
                small.append(report.name(m))
    if small:
        notes.append({"text": t("dq.small_n", names=", ".join(small)), "links": [], "table": None})
    if report.target_row("team").get("target_source") == "median12":
        notes.append({"text": t("dq.median_target", figure=report.key), "links": [], "table": None})
    return notes


def method_text(report: "BlockReport") -> str:
    """The block's "how this is computed" paragraph with this run's settings filled in."""
    kpi, lang = report.data.settings.kpi, report.lang
    target = f"{i18n.label(report.key, lang)} {report.target_text(report.key, report.target_row('team'))}"
    hours = kpi.business_hours
    weekdays = i18n.text("weekdays", lang).split()
    days = ", ".join(weekdays[d - 1] for d in hours.days)
    values = {
        "target": target, "field": str(kpi.csat_field), "days": kpi.fcr_window_days,
        "hours": f"{days} {hours.start}–{hours.end}",
        "stl_target": report.target_text("stl_median_min", report.target_row("team", "stl_median_min")),
        "task_min": i18n.format_number(kpi.minutes_per_escalation_task, lang),
        "takeover_min": i18n.format_number(kpi.minutes_per_takeover, lang),
        "rate": i18n.format_money(kpi.supervisor_hourly_rate, lang, report.currency),
        "words": kpi.min_task_words, "result_words": kpi.min_result_words, "max_tasks": kpi.max_tasks_per_day,
    }
    return i18n.text(f"method.{report.block}", lang, **values)


def _mark(value: Any) -> str:
    if i18n.is_missing(value):
        return "–"
    return "✓" if bool(value) else "✗"


def worst_task_rows(report: "BlockReport", limit: int) -> list[dict[str, Any]]:
    """The lowest-scoring audited tasks (overdue first among equals), with amoCRM links."""
    detail = report.data.details.get("smart_audit", pd.DataFrame())
    if not len(detail):
        return []
    frame = _mine(report, detail).sort_values(["score", "overdue", "complete_till"], ascending=[True, False, True])
    rows = []
    for _, r in frame.head(limit).iterrows():
        text = r.get("text")
        text = report.t("smart.no_text") if i18n.is_missing(text) or not str(text).strip() else str(text)
        rows.append({
            "manager": report.name(r["manager"]), "text": text if len(text) <= 140 else text[:139] + "…",
            "due": _when(r.get("complete_till"), lang=report.lang),
            "marks": [_mark(r.get(c)) for c in "SMART"], "score": i18n.format_pct(100 * float(r["score"]), report.lang, 0),
            "overdue": bool(r.get("overdue")) if not i18n.is_missing(r.get("overdue")) else False,
            "href": crm_link(report, r.get("entity_type"), r.get("entity_id")),
        })
    return rows


def _when(value: Any, lang: str, with_day: bool = True) -> str:
    if i18n.is_missing(value):
        return "—"
    moment = pd.Timestamp(value)
    return f"{i18n.format_day(moment, lang)}, {moment:%H:%M}" if with_day else f"{moment:%H:%M}"


def due_task_groups(report: "BlockReport") -> list[dict[str, Any]] | None:
    """Per manager, the open tasks due today and tomorrow; None outside the current week."""
    due = report.data.due
    if due is None:
        return None
    groups = []
    for m in report.manager_ids():
        rows = due[pd.to_numeric(due["manager"], errors="coerce") == int(m)] if len(due) else due
        tasks = []
        for _, r in rows.sort_values("due").iterrows():
            text = r.get("text")
            tasks.append({
                "day": report.t(f"smart.{r['day']}"), "when": _when(r.get("due"), report.lang, with_day=False),
                "text": report.t("smart.no_text") if i18n.is_missing(text) or not str(text).strip() else str(text),
                "href": crm_link(report, r.get("entity_type"), r.get("entity_id")),
            })
        groups.append({"manager": report.name(m), "tasks": tasks})
    return groups
