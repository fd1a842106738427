"""Report language: the English and Russian strings, and locale formats for numbers and dates.

Every label, heading and sentence a report shows comes from ``locale/strings.yaml`` (one
entry per key with an ``en`` and a ``ru`` text; a test checks both are there).  Numbers follow
the locale: English ``1,234,567.5``, Russian ``1 234 567,5`` with a no-break space; money
is the number followed by the currency (``1,234,567 RUB`` in English, ``1 234 567 ₽`` in
Russian); dates are shown in the report timezone.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .config import LANGUAGES
from .errors import ConfigError
from .kpis.registry import KINDS  # how each KPI key is displayed

NBSP = "\u00a0"
_STRINGS = Path(__file__).with_name("locale") / "strings.yaml"
_MONTHS = {
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    "ru": ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября",
           "октября", "ноября", "декабря"),
}
_SYMBOLS = {"RUB": "₽", "USD": "$", "EUR": "€", "KZT": "₸", "UAH": "₴", "GBP": "£", "BYN": "Br"}

@lru_cache(maxsize=1)
def _catalogue() -> dict[str, dict[str, str]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with _STRINGS.open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=loader)


def check_lang(lang: str) -> str:
    """Return ``lang`` if supported, else raise a ConfigError naming the choices."""
    if lang not in LANGUAGES:
        raise ConfigError(f"lang {lang!r} is not supported: use 'en' or 'ru'")
    return lang


def text(key: str, lang: str, **values: Any) -> str:
    """The string ``key`` in ``lang`` with ``{placeholders}`` filled in."""
    entry = _catalogue().get(key)
    if entry is None:
        raise KeyError(f"no string {key!r} in {_STRINGS.name}")
    template = entry[check_lang(lang)]
    return template.format(**values) if values else template


def has_text(key: str) -> bool:
    return key in _catalogue()


def strings() -> dict[str, dict[str, str]]:
    """The whole catalogue (key -> {lang: text})."""
    return dict(_catalogue())


def is_missing(value: Any) -> bool:
    """True for None, NaN and pandas' NA."""
    if value is None:
        return True
    try:
        return bool(value != value) or (isinstance(value, float) and math.isnan(value))
    except (TypeError, ValueError):
        return True


def format_number(value: Any, lang: str, digits: int = 0) -> str:
    """``1,234,567.5`` (en) or ``1 234 567,5`` (ru); "no data" for a missing value."""
    if is_missing(value):
        return text("no_data", lang)
    out = f"{float(value):,.{digits}f}"
    if out.startswith("-") and float(out.replace(",", "")) == 0:
        out = out[1:]
    if lang == "ru":
        out = out.replace(",", NBSP).replace(".", ",")
    return out


def format_money(value: Any, lang: str, currency: str | None = "RUB") -> str:
    """``1 234 567 ₽`` (ru) or ``1,234,567 RUB`` (en)."""
    if is_missing(value):
        return text("no_data", lang)
    return f"{format_number(value, lang, 0)}{NBSP}{currency_unit(currency, lang)}"


def currency_unit(currency: str | None, lang: str) -> str:
    """``₽`` (ru) or ``RUB`` (en): how a page of ``lang`` writes the currency."""
    code = (currency or "RUB").upper()
    return _SYMBOLS.get(code, code) if lang == "ru" else code


def format_pct(value: Any, lang: str, digits: int = 1) -> str:
    """``83.4%`` (en) or ``83,4 %`` (ru)."""
    if is_missing(value):
        return text("no_data", lang)
    return format_number(value, lang, digits) + ("%" if lang == "en" else f"{NBSP}%")


def format_value(key: str, value: Any, lang: str, currency: str | None = "RUB") -> str:
    """Display ``value`` of KPI ``key`` the way its kind asks (counts as whole numbers)."""
    if is_missing(value):
        return text("no_data", lang)
    kind = KINDS.get(key, "count")
    if kind == "pct":
        return format_pct(value, lang)
    if kind == "money":
        return format_money(value, lang, currency)
    if kind == "minutes":
        return f"{format_number(value, lang, 1)}{NBSP}{text('unit_min', lang)}"
    if kind == "bool":
        return text("yes" if value else "no", lang)
    if kind.startswith("number"):
        return format_number(value, lang, int(kind[-1]))
    return format_number(value, lang, 0)


def format_date(day: date | datetime, lang: str) -> str:
    """``23 Nov 2026`` (en) or ``23 ноября 2026`` (ru)."""
    return f"{day.day}{NBSP}{_MONTHS[lang][day.month - 1]} {day.year}"


def format_datetime(moment: datetime | None, lang: str, tz=None) -> str:
    """A date and time in ``tz`` (default: the value's own zone), with the zone name."""
    if moment is None:
        return text("never", lang)
    if tz is not None:
        moment = moment.astimezone(tz)
    offset = moment.strftime("%z")
    zone = getattr(moment.tzinfo, "key", None) or (f"UTC{offset[:3]}:{offset[3:5]}" if offset else "UTC")
    return f"{format_date(moment, lang)}, {moment:%H:%M} ({zone})"


def format_day(day: date | datetime, lang: str) -> str:
    """A short weekday and date: ``Mon 23 Nov`` / ``пн 23 ноября``."""
    weekday = text("weekdays", lang).split()[day.weekday()]
    return f"{weekday} {day.day}{NBSP}{_MONTHS[lang][day.month - 1]}"


def format_week(week, lang: str) -> str:
    """``2026-W47 (16–22 Nov 2026)`` in the week's own timezone."""
    first, last = week.start.date(), week.end.date().fromordinal(week.end.date().toordinal() - 1)
    months = _MONTHS[lang]
    if first.month == last.month:
        span = f"{first.day}–{last.day}{NBSP}{months[last.month - 1]} {last.year}"
    else:
        span = f"{first.day}{NBSP}{months[first.month - 1]} – {format_date(last, lang)}"
    return f"{week.label} ({span})"


def label(key: str, lang: str) -> str:
    """The short label of a KPI key or block (falls back to the key itself)."""
    return text(f"kpi.{key}", lang) if has_text(f"kpi.{key}") else key


def block_title(block: str, lang: str) -> str:
    return text(f"block.{block}", lang)
