"""The items pulling a figure down, in words: per manager, grouped by reason, linked to amoCRM.

:func:`group_items` turns one manager's rows of
:func:`kpi_lib.kpis.pick_items_pulling_down` into groups a page or a card shows::

    [{"reason": "callback", "title": "The customer had to call back", "n": 3,
      "entries": [{"label": "#31459539 Заявка с сайта", "text": "the customer called back on Tue 24 Nov at 15:20",
                 "href": "https://….amocrm.ru/leads/detail/31459539"}, …],
      "more": 0}, …]

Every sentence exists in English and Russian (``locale/strings.yaml``, keys ``items.*``);
times are shown in the report timezone the rows carry.  Nothing here builds HTML: the values
reach a page through an autoescaping template.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from . import i18n

#: At most this many items per group on a page; the rest are counted ("and 12 more").
LIMIT = 30
_TEXT_MAX = 120


def format_duration(minutes: Any, lang: str) -> str:
    """``12 min``, ``3 h 5 min``, ``2 d 4 h`` (``12 мин``, ``3 ч 5 мин``, ``2 дн 4 ч``)."""
    if i18n.is_missing(minutes):
        return i18n.text("no_data", lang)
    total = max(int(round(float(minutes))), 0)
    days, rest = divmod(total, 24 * 60)
    hours, mins = divmod(rest, 60)
    unit = {k: i18n.text(f"unit_{k}", lang) for k in ("d", "h", "min")}
    if days:
        return f"{days}\u00a0{unit['d']}" + (f" {hours}\u00a0{unit['h']}" if hours else "")
    if hours:
        return f"{hours}\u00a0{unit['h']}" + (f" {mins}\u00a0{unit['min']}" if mins else "")
    return f"{mins}\u00a0{unit['min']}"


def format_when(moment: Any, lang: str) -> str:
    """``Tue 24 Nov at 15:20`` / ``вт 24 ноября в 15:20`` (the moment's own timezone)."""
    if i18n.is_missing(moment):
        return "—"
    moment = pd.Timestamp(moment)
    return i18n.text("items.when", lang, day=i18n.format_day(moment, lang), time=f"{moment:%H:%M}")


def _short(text: Any, lang: str) -> str:
    if i18n.is_missing(text) or not str(text).strip():
        return i18n.text("smart.no_text", lang)
    text = " ".join(str(text).split())
    return text if len(text) <= _TEXT_MAX else text[:_TEXT_MAX - 1] + "…"


def describe_item(item: dict[str, Any], lang: str, window_days: int, currency: str | None = "RUB") -> str:
    """One item's reason in words, e.g. "the customer called back on Tue 24 Nov at 15:20"."""
    reason = item["reason"]
    when = format_when(item.get("at"), lang)
    values: dict[str, Any] = {"when": when, "days": window_days}
    if reason in ("uncalled", "slow_call", "E3"):
        values["duration"] = format_duration(item.get("minutes"), lang)
    if reason in ("E1", "E2", "E3"):
        supervisor = item.get("supervisor_name")
        values["supervisor"] = str(supervisor) if not i18n.is_missing(supervisor) else f"#{item.get('supervisor')}"
        values["text"] = _short(item.get("text"), lang)
    if reason == "low_csat":
        values["score"] = i18n.format_number(item.get("score"), lang)
    if reason in ("lost", "low_csat"):
        values["price"] = i18n.format_money(item.get("price"), lang, currency)
    if reason in ("not_specific", "no_result", "not_achievable", "not_relevant", "not_time_bound"):
        values["text"] = _short(item.get("text"), lang)
        overdue = item.get("overdue")
        key = "items.task_overdue" if reason == "not_time_bound" and not i18n.is_missing(overdue) and overdue \
            else "items.task"
        return i18n.text(key, lang, **values)
    return i18n.text(f"items.{reason}", lang, **values)


def _label(item: dict[str, Any], lang: str) -> str:
    lead = item.get("lead_id")
    name = item.get("name")
    name = "" if i18n.is_missing(name) else " ".join(str(name).split())
    if i18n.is_missing(lead):
        kind, entity = item.get("entity_type"), item.get("entity_id")
        if kind in ("contacts", "companies") and not i18n.is_missing(entity):
            return i18n.text(f"items.{kind}", lang, id=int(entity))
        return name or i18n.text("items.no_deal", lang)
    return f"#{int(lead)} {name}".strip()


def group_items(items: pd.DataFrame, lang: str, window_days: int = 7, currency: str | None = "RUB",
                limit: int | None = LIMIT) -> list[dict[str, Any]]:
    """One manager's items grouped by reason, in the rows' order, with titles and sentences.

    Parameters
    ----------
    items : DataFrame
        Rows of :func:`kpi_lib.kpis.pick_items_pulling_down` (one manager's, one block's or all).
    window_days : int
        The FCR window (``kpi.fcr_window_days``), named in the ``no_advance`` sentences.
    limit : int, optional
        At most this many items per group (None: all); ``more`` counts the rest.
    """
    i18n.check_lang(lang)
    groups: list[dict[str, Any]] = []
    for (reason, _block), rows in items.groupby(["reason", "block"], sort=False):
        records = rows.to_dict("records")
        shown = records if limit is None else records[:limit]
        groups.append({
            "reason": reason, "title": i18n.text(f"items.title.{reason}", lang, days=window_days), "n": len(records),
            "entries": [{"label": _label(r, lang), "text": describe_item(r, lang, window_days, currency),
                       "href": None if i18n.is_missing(r.get("url")) else str(r["url"])} for r in shown],
            "more": len(records) - len(shown),
        })
    return groups
