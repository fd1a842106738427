"""What a report notebook shows: :func:`open_report` and the sections of one KPI block.

A notebook calls ``report = open_report(block=..., week=week, ...)`` and then one method per
section (``headline``, ``manager_table``, ``trend_chart``, ``distribution_chart``,
``supporting``, ``data_quality``, ``method``; the SMART audit adds ``worst_tasks`` and
``due_tasks``).  Each returns an :class:`Html` fragment rendered by a Jinja2 template with
autoescaping, so names and texts from the CRM always show as text.  Charts are PNG images
inlined in the fragment.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import pandas as pd

from . import drilldown, explain, i18n, plots, sections
from .config import load_settings
from .errors import ConfigError
from .kpis import manager_label, pick_items_pulling_down
from .kpis.fairness import LIMITS, funnel_limits, shrink_rates
from .kpis.registry import BLOCK_NAMES, BY_NAME
from .render import DEFINITIONS_PAGE
from .sections import SMALL_N
from .templating import render
from .weekdata import WeekData, load_week_data

def _number(value: Any) -> float | None:
    return None if i18n.is_missing(value) else float(value)


class Html:
    """An HTML fragment that Jupyter displays as such (``_repr_html_``)."""

    def __init__(self, markup: str, summary: str = ""):
        self.markup = markup
        self.summary = summary

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return f"<{self.summary or 'report section'}>"


def image_src(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def wilson(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion, in percent."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(centre - half, 0.0), 100 * min(centre + half, 1.0)


def tick_digits(value: float) -> int:
    """Decimals a tick value needs to be shown exactly (at most 2)."""
    return next((d for d in (0, 1) if abs(value * 10 ** d - round(value * 10 ** d)) < 1e-6), 2)

def check_block(block: str) -> str:
    """``block`` if it names a report block, else a ConfigError listing them."""
    if block not in BY_NAME:
        raise ConfigError(f"unknown report block {block!r}: use one of {', '.join(BLOCK_NAMES)}")
    return block


class BlockReport:
    """The sections of one KPI block's report, in one language."""

    def __init__(self, data: WeekData, block: str, lang: str):
        check_block(block)
        self.data, self.block, self.lang = data, block, i18n.check_lang(lang)
        self.record = BY_NAME[block]
        self.key, self.direction = self.record.primary, self.record.direction
        self.currency = data.account.get("currency") or "RUB"
        self.names = data.names(self.t("team"))
        self.kpis = data.result["kpis"][block]
        self._items: pd.DataFrame | None = None
        self.moves = (getattr(data, "moves", None) or {}).get(block)
        self._index()

    # -- helpers -----------------------------------------------------------------------------
    def t(self, string: str, **values: Any) -> str:
        """The catalogue string ``string`` in the report's language."""
        return i18n.text(string, self.lang, **values)

    def fmt(self, key: str, value: Any) -> str:
        return i18n.format_value(key, value, self.lang, self.currency)

    def name(self, manager: Any) -> str:
        if i18n.is_missing(manager):
            return "—"
        text = str(manager)
        try:
            text = str(int(float(text)))
        except ValueError:
            pass
        return self.names.get(text, text)

    def manager_ids(self) -> list[str]:
        return [str(int(u)) for u in self.data.managers["user_id"]]

    def figures(self, manager: str) -> dict[str, Any]:
        return self.kpis["team"] if manager == "team" else self.kpis["by_manager"].get(manager, {})

    def sample(self, key: str) -> tuple[str | None, bool]:
        """The key shown as ``n`` beside figure ``key``, and whether it is a proportion's denominator."""
        figure = next((f for f in self.record.figures if f.key == key), None)
        return (figure.sample, figure.proportion) if figure else (None, False)

    def target_row(self, manager: str, key: str | None = None) -> dict[str, Any]:
        """The target-table row of ``manager`` for ``key`` (default: the primary figure)."""
        return self._targets.get((key or self.key, manager), {})

    def series(self, manager: str, key: str | None = None) -> pd.Series:
        """The figure ``key`` of ``manager`` by week label, over the trend weeks."""
        rows = self._series.get((key or self.key, manager))
        if rows is None:
            return pd.Series(dtype="float64")
        return pd.Series(self._values[rows], index=self._week_labels[rows])

    def weeks(self) -> list[str]:
        return self._weeks

    def _index(self) -> None:
        """Split the block's trends and targets by (key, manager) once."""
        trends = self.data.trends
        keys = [f.key for f in self.record.targeted]  # the figures with a target: the only ones drawn over time
        trends = trends[(trends["block"] == self.block) & trends["key"].isin(keys)].sort_values("week_start")
        self._weeks = self.data.trends.drop_duplicates("week").sort_values("week_start")["week"].tolist()
        # each figure's rows per manager, by position: a series is made when asked for
        self._values, self._week_labels = trends["value"].to_numpy("float64"), trends["week"].to_numpy()
        self._series = {(key, manager_label(manager)): rows for (key, manager), rows in
                        trends.groupby(["key", "manager"], sort=False, dropna=False).indices.items()}
        targets = self.data.targets
        targets = targets[targets["block"] == self.block]
        self._targets = {(row["key"], manager_label(row["manager"])): row for row in targets.to_dict("records")}

    def status(self, row: dict[str, Any]) -> tuple[str, str]:
        met = row.get("met")
        if i18n.is_missing(row.get("value")):
            return "none", self.t("status.no_data")
        if i18n.is_missing(row.get("target")) or i18n.is_missing(met):
            return "none", self.t("status.no_target")
        return ("met", self.t("status.met")) if bool(met) else ("missed", self.t("status.missed"))

    def target_text(self, key: str, row: dict[str, Any]) -> str:
        if i18n.is_missing(row.get("target")):
            return self.t("status.no_target")
        sign = "≥" if row.get("direction", ">=") == ">=" else "≤"
        return f"{sign} {self.fmt(key, row['target'])}"

    def interval(self, key: str, figures: dict[str, Any], short: bool = False) -> str | None:
        sample, proportion = self.sample(key)
        n, value = figures.get(sample), figures.get(key)
        if not proportion or i18n.is_missing(n) or i18n.is_missing(value) or not 0 < n < SMALL_N:
            return None
        low, high = wilson(float(value) * float(n) / 100.0, float(n))
        return self.t("headline.ci_short" if short else "headline.ci", low=i18n.format_pct(low, self.lang), high=i18n.format_pct(high, self.lang))

    def chart(self, title: str, png: bytes | None, alt: str) -> Html:
        src = image_src(png) if png else None
        return Html(render("report_chart.html.j2", title=title, src=src, alt=alt, empty=self.t("chart.none")),
                    title)

    # -- sections ----------------------------------------------------------------------------
    def title(self) -> Html:
        """The page heading: block, account, week, as-of time and data freshness."""
        data = self.data
        return Html(render(
            "report_title.html.j2", title=i18n.block_title(self.block, self.lang),
            account=data.account.get("name") or data.account.get("subdomain") or "",
            week=i18n.format_week(data.week, self.lang),
            as_of=self.t("report.as_of", at=i18n.format_datetime(data.as_of, self.lang, data.week.tz)),
            synced=self.t("report.synced", at=i18n.format_datetime(data.last_sync_at, self.lang, data.week.tz)),
            back=self.t("report.back"), labels={"account": self.t("report.account")}), "title")

    def headline(self) -> Html:
        """The team's primary figure against its target and the previous week, with n."""
        items = []
        keys = [f.key for f in self.record.targeted if f.key in self.kpis["team"]]
        for key in keys:
            figures, row = self.kpis["team"], self.target_row("team", key)
            value = figures.get(key)
            series = self.series("team", key)
            prev_label = self.data.week.shift(-1).label
            prev = series.get(prev_label, float("nan"))
            direction = row.get("direction", self.direction)
            if i18n.is_missing(prev) or i18n.is_missing(value):
                delta, delta_class = self.t("headline.no_prev"), "none"
            else:
                arrow, delta_class = explain.change_arrow(key, value, prev, direction)
                change = explain.format_change(key, float(value) - float(prev), self.lang, self.currency)
                delta = f"{arrow} " + self.t("headline.vs_prev", delta=change, prev=self.fmt(key, prev))
            status_class, status_text = self.status(row)
            sample = self.sample(key)[0]
            items.append({
                "label": i18n.label(key, self.lang), "value": self.fmt(key, value),
                "n": self.t("headline.n", n=i18n.format_number(figures.get(sample), self.lang)) if sample else "",
                "target": self.target_text(key, row), "status_class": status_class, "status": status_text,
                "median": self.t("headline.median12") if row.get("target_source") == "median12" else "",
                "delta": delta, "delta_class": delta_class, "interval": self.interval(key, figures),
                "final": self.last_final() if key == "fcr_pct" and figures.get("fcr_final") is False else None,
            })
        provisional = None
        if self.block == "first_call" and self.kpis["team"].get("fcr_final") is False:
            provisional = self.t("headline.provisional", days=self.data.settings.kpi.fcr_window_days)
        heading = self.t("headline.team", week=self.data.week.label)
        weeks = self.weeks()
        label = i18n.label(self.key, self.lang)
        title = self.t("chart.team_trend", label=label)
        png = plots.plot_team_trend(self.week_ticks(weeks), self.series("team").reindex(weeks).tolist(),
                                    _number(self.target_row("team").get("target")), title=title,
                                    target_label=self.t("chart.target"),
                                    formatter=self.axis_formatter(self.key), empty=self.t("no_data")) if weeks else None
        chart = {"src": image_src(png), "alt": title, "block": self.block} if png else None
        return Html(render("report_headline.html.j2", heading=heading, items=items, provisional=provisional,
                           chart=chart, story=self.story()), "headline")

    def story(self) -> str | None:
        """The one sentence on why the team figure moved since last week (None without drivers)."""
        if self.moves is None:
            return None
        return explain.describe_move(self.moves, self.block, self.names, self.lang, self.currency)

    def last_final(self) -> str:
        """The team's latest final FCR before this week, shown beside a provisional one."""
        trends = self.data.trends
        team = trends[(trends["block"] == "first_call") & trends["manager"].isna().to_numpy()]  # NA: the team
        final = team.loc[(team["key"] == "fcr_final") & (team["value"] == 1) & (team["week"] < self.data.week.label),
                         "week"]
        if not len(final):
            return self.t("headline.no_final")
        week = max(final)
        value = team.loc[(team["key"] == "fcr_pct") & (team["week"] == week), "value"]
        return self.t("headline.last_final", week=week, value=self.fmt("fcr_pct", value.iloc[0] if len(value) else None))

    def manager_table(self) -> Html:
        """Per manager: value, n, target status and the change against last week; the team last.

        A proportion also gets its empirical-Bayes estimate beside the raw rate and a funnel
        plot below the table (see :mod:`kpi_lib.kpis.fairness`).
        """
        sample, proportion = self.sample(self.key)
        rows = []
        inactive = dict(zip((str(int(u)) for u in self.data.managers["user_id"]),
                            ~self.data.managers["active"].astype(bool)))
        listed = {str(m) for m in self.items()["manager"].unique()}
        people = self.manager_ids()
        adjusted = self.adjusted_rates(people) if proportion else {}
        before = self.data.week.shift(-1).label
        for manager in people + ["team"]:
            figures, row = self.figures(manager), self.target_row(manager)
            status_class, status_text = self.status(row)
            value, prev = figures.get(self.key), self.series(manager).get(before, float("nan"))
            arrow, arrow_class = explain.change_arrow(self.key, value, prev, self.direction)
            change = "" if arrow == "·" else explain.format_change(self.key, float(value) - float(prev), self.lang,
                                                                   self.currency)
            rows.append({
                "name": self.name(manager), "team": manager == "team", "inactive": inactive.get(manager, False),
                "anchor": ("items" if listed else None) if manager == "team" else (
                    f"items-{manager}" if manager in listed else None),
                "value": self.fmt(self.key, value), "interval": self.interval(self.key, figures, short=True),
                "adjusted": self.fmt(self.key, adjusted.get(manager)) if manager in adjusted else "",
                "n": i18n.format_number(figures.get(sample), self.lang), "target": self.target_text(self.key, row),
                "status": status_text, "status_class": status_class, "arrow": arrow, "arrow_class": arrow_class,
                "change": change,
            })
        columns = {k: self.t(f"col.{k}") for k in ("manager", "value", "n", "target", "status", "change", "adjusted")}
        notes = [self.t("managers.arrow_rule")]
        funnel = None
        if proportion:
            notes.append(self.t("managers.adjusted_note", team=self.fmt(self.key, self.kpis["team"].get(self.key))))
            funnel = self.funnel_chart(people)
        return Html(render("report_managers.html.j2", heading=self.t("sec.managers"), label=i18n.label(self.key, self.lang),
                           columns=columns, rows=rows, inactive=self.t("inactive"), items=self.t("sec.items"),
                           proportion=proportion, notes=notes, funnel=funnel), "manager table")

    def _cases(self, people: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Successes and cases of the proportion per manager (0 where there is no figure)."""
        sample = self.sample(self.key)[0]
        n = np.array([float(self.figures(m).get(sample) or 0) for m in people])
        rate = np.array([_number(self.figures(m).get(self.key)) or 0.0 for m in people])
        return rate / 100 * n, n

    def adjusted_rates(self, people: list[str]) -> dict[str, float | None]:
        """Each manager's empirical-Bayes rate in percent (None without cases)."""
        x, n = self._cases(people)
        shrunk = shrink_rates(x, n)
        return {m: None if np.isnan(v) else 100 * float(v) for m, v in zip(people, shrunk)}

    def funnel_chart(self, people: list[str]) -> dict[str, str] | None:
        """The funnel plot of a proportion: rate against n, 95 % and 99.8 % limits around the team's rate."""
        x, n = self._cases(people)
        team = _number(self.kpis["team"].get(self.key))
        if team is None or not (n > 0).any():
            return None
        label = i18n.label(self.key, self.lang)
        title = self.t("chart.funnel_title", label=label)
        keep = n > 0
        ns = np.linspace(max(1.0, 0.5 * float(n[keep].min())), max(float(n.max()) * 1.15, 5.0), 80)
        limits = {self.t("chart.funnel_limit", level=i18n.format_pct(float(name.rstrip("%")), self.lang, 1 if "." in name else 0)):
                  tuple(100 * v for v in funnel_limits(team / 100, ns, z)) for name, z in LIMITS.items()}
        png = plots.plot_funnel(ns, limits, team, n[keep], 100 * x[keep] / n[keep],
                                [self.name(m) for m, k in zip(people, keep) if k], title=title,
                                xlabel=f"n ({i18n.text(f'move.noun.{self.block}', self.lang)})",
                                team_label=self.t("chart.funnel_team", value=self.fmt(self.key, team)),
                                formatter=self.axis_formatter(self.key))
        return {"src": image_src(png), "alt": title}

    def trend_chart(self) -> Html:
        """Twelve weeks of the primary figure, one panel per manager and one for the team, target dashed."""
        weeks = self.weeks()
        series, targets = {}, {}
        for manager in self.manager_ids():
            series[self.name(manager)] = self.series(manager).reindex(weeks).tolist()
            targets[self.name(manager)] = _number(self.target_row(manager).get("target"))
        label = i18n.label(self.key, self.lang)
        png = plots.plot_trend_grid(self.week_ticks(weeks), series, targets, target_label=self.t("chart.target"),
                                    formatter=self.axis_formatter(self.key),
                                    empty=self.t("no_data")) if weeks and series else None
        return self.chart(f"{self.t('sec.trend')}: {label}", png, self.t("chart.trend_title", label=label))

    def axis_formatter(self, key: str):
        """Tick labels with as many decimals as the tick needs (7.5 % stays 7.5 %), in the page's locale."""
        kind = i18n.KINDS.get(key, "count")
        if kind == "pct":
            return lambda v: i18n.format_pct(v, self.lang, tick_digits(v))
        if kind == "money":
            return lambda v: i18n.format_number(v, self.lang, 0)
        return lambda v: i18n.format_number(v, self.lang, tick_digits(v))

    def week_ticks(self, weeks: list[str]) -> list[str]:
        """``W37`` / ``нед. 37`` for the x axis of a trend."""
        return [self.t("chart.week_tick", n=int(w.split("-W")[-1])) for w in weeks]

    def distribution_chart(self) -> Html:
        """The distribution behind the figure (scores, signals, speed to lead, deal sizes, calls, criteria)."""
        title, png = sections.distribution(self)
        return self.chart(f"{self.t('sec.distribution')}: {title}", png, title)

    def supporting(self) -> Html:
        """Every figure of the block (kpi-definitions.md), one row per figure, one column per manager."""
        managers = self.manager_ids() + ["team"]
        keys = list(self.kpis["team"].keys())
        rows = [{"label": i18n.label(key, self.lang),
                 "cells": [self.fmt(key, self.figures(m).get(key)) for m in managers]} for key in keys]
        return Html(render("report_supporting.html.j2", heading=self.t("sec.supporting"), figure=self.t("col.figure"),
                           managers=[self.name(m) for m in managers], rows=rows), "supporting figures")

    def data_quality(self) -> Html:
        """Data-quality notes: the store's gaps for this block, small samples and missing plans."""
        return Html(render("report_quality.html.j2", heading=self.t("sec.quality"), notes=sections.quality_notes(self),
                           empty=self.t("dq.none")), "data quality")

    def method(self) -> Html:
        """How the figure is computed, in plain words, with this run's settings filled in."""
        return Html(render("report_method.html.j2", heading=self.t("sec.method"), text=sections.method_text(self),
                           definitions=self.t("method.definitions"), href=f"../{DEFINITIONS_PAGE}"), "method")

    def items(self) -> pd.DataFrame:
        """This block's items pulling a figure down, from the week's detail rows (see
        :func:`kpi_lib.kpis.pick_items_pulling_down`), for the report's managers only."""
        if self._items is None:
            items = pick_items_pulling_down(self.data.details)
            ids = [int(m) for m in self.manager_ids()]
            self._items = items.loc[(items["block"] == self.block).to_numpy() & items["manager"].isin(ids).to_numpy()]
        return self._items

    def items_behind(self, limit: int = drilldown.LIMIT) -> Html:
        """Per manager, a collapsible list of the items pulling the figure down, by reason, linked to amoCRM."""
        items, managers = self.items(), []
        for m in self.manager_ids():
            mine = items.loc[items["manager"].to_numpy() == int(m)]
            if not len(mine):
                continue
            groups = drilldown.group_items(mine, self.lang, self.data.settings.kpi.fcr_window_days, self.currency,
                                           limit)
            for g in groups:
                block = "speed_to_lead" if g["reason"] in ("uncalled", "slow_call") else (
                    "average_check" if g["reason"] == "unpriced_win" else self.block)
                g["more_text"] = self.t("items.more", n=g["more"], week=self.data.week.label, block=block, manager=m)
            managers.append({"id": m, "name": self.name(m), "count": self.t("items.count", n=len(mine)),
                             "groups": groups})
        return Html(render("report_items.html.j2", heading=self.t("sec.items"), intro=self.t("items.intro"),
                           managers=managers, empty=self.t("items.none")), "items behind the figure")

    def worst_tasks(self, limit: int = 15) -> Html:
        """The SMART audit's lowest-scoring tasks, with links into amoCRM."""
        columns = {k: self.t(f"col.{k}") for k in ("manager", "task", "due", "score", "link")}
        return Html(render("report_tasks.html.j2", heading=self.t("sec.worst_tasks"), columns=columns,
                           rows=sections.worst_task_rows(self, limit), open=self.t("smart.open_lead"),
                           overdue=self.t("smart.overdue"), empty=self.t("smart.no_tasks"),
                           legend=f"✓ {self.t('smart.pass')} · ✗ {self.t('smart.fail')} · – {self.t('smart.na')}"),
                    "worst tasks")

    def due_tasks(self) -> Html:
        """Each manager's open tasks for today and tomorrow (current week only)."""
        columns = {k: self.t(f"col.{k}") for k in ("day", "due", "task", "link")}
        return Html(render("report_due.html.j2", heading=self.t("sec.due_tasks"), columns=columns,
                           groups=sections.due_task_groups(self), open=self.t("smart.open_lead"),
                           only_current=self.t("smart.due_only_current"), empty=self.t("smart.no_due")), "due tasks")


def open_report(block: str, week: str = "last", as_of: str | None = None, lang: str = "en",
                account: str | None = None, data_dir: str | None = None, kpi: dict | None = None,
                email: dict | None = None) -> BlockReport:
    """Open one block's report for the notebook parameters (``email`` is accepted and unused).

    The week's figures come from the weekly run's cache in the working folder when it
    matches these parameters, else they are computed from the store.
    """
    check_block(block)
    settings = load_settings(overrides={"week": week, "as_of": as_of, "lang": lang, "account": account,
                                        "data_dir": data_dir, "kpi": kpi or {}})
    return BlockReport(load_week_data(settings, blocks=(block,)), block, lang)

