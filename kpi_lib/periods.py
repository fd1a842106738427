"""ISO weeks, the report timezone and business minutes.

A week is an ISO 8601 week labelled ``YYYY-Www`` by ISO week-year, covering
[Monday 00:00, next Monday 00:00) in the report timezone (kpi-definitions.md §0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from .errors import ConfigError

_WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")


def load_timezone(name: str) -> ZoneInfo:
    """Return the IANA timezone ``name`` or raise a ConfigError naming the fix."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"unknown timezone {name!r}: use an IANA name such as 'Europe/Moscow' or 'UTC'"
        ) from exc


@dataclass(frozen=True)
class Week:
    """One ISO week in a timezone.

    Attributes
    ----------
    year, number : int
        ISO week-year and week number.
    tz : ZoneInfo
        The report timezone.
    """

    year: int
    number: int
    tz: ZoneInfo

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.number:02d}"

    @property
    def start(self) -> datetime:
        """Monday 00:00 local time."""
        return datetime.combine(date.fromisocalendar(self.year, self.number, 1), time(), self.tz)

    @property
    def end(self) -> datetime:
        """Next Monday 00:00 local time (exclusive)."""
        monday = date.fromisocalendar(self.year, self.number, 1) + timedelta(days=7)
        return datetime.combine(monday, time(), self.tz)

    @property
    def start_ts(self) -> int:
        return int(self.start.timestamp())

    @property
    def end_ts(self) -> int:
        return int(self.end.timestamp())

    def shift(self, weeks: int) -> "Week":
        """The week ``weeks`` later (negative: earlier)."""
        monday = date.fromisocalendar(self.year, self.number, 1) + timedelta(weeks=weeks)
        return week_of(monday, self.tz)

    def __str__(self) -> str:
        return self.label


def week_of(day: date | datetime, tz: ZoneInfo) -> Week:
    """The ISO week holding ``day`` (a datetime is converted to ``tz`` first)."""
    if isinstance(day, datetime):
        day = day.astimezone(tz).date()
    iso = day.isocalendar()
    return Week(iso.year, iso.week, tz)


def parse_week(text: str, tz: ZoneInfo, now: datetime | None = None) -> Week:
    """Parse ``YYYY-Www`` or ``last`` (the last complete week before ``now``).

    ``current`` gives the week holding ``now``.
    """
    now = now or datetime.now(tz)
    text = str(text).strip()
    if text == "last":
        return week_of(now, tz).shift(-1)
    if text == "current":
        return week_of(now, tz)
    match = _WEEK_RE.match(text)
    if not match:
        raise ConfigError(f"week {text!r} is not an ISO week: use YYYY-Www (e.g. 2026-W47) or 'last'")
    year, number = int(match.group(1)), int(match.group(2))
    try:
        date.fromisocalendar(year, number, 1)
    except ValueError as exc:
        raise ConfigError(f"week {text!r} does not exist: {year} has no week {number}") from exc
    return Week(year, number, tz)


def parse_instant(text: str, tz: ZoneInfo) -> datetime:
    """Parse an ISO 8601 instant; a naive one is read in ``tz``."""
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError as exc:
        raise ConfigError(f"as-of {text!r} is not ISO 8601: use e.g. 2026-11-23T09:00:00+03:00") from exc
    return value if value.tzinfo else value.replace(tzinfo=tz)


def to_local(ts: pd.Series | np.ndarray, tz: ZoneInfo) -> pd.Series:
    """Unix seconds to naive local datetimes (NaT for missing)."""
    return pd.Series(pd.to_datetime(pd.Series(ts, dtype="float64"), unit="s", utc=True)).dt.tz_convert(tz).dt.tz_localize(None)


def local_dates(ts: pd.Series | np.ndarray, tz: ZoneInfo) -> pd.Series:
    """Unix seconds to local calendar dates (midnight, NaT for missing): ``to_local(ts, tz)``
    normalised, for whole seconds from the zone's offset in each hour (see :func:`_local_days`)."""
    seconds = np.asarray(ts, dtype="float64")
    days = _local_days(seconds, tz)
    if days is None:
        return to_local(seconds, tz).dt.normalize()
    return pd.Series(days.astype("datetime64[us]"))


#: Hours that instants may span for :func:`_local_days` (a table of the zone's offset per hour).
_OFFSET_HOURS = 24 * 366 * 200


def _local_days(seconds: np.ndarray, tz: ZoneInfo) -> np.ndarray | None:
    """Local dates (``datetime64[D]``, NaT for NaN) of whole Unix seconds, from the zone's UTC
    offset at the start and at the end of each hour they fall in: for millions of instants about
    twice as fast as converting each one, with the same dates.  The instants of an hour whose
    offset changes within it are converted one by one.  None for fractional seconds, or instants
    spanning more than :data:`_OFFSET_HOURS`."""
    known = ~np.isnan(seconds)
    everything = bool(known.all())
    floats = seconds if everything else seconds[known]
    if len(floats) == 0 or not (-2.0**62 < floats.min() and floats.max() < 2.0**62):
        return None
    whole = floats.astype("int64")
    if not np.array_equal(whole, floats):
        return None
    hour = whole // 3600
    first, last = int(hour.min()), int(hour.max())
    if last - first > _OFFSET_HOURS:
        return None
    starts = np.arange(first, last + 1, dtype="int64") * 3600
    offset = _offsets(starts, tz)
    changes = offset != _offsets(starts + 3599, tz)
    hour -= first
    local = whole + offset[hour]
    if changes.any():
        inside = np.flatnonzero(changes[hour])
        local[inside] = whole[inside] + _offsets(whole[inside], tz)
    local //= 86400
    if everything:
        return local.view("datetime64[D]")
    days = np.full(len(seconds), np.datetime64("NaT"), dtype="datetime64[D]")
    days[known] = local.view("datetime64[D]")
    return days


def _offsets(seconds: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """The zone's UTC offset in seconds at whole Unix seconds (int64)."""
    local = to_local(seconds.astype("float64"), tz).to_numpy().astype("datetime64[s]").astype("int64")
    return local - seconds


def offset_changes(lo: float, hi: float, tz: ZoneInfo) -> list[tuple[int, int]]:
    """The zone's UTC offset over the whole seconds of ``[lo, hi)``: ``(second, offset)`` pairs, the
    first for ``lo`` and then one at each second the offset changes, so that an instant's local
    date is ``floor((t + offset) / 86400)`` with the offset of the last pair at or before it (the
    dates of :func:`local_dates`, for a query to compute in SQL)."""
    first, last = int(np.floor(lo)) // 3600, int(np.ceil(hi)) // 3600 + 1
    starts = np.arange(first, last + 1, dtype="int64") * 3600
    offset = _offsets(starts, tz)
    out = [(int(np.floor(lo)), int(_offsets(np.array([int(np.floor(lo))]), tz)[0]))]
    for i in np.flatnonzero(offset[1:] != offset[:-1]):
        a, b = int(starts[i]), int(starts[i + 1])  # the offset at a differs from that at b: find the second
        while b - a > 1:
            mid = (a + b) // 2
            a, b = (mid, b) if _offsets(np.array([mid]), tz)[0] == offset[i] else (a, mid)
        if lo < b < hi:
            out.append((b, int(offset[i + 1])))
    return out


@dataclass(frozen=True)
class BusinessHours:
    """Working windows: ISO weekdays and a local start/end that do not cross midnight."""

    days: tuple[int, ...] = (1, 2, 3, 4, 5)
    start: str = "09:00"
    end: str = "18:00"

    def _seconds(self, hhmm: str) -> int:
        hours, minutes = hhmm.split(":")
        return int(hours) * 3600 + int(minutes) * 60

    def minutes_between(self, start_ts, end_ts, tz: ZoneInfo) -> np.ndarray:
        """Business minutes between instants (vectorised, unrounded, 0 when end <= start)."""
        start_ts = np.asarray(start_ts, dtype="float64")
        end_ts = np.asarray(end_ts, dtype="float64")
        done = self._cumulative(start_ts, tz), self._cumulative(end_ts, tz)
        out = (done[1] - done[0]) / 60.0
        out = np.where(end_ts > start_ts, np.maximum(out, 0.0), 0.0)
        return np.where(np.isnan(start_ts) | np.isnan(end_ts), np.nan, out)

    def _cumulative(self, ts: np.ndarray, tz: ZoneInfo) -> np.ndarray:
        """Business seconds from 1970-01-05 (a Monday) to each instant, on the local wall clock."""
        local = to_local(ts, tz)
        valid = local.notna().to_numpy()
        day = local.dt.normalize()
        sod = (local - day).dt.total_seconds().to_numpy()
        open_s, close_s = self._seconds(self.start), self._seconds(self.end)
        width = max(close_s - open_s, 0)
        mask = "".join("1" if d in self.days else "0" for d in range(1, 8))
        days = day.to_numpy().astype("datetime64[D]")
        safe_days = np.where(valid, days, np.datetime64("1970-01-05"))
        full_days = np.busday_count(np.datetime64("1970-01-05"), safe_days, weekmask=mask)
        weekday = (safe_days.astype("int64") - 4) % 7 + 1  # 1970-01-05 is a Monday
        is_open = np.isin(weekday, list(self.days))
        partial = np.where(is_open, np.clip(np.nan_to_num(sod) - open_s, 0, width), 0)
        out = full_days.astype("float64") * width + partial
        return np.where(valid, out, np.nan)


def report_timezone(configured: str | None, account_tz: str | None) -> ZoneInfo:
    """The report timezone: params ``timezone``, else the account's, else UTC (§0)."""
    return load_timezone(configured or account_tz or "UTC")


def resolve_week(week: str, as_of: str | None, tz: ZoneInfo, now: datetime | None = None) -> tuple[Week, datetime]:
    """The report week and its ``as_of = min(now, end of W)`` (kpi-definitions.md §0).

    A pinned ``as_of`` (``--as-of``) stands for "now": ``week='last'`` is then the last
    complete week before it, and the week's as-of is ``min(pinned, end of W)``.  Callers
    that need "now" itself (``fcr_final``, tasks due today) use :func:`resolve_now`.
    """
    now = resolve_now(as_of, tz, now)
    resolved = parse_week(week, tz, now=now)
    if resolved.start > now:
        raise ConfigError(
            f"week {resolved.label} has not started yet (it starts on {resolved.start:%Y-%m-%d}): use 'last' for "
            "the last complete week, 'current' for the week so far, or an earlier week")
    return resolved, min(now, resolved.end)


def resolve_now(as_of: str | None, tz: ZoneInfo, now: datetime | None = None) -> datetime:
    """The pinned ``as_of`` if given, else ``now`` (default: the wall clock), in ``tz``."""
    if as_of:
        return parse_instant(as_of, tz).astimezone(tz)
    return (now or datetime.now(tz)).astimezone(tz)
