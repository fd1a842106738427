"""One manager's card: their week in six figures, their 12-week lines and their actions.

:func:`open_card` (called by the notebook ``07_manager_card``) returns a :class:`ManagerCard` whose sections are ``title``,
``figures``, ``trends`` and ``actions``.  :meth:`ManagerCard.card_data` is the same card as
plain JSON-able data, written beside the page by the weekly run and read by the managers'
email, which formats it again in each manager's own language (:func:`figure_rows`,
:func:`action_groups`).

A card shows one manager's own figures and items and the team's figures: never another
manager's name, figures or deals.  The other managers appear only as a count in the rank
("2nd of 7").
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from . import i18n, plots
from .config import load_settings
from .errors import ConfigError
from .kpis.registry import BLOCKS
from .sections import crm_link
from .templating import render
from .views import Html, image_src
from .weekdata import WeekData, load_week_data

CRITERIA = ("S", "M", "A", "R", "T")
#: At most this many items per action list (the card says how many more there are).
MAX_ITEMS = 15


def _plain(value: Any) -> Any:
    """A JSON-able scalar: None for missing values, Python numbers and text otherwise."""
    if i18n.is_missing(value):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _text(value: Any) -> str | None:
    return None if i18n.is_missing(value) or not str(value).strip() else str(value)


def carded_managers(data: WeekData) -> list[str]:
    """The managers who get a card: every active one, and an inactive one with items that week."""
    out = []
    for uid, active in zip(data.managers["user_id"], data.managers["active"]):
        manager = str(int(uid))
        if bool(active) or _has_items(data, manager):
            out.append(manager)
    return out


def _has_items(data: WeekData, manager: str) -> bool:
    """True when any count of the manager's week (deals, calls, tasks, days) is above zero."""
    for block in data.result["kpis"].values():
        figures = block["by_manager"].get(manager, {})
        if any(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in figures.values()):
            return True
    return False


def ordinal(place: int, lang: str) -> str:
    """``1st``, ``2nd``, ``11th``, ``23rd`` in English; ``2-е`` in Russian."""
    if lang == "ru":
        return f"{place}-е"
    suffix = "th" if 10 <= place % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(place % 10, "th")
    return f"{place}{suffix}"


class ManagerCard:
    """The card of one manager for one week, in one language."""

    def __init__(self, data: WeekData, manager: Any, lang: str):
        self.data, self.lang = data, i18n.check_lang(lang)
        ids = [str(int(u)) for u in data.managers["user_id"]]
        try:
            self.manager = str(int(manager))
        except (TypeError, ValueError):
            self.manager = str(manager)
        if self.manager not in ids:
            raise ConfigError(f"manager {manager!r} is not one of this account's managers: use a user id from "
                              f"{', '.join(ids) or 'none'} (the manager parameter of 07_manager_card)")
        row = data.managers.loc[data.managers["user_id"].astype("int64") == int(self.manager)].iloc[0]
        self.name, self.active = str(row["name"]), bool(row["active"])
        self.currency = data.account.get("currency") or "RUB"

    def t(self, key: str, **values: Any) -> str:
        return i18n.text(key, self.lang, **values)

    # -- the card as data ------------------------------------------------------------------------
    def _target(self, block: str, key: str, manager: str) -> dict[str, Any]:
        table = self.data.targets
        rows = table[(table["block"] == block) & (table["key"] == key) & (table["manager"].astype(str) == manager)]
        return rows.iloc[0].to_dict() if len(rows) else {}

    def _series(self, block: str, key: str, manager: str) -> pd.Series:
        trends = self.data.trends
        rows = trends[(trends["block"] == block) & (trends["key"] == key) & (trends["manager"].astype(str) == manager)]
        return pd.Series(rows["value"].to_numpy("float64"), index=rows["week"].to_numpy())

    def _rank(self, block: str, key: str, direction: str) -> tuple[int | None, int]:
        """The manager's place among the managers with a figure (ties share the better place)."""
        by_manager = self.data.result["kpis"][block]["by_manager"]
        values = {m: v.get(key) for m, v in by_manager.items() if not i18n.is_missing(v.get(key))}
        mine = values.get(self.manager)
        if mine is None:
            return None, len(values)
        better = sum(1 for v in values.values() if (v > mine if direction == ">=" else v < mine))
        return better + 1, len(values)

    def figure_data(self) -> list[dict[str, Any]]:
        """The six primary figures: value, target, met, last week, rank and the team's figure."""
        out = []
        previous = self.data.week.shift(-1).label
        for record in BLOCKS:
            block, key, direction = record.name, record.primary, record.direction
            figures = self.data.result["kpis"][block]
            value = figures["by_manager"].get(self.manager, {}).get(key)
            target = self._target(block, key, self.manager)
            before = self._series(block, key, self.manager).get(previous)
            place, ranked = self._rank(block, key, direction)
            out.append({"block": block, "key": key, "direction": direction, "value": _plain(value),
                        "target": _plain(target.get("target")), "target_source": target.get("target_source"),
                        "met": _plain(target.get("met")), "previous": _plain(before),
                        "change": None if value is None or i18n.is_missing(before) else float(value) - float(before),
                        "rank": place, "ranked": ranked, "team": _plain(figures["team"].get(key))})
        return out

    def trend_data(self) -> dict[str, Any]:
        """The manager's twelve weeks of each primary figure, with its target."""
        weeks = self.data.trends.drop_duplicates("week").sort_values("week_start")["week"].tolist()
        series = {}
        for record in BLOCKS:
            series[record.primary] = [_plain(v) for v in
                                      self._series(record.name, record.primary, self.manager).reindex(weeks).tolist()]
        return {"weeks": weeks, "series": series}

    def _rows(self, block: str) -> pd.DataFrame:
        frame = self.data.details.get(block)
        if frame is None or not len(frame):
            return pd.DataFrame()
        return frame.loc[(pd.to_numeric(frame["manager"], errors="coerce") == int(self.manager)).to_numpy()]

    def action_data(self) -> dict[str, Any]:
        """The manager's items to act on, each with its link into amoCRM (see the module docstring)."""
        calls = self._rows("first_call")
        unresolved = []
        for r in calls.loc[calls["resolved"].eq(False).to_numpy()].to_dict("records") if len(calls) else []:
            reasons = r.get("reasons")
            unresolved.append({"lead_id": int(r["lead_id"]), "name": _text(r.get("name")), "at": _plain(r.get("fc_at")),
                               "reasons": list(reasons) if isinstance(reasons, (list, tuple)) else [],
                               "url": r.get("url") or crm_link(self, "leads", r["lead_id"])})
        new = self._rows("speed_to_lead")
        uncalled = [{"lead_id": int(r["lead_id"]), "name": _text(r.get("name")), "at": _plain(r.get("created_at")),
                     "url": r.get("url") or crm_link(self, "leads", r["lead_id"])}
                    for r in (new.loc[new["uncalled"].astype(bool).to_numpy()].to_dict("records") if len(new) else [])]
        tasks = self._rows("smart_audit")
        rewrite, overdue = [], []
        if len(tasks):
            tasks = tasks.sort_values(["score", "complete_till"])
            for r in tasks.to_dict("records"):
                marks = {c: _plain(r.get(c)) for c in CRITERIA}
                item = {"task_id": int(r["task_id"]), "text": _text(r.get("text")), "due": _plain(r.get("complete_till")),
                        "overdue": bool(r.get("overdue")), "marks": marks, "name": _text(r.get("name")),
                        "url": _text(r.get("url")) or crm_link(self, r.get("entity_type"), r.get("entity_id"))}
                if any(marks[c] is False for c in "SMAR"):
                    rewrite.append(dict(item, fix=[c for c in CRITERIA if marks[c] is False]))
                elif item["overdue"]:
                    overdue.append(item)
        due = None
        if self.data.due is not None:
            rows = self.data.due
            rows = rows.loc[(pd.to_numeric(rows["manager"], errors="coerce") == int(self.manager)).to_numpy()] \
                if len(rows) else rows
            due = [{"task_id": int(r["task_id"]), "text": _text(r.get("text")), "due": _plain(r.get("due")),
                    "day": r["day"], "url": crm_link(self, r.get("entity_type"), r.get("entity_id"))}
                   for r in rows.sort_values("due").to_dict("records")]
        return {"unresolved_calls": unresolved, "uncalled_leads": uncalled, "tasks_to_rewrite": rewrite,
                "overdue_tasks": overdue, "due_tasks": due}

    def card_data(self) -> dict[str, Any]:
        """The whole card as JSON-able data (what the managers' email is built from)."""
        data = self.data
        return {
            "manager": {"user_id": int(self.manager), "name": self.name, "active": self.active},
            "week": data.week.label, "week_start": data.week.start.isoformat(), "week_end": data.week.end.isoformat(),
            "timezone": data.week.tz.key, "as_of": data.as_of.isoformat(timespec="seconds"),
            "last_sync_at": data.last_sync_at.isoformat(timespec="seconds") if data.last_sync_at else None,
            "current": data.current, "currency": self.currency,
            "account": {"name": data.account.get("name"), "subdomain": data.account.get("subdomain")},
            "figures": self.figure_data(), "trends": self.trend_data(), "actions": self.action_data(),
        }

    # -- sections --------------------------------------------------------------------------------
    def title(self):
        """The heading: the manager, the week, the account and the data's freshness."""
        data, tz = self.data, self.data.week.tz
        return Html(render(
            "card_title.html.j2", title=self.t("card.title", name=self.name),
            inactive=None if self.active else self.t("inactive"),
            account=data.account.get("name") or data.account.get("subdomain") or "",
            week=i18n.format_week(data.week, self.lang), labels={"account": self.t("report.account")},
            as_of=self.t("report.as_of", at=i18n.format_datetime(data.as_of, self.lang, tz)),
            synced=self.t("report.synced", at=i18n.format_datetime(data.last_sync_at, self.lang, tz)),
            lead=self.t("card.lead")), "title")

    def figures(self):
        """The six figures: value, target and status, change against last week, rank and the team."""
        columns = {k: self.t(f"card.col.{k}") for k in ("figure", "value", "target", "change", "rank", "team")}
        return Html(render("card_figures.html.j2", heading=self.t("card.figures"), columns=columns,
                           rows=figure_rows(self.card_data_cached()["figures"], self.lang, self.currency)),
                    "figures")

    def trends(self):
        """Twelve weeks of each of the manager's six figures, the target dashed."""
        png = trend_png(self.card_data_cached(), self.lang)
        title = self.t("card.trends")
        return Html(render("report_chart.html.j2", title=title, src=image_src(png) if png else None, alt=title,
                           empty=self.t("chart.none")), "trends")

    def actions(self):
        """The manager's list for the coming week, every item linked to amoCRM."""
        groups = action_groups(self.card_data_cached(), self.lang)
        return Html(render("card_actions.html.j2", heading=self.t("card.actions"), groups=groups,
                           open=self.t("smart.open_lead"), nothing=self.t("card.none")), "actions")

    def card_data_cached(self) -> dict[str, Any]:
        if not hasattr(self, "_card"):
            self._card = self.card_data()
        return self._card


# --- formatting (shared by the page and the email, from the data alone) -------------------------

def _change_text(key: str, change: float | None, lang: str, currency: str) -> str:
    if change is None:
        return i18n.text("card.no_change", lang)
    sign = "+" if change > 0 else ""
    if i18n.KINDS.get(key) == "pct":
        return f"{sign}{i18n.format_number(change, lang, 1)}{i18n.NBSP}{i18n.text('unit_pp', lang)}"
    return sign + i18n.format_value(key, change, lang, currency)


def figure_rows(figures: list[dict[str, Any]], lang: str, currency: str = "RUB") -> list[dict[str, Any]]:
    """Display rows of :meth:`ManagerCard.figure_data` in ``lang``."""
    rows = []
    for f in figures:
        key, value = f["key"], f["value"]
        if value is None:
            status, status_text = "none", i18n.text("status.no_data", lang)
        elif f["target"] is None or f["met"] is None:
            status, status_text = "none", i18n.text("status.no_target", lang)
        else:
            status = "met" if f["met"] else "missed"
            status_text = i18n.text(f"status.{status}", lang)
        sign = "≥" if f["direction"] == ">=" else "≤"
        target = i18n.text("status.no_target", lang) if f["target"] is None else \
            f"{sign} {i18n.format_value(key, f['target'], lang, currency)}"
        if f.get("target_source") == "median12" and f["target"] is not None:
            target += f" ({i18n.text('card.median12', lang)})"
        change = f["change"]
        better = None if not change else (change > 0) == (f["direction"] == ">=")
        rows.append({
            "label": i18n.label(key, lang), "value": i18n.format_value(key, value, lang, currency),
            "target": target, "status": status, "status_text": status_text,
            "change": _change_text(key, change, lang, currency),
            "change_class": "flat" if better is None else ("good" if better else "bad"),
            "rank": i18n.text("card.rank", lang, place=ordinal(f["rank"], lang), n=f["ranked"]) if f["rank"]
            else "—",
            "team": i18n.format_value(key, f["team"], lang, currency),
        })
    return rows


def _when(value: str | None, lang: str) -> str:
    if not value:
        return "—"
    moment = pd.Timestamp(value)
    return f"{i18n.format_day(moment, lang)}, {moment:%H:%M}"


def action_groups(card: dict[str, Any], lang: str) -> list[dict[str, Any]]:
    """The card's action lists as display groups: ``{"key", "heading", "hint", "rows", "more"}``.

    Each item is ``{"text", "detail", "marks", "href"}``; the due tasks appear only when the
    card is for the current week.
    """
    t = lambda key, **kw: i18n.text(key, lang, **kw)  # noqa: E731
    actions, groups = card["actions"], []

    def task_text(item: dict[str, Any]) -> str:
        text = item.get("text") or t("smart.no_text")
        return text if len(text) <= 140 else text[:139] + "…"

    def add(key: str, items: list[dict[str, Any]]) -> None:
        groups.append({"key": key, "heading": t(f"card.{key}"), "hint": t(f"card.{key}.hint"),
                       "rows": items[:MAX_ITEMS], "more": t("dq.more", n=len(items) - MAX_ITEMS)
                       if len(items) > MAX_ITEMS else None})

    def deal(item: dict[str, Any]) -> str:
        number = t("card.lead_no", id=item["lead_id"])
        return f"{item['name']} ({number})" if item.get("name") else number

    add("unresolved_calls", [{
        "text": deal(i),
        "detail": "; ".join([_when(i.get("at"), lang)] + [t(f"card.reason.{r}") for r in i.get("reasons") or []]),
        "marks": None, "href": i.get("url")} for i in actions["unresolved_calls"]])
    add("uncalled_leads", [{"text": deal(i), "detail": t("card.created_at", at=_when(i.get("at"), lang)),
                            "marks": None, "href": i.get("url")} for i in actions["uncalled_leads"]])
    add("tasks_to_rewrite", [{
        "text": task_text(i),
        "detail": "; ".join(t(f"card.fix.{c}") for c in i["fix"])
        + (f" ({t('smart.overdue')})" if i.get("overdue") else ""),
        "marks": " ".join(f"{c}{'✓' if i['marks'][c] else ('✗' if i['marks'][c] is False else '–')}"
                          for c in CRITERIA),
        "href": i.get("url")} for i in actions["tasks_to_rewrite"]])
    add("overdue_tasks", [{"text": task_text(i), "detail": t("card.due_at", at=_when(i.get("due"), lang)),
                           "marks": None, "href": i.get("url")} for i in actions["overdue_tasks"]])
    if actions.get("due_tasks") is not None:
        add("due_tasks", [{"text": task_text(i), "detail": f"{t('smart.' + i['day'])}, {_when(i.get('due'), lang)}",
                           "marks": None, "href": i.get("url")} for i in actions["due_tasks"]])
    return groups


def trend_png(card: dict[str, Any], lang: str) -> bytes | None:
    """One small panel per figure: the manager's twelve weeks and the target, dashed."""
    weeks = card["trends"]["weeks"]
    if not weeks:
        return None
    series, targets = {}, {}
    for f in card["figures"]:
        label = i18n.label(f["key"], lang)
        series[label] = [float("nan") if v is None else v for v in card["trends"]["series"].get(f["key"], [])]
        targets[label] = f["target"]
    fmt = (lambda v: i18n.format_number(v, lang, 0 if abs(v) >= 10 or float(v).is_integer() else 1))
    return plots.plot_trend_grid(weeks, series, targets, target_label=i18n.text("chart.target", lang),
                                 formatter=fmt, empty=i18n.text("no_data", lang))


def open_card(manager: Any = None, week: str = "last", as_of: str | None = None, lang: str = "en",
              account: str | None = None, data_dir: str | None = None, kpi: dict | None = None,
              email: dict | None = None) -> ManagerCard:
    """Open one manager's card for the notebook parameters.

    ``manager`` is the amoCRM user id (None: the first manager with a card); ``email`` is
    accepted and unused.  The week's figures come from the weekly run's snapshot in the
    working folder when it matches these parameters, else they are computed from the store.
    """
    settings = load_settings(overrides={"week": week, "as_of": as_of, "lang": lang, "account": account,
                                        "data_dir": data_dir, "kpi": kpi or {}})
    data = load_week_data(settings)
    if manager is None:
        chosen = carded_managers(data)
        if not chosen:
            raise ConfigError("no manager of this account has a card this week: pass manager=<amoCRM user id>")
        manager = chosen[0]
    return ManagerCard(data, manager, lang)
