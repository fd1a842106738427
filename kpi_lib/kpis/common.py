"""Shared, vectorised building blocks of the KPI definitions (kpi-definitions.md §0, §9).

Everything here works on whole columns: weeks as spans of boundaries, per week × manager
aggregation (:func:`tally`), ratios that are null on a zero denominator, sorted-key counting.
Times are Unix seconds held in ``float64`` arrays so that a missing value is ``NaN``.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import numpy as np
import pandas as pd

from ..amocrm.endpoints import LOST, WON  # noqa: F401  (re-exported to the blocks)
from ..periods import Week, local_dates

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context

MAP_SLACK_S = 600  # a contact call may precede its lead's creation by up to 10 minutes
_SHIFT = np.int64(1 << 33)  # int64 key = position * 2**33 + unix seconds
_TABLE_SPAN = 1 << 24  # ids spanning fewer values are found by a table (see positions)
TEAM = "team"


def num(values) -> np.ndarray:
    """A column as ``float64`` with ``NaN`` for missing values."""
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    return np.asarray(values, dtype="float64")


def member(values, ids) -> np.ndarray:
    """Whether each value is one of ``ids`` (a fast ``isin`` for a few ids against many values)."""
    return positions(np.unique(num(ids)), values) >= 0


def positions(ids: np.ndarray, values) -> np.ndarray:
    """The index of each value in the sorted distinct ``ids``, -1 where it is none of them.

    Meant for a few ids (managers, supervisors) against millions of values: when the ids are
    whole numbers within :data:`_TABLE_SPAN` of each other, a table indexed by the value
    answers (several times faster than a binary search per value), else a binary search.
    """
    values = num(values)
    n = len(ids)
    if n == 0:
        return np.full(len(values), -1, dtype="int64")
    lo, span = ids[0], ids[-1] - ids[0]
    if span < _TABLE_SPAN and np.array_equal(ids, np.floor(ids)):
        table = np.zeros(int(span) + 1, dtype="int64")  # untouched pages cost no memory
        table[(ids - lo).astype("int64")] = np.arange(1, n + 1)
        shifted = values - lo
        inside = (shifted >= 0) & (shifted <= span)  # NaN is outside
        idx = np.where(inside, shifted, 0).astype("int64")
        return np.where(inside & (idx == shifted), table[idx] - 1, -1)
    pos = np.clip(np.searchsorted(ids, values), 0, n - 1)
    return np.where(ids[pos] == values, pos, -1)


def flag(values) -> np.ndarray:
    """A nullable boolean column as plain ``bool`` (missing is False)."""
    if isinstance(values, pd.Series):
        return values.fillna(False).to_numpy(dtype=bool)
    return np.asarray(values, dtype=bool)


def match_fields(defs: pd.DataFrame, values: pd.DataFrame, ref: str | int) -> list[int]:
    """Lead custom field ids matching ``ref``: an id, or a name compared case-insensitively.

    ``defs`` holds the fields (``id, name``), ``values`` their values or just the distinct
    ``field_id, field_name`` pairs seen on values.
    """
    if isinstance(ref, int):
        return [ref]
    name = str(ref).strip().casefold()
    found = set(defs.loc[defs["name"].fillna("").astype(str).str.strip().str.casefold() == name, "id"].astype(int))
    named = values["field_name"].fillna("").astype(str).str.strip().str.casefold() == name
    found |= set(values.loc[named, "field_id"].dropna().astype(int))
    if name.isdigit():
        found.add(int(name))
    return sorted(found)


# --- task texts (§6) -----------------------------------------------------------------------------

_URL = re.compile(r"(?:[a-z][a-z0-9+.\-]*://|www\.)\S*")
_PHONE = re.compile(r"\+?[\s\-().]*(?:\d[\s\-().]*){7,}")


class _Punctuation(dict):
    """A ``str.translate`` table deleting ASCII punctuation and Unicode punctuation (category P*),
    filled in per character on first sight."""

    def __missing__(self, code: int) -> int | None:
        char = chr(code)
        kept = None if char in string.punctuation or unicodedata.category(char).startswith("P") else code
        self[code] = kept
        return kept


_PUNCTUATION = _Punctuation()


def clean_words(text: str | None) -> list[str]:
    """The words of a text after the §6 cleaning (lower case, no URLs, phones, punctuation or numbers)."""
    if text is None or (isinstance(text, float) and np.isnan(text)) or text is pd.NA:
        return []
    text = str(text).lower()
    text = _URL.sub(" ", text)
    text = _PHONE.sub(" ", text)
    text = text.translate(_PUNCTUATION)
    return [w for w in text.split() if not w.isdigit()]


# --- weeks -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Span:
    """Consecutive report weeks with their boundaries and ``as_of`` instants.

    Attributes
    ----------
    weeks : list of Week
        Consecutive ISO weeks, oldest first.
    bounds : ndarray
        ``len(weeks) + 1`` week boundaries in Unix seconds.
    as_of : ndarray
        Per week, ``min(now, end of week)`` in Unix seconds (§0).
    """

    weeks: list[Week]
    bounds: np.ndarray
    as_of: np.ndarray
    now: float

    @property
    def start(self) -> float:
        return float(self.bounds[0])

    @property
    def end(self) -> float:
        return float(self.bounds[-1])

    def locate(self, ts) -> np.ndarray:
        """Index of the week holding each instant, ``-1`` outside the span or when missing."""
        ts = num(ts)
        idx = np.searchsorted(self.bounds, ts, side="right") - 1
        return np.where(np.isnan(ts) | (idx >= len(self.weeks)), -1, idx)

    def locate_days(self, days) -> np.ndarray:
        """Index of the week holding each local date (whole days since 1970), ``-1`` outside the span."""
        firsts = [w.start.date() for w in self.weeks] + [self.weeks[-1].end.date()]
        idx = np.searchsorted(np.array(firsts, dtype="datetime64[D]").astype("int64"), days, side="right") - 1
        return np.where(idx >= len(self.weeks), -1, idx)


def make_span(ctx: "Context", weeks: Iterable[Week]) -> Span:
    """A :class:`Span` over ``weeks`` using the context's ``now`` (the context's facts then hold it)."""
    weeks = sorted(weeks, key=lambda w: w.start_ts)
    bounds = np.array([w.start_ts for w in weeks] + [weeks[-1].end_ts], dtype="float64")
    now = ctx.now.timestamp()
    as_of = np.minimum(now, bounds[1:])
    ctx.cover(float(bounds[0]), float(bounds[-1]))
    return Span(weeks, bounds, as_of, now)


def span_items(renumber: bool):
    """Keep what a builder of item rows over a span (``build(ctx, span, *args)``, each row with
    its week index ``w``) gives, once per context: a span whose weeks lie inside a span built
    before is cut out of its rows (``w`` then counts from the span's first week), because the
    rows of a week never depend on the span's other weeks.  So a week's detail and drivers reuse
    the rows its trends were computed from.  ``renumber``: the builder numbers its rows from 0
    (else they keep the labels of the facts they come from).  Callers get a frame of their own
    to change: with pandas' copy-on-write, a shallow copy (the data are copied at a change only).
    """
    def wrap(build):
        name = f"items:{build.__module__}.{build.__qualname__}"

        @functools.wraps(build)
        def kept(ctx: "Context", span: Span, *args):
            entries = ctx.cache.setdefault(name, [])
            for held_args, held, frame in entries:
                k = _inside(span, held)
                if held_args != args or k is None:
                    continue
                if len(span.weeks) == len(held.weeks):
                    return frame.copy(deep=False)
                w = frame["w"].to_numpy()
                rows = frame.loc[(w >= k) & (w < k + len(span.weeks))]
                rows["w"] = rows["w"].to_numpy() - k
                return rows.reset_index(drop=True) if renumber else rows
            frame = build(ctx, span, *args)
            entries.append((args, span, frame))
            return frame.copy(deep=False)

        return kept

    return wrap


def _inside(span: Span, held: Span) -> int | None:
    """The index in ``held`` of the first week of ``span`` when all its weeks, with the same as_of,
    lie inside ``held``; else None."""
    k = int(np.searchsorted(held.bounds, span.bounds[0]))
    n = len(span.weeks)
    if held.now != span.now or k + n > len(held.weeks):
        return None
    same = np.array_equal(held.bounds[k:k + n + 1], span.bounds) and np.array_equal(held.as_of[k:k + n], span.as_of)
    return k if same else None


# --- per week × manager tables -------------------------------------------------------------------

def manager_ids(labels) -> pd.arrays.IntegerArray:
    """Per-manager labels (user id strings and ``team``) as int user ids, NA for the team row."""
    return pd.array([None if label == TEAM else int(label) for label in labels], dtype="Int64")


def manager_label(value) -> str:
    """The label of a ``manager`` value in a frame: the user id as a string, ``team`` for NA."""
    return TEAM if value is None or value is pd.NA or value != value else str(int(value))


def grid_index(span: Span, managers: Iterable[int]) -> pd.MultiIndex:
    """Every (week index, manager) pair, managers as user-id strings then ``team``."""
    people = [str(int(m)) for m in managers] + [TEAM]
    return pd.MultiIndex.from_product([range(len(span.weeks)), people], names=["w", "manager"])


def tally(index: pd.MultiIndex, items: pd.DataFrame, how: str = "size", col: str | list[str] | None = None,
          fill: float | None = 0.0) -> pd.Series | pd.DataFrame:
    """Aggregate ``items`` (columns ``w`` and ``m``: week index and manager) per manager and team.

    ``how`` is ``size``, ``count`` (values of ``col`` not missing), ``sum``, ``mean``, ``nunique``
    (distinct values of ``col``) or ``median``.  The team figure aggregates the union of the
    managers' items (distinct values for ``nunique``), never an average of the managers'
    figures.  Empty cells get ``fill`` (counts and sums) or NaN (``fill=None``).  A list of
    columns gives a frame with a column each, the items' cells found once.
    """
    people = index.get_level_values("manager")
    n_people = int(np.flatnonzero(people == TEAM)[0])
    ids = np.asarray([float(p) for p in people[:n_people]])
    n_weeks = len(index) // (n_people + 1)
    w = items["w"].to_numpy(dtype="int64")
    cell = w * n_people + positions(ids, items["m"])
    if isinstance(col, list):
        counts = _counts(w, cell, (n_weeks, n_people)) if how in _COUNTED else None  # once for every column
        return pd.DataFrame({c: _tally(index, (n_weeks, n_people), w, cell, how, num(items[c]), fill, counts)
                             for c in col}, index=index)
    return _tally(index, (n_weeks, n_people), w, cell, how, None if col is None else num(items[col]), fill)


_COUNTED = ("size", "count", "sum", "mean")


def _counts(w: np.ndarray, cell: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """How many items each cell and each week of a grid of ``shape`` (weeks, managers) holds."""
    n_weeks, n_people = shape
    return (np.bincount(cell, minlength=n_weeks * n_people).astype("float64"),
            np.bincount(w, minlength=n_weeks).astype("float64"))


def _tally(index: pd.MultiIndex, shape: tuple[int, int], w: np.ndarray, cell: np.ndarray, how: str,
           values: np.ndarray | None, fill: float | None, counts: tuple | None = None) -> pd.Series:
    """:func:`tally` of the items in cells ``cell`` (week ``w``) of a grid of ``shape`` (weeks, managers);
    ``counts``: the items' :func:`_counts`, when already found (used while no value is missing)."""
    n_weeks, n_people = shape
    if values is not None and how != "nunique":
        keep = ~np.isnan(values)
        if not keep.all():  # no copies of the items when none is missing
            w, cell, values, counts = w[keep], cell[keep], values[keep], None
    per_n, team_n = n_weeks * n_people, n_weeks
    if how in _COUNTED:
        per_count, team_count = counts if counts is not None else _counts(w, cell, shape)
        per, team = per_count, team_count
        if how in ("sum", "mean"):
            per = np.bincount(cell, values, minlength=per_n).astype("float64")
            team = np.bincount(w, values, minlength=team_n).astype("float64")
        if how == "mean":
            per = per / np.where(per_count > 0, per_count, np.nan)
            team = team / np.where(team_count > 0, team_count, np.nan)
        empty = per_count == 0, team_count == 0
    elif how == "nunique":
        ok = ~np.isnan(values)
        per_keys = distinct(cell[ok] * _SHIFT + values[ok].astype("int64"))
        team_keys = distinct(w[ok] * _SHIFT + values[ok].astype("int64"))
        per = np.bincount(per_keys // _SHIFT, minlength=per_n).astype("float64")
        team = np.bincount(team_keys // _SHIFT, minlength=team_n).astype("float64")
        empty = per == 0, team == 0
    elif how == "median":
        frame = pd.DataFrame({"cell": cell, "w": w, "v": values})
        per = frame.groupby("cell")["v"].median().reindex(range(per_n)).to_numpy(dtype="float64")
        team = frame.groupby("w")["v"].median().reindex(range(team_n)).to_numpy(dtype="float64")
        empty = np.isnan(per), np.isnan(team)
    else:  # pragma: no cover - a programming error
        raise ValueError(f"unknown aggregation {how!r}")
    per = np.where(empty[0], np.nan, per)
    team = np.where(empty[1], np.nan, team)
    out = np.concatenate([per.reshape(n_weeks, n_people), team.reshape(n_weeks, 1)], axis=1).ravel()
    series = pd.Series(out, index=index, dtype="float64")
    return series.fillna(fill) if fill is not None else series


def distinct(keys: np.ndarray) -> np.ndarray:
    """The distinct values of an int64 array, sorted (numpy's default sort, vectorised for int64:
    several times faster here than hashing, or than its stable radix sort)."""
    keys = np.sort(keys)
    if len(keys) < 2:
        return keys
    keep = np.empty(len(keys), dtype=bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


def ratio(numerator: pd.Series, denominator: pd.Series, scale: float = 1.0) -> pd.Series:
    """``scale × numerator / denominator``, NaN (JSON null) on a zero denominator."""
    den = denominator.astype("float64")
    return (scale * numerator.astype("float64") / den.where(den != 0)).astype("float64")


def scope(ctx: "Context", frame: pd.DataFrame, span: Span, when: str, who: str, mask=None,
          columns: list[str] | None = None) -> pd.DataFrame:
    """Rows of ``frame`` with ``when`` inside the span and ``who`` a manager, with ``w`` and ``m``.

    ``mask`` keeps only some rows besides; ``columns`` limits the columns carried along.
    """
    w = span.locate(frame[when])
    m = num(frame[who])
    keep = (w >= 0) & member(m, ctx.manager_ids)
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(keep)
    out = {c: _take(frame[c], rows) for c in (frame.columns if columns is None else columns)}
    out["w"], out["m"] = w[rows], m[rows].astype("int64")
    return pd.DataFrame(out, index=frame.index[rows], copy=False)  # the taken columns as they are, not copied again


def _take(column: pd.Series, rows: np.ndarray):
    """A column's values at positions ``rows``, of its own dtype (a numpy column without pandas' overhead)."""
    return column.to_numpy()[rows] if isinstance(column.dtype, np.dtype) else column.array.take(rows)


def local_days(ctx: "Context", ts) -> pd.Series:
    """Local calendar dates of instants in the report timezone."""
    return local_dates(num(ts), ctx.tz)


def business_minutes(ctx: "Context", start, end) -> np.ndarray:
    """Business minutes between instants (params ``business_hours``, report timezone)."""
    return ctx.settings.kpi.business_hours.minutes_between(num(start), num(end), ctx.tz)


def sort_key(pos, t) -> np.ndarray:
    """An int64 key ordering (position, time): ``position * 2**33 + seconds`` (missing time last)."""
    seconds = np.nan_to_num(num(t), nan=float(_SHIFT - 1)).astype("int64")
    return np.asarray(pos, dtype="int64") * _SHIFT + np.clip(seconds, 0, _SHIFT - 1)


def count_sorted(keys: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How many sorted ``keys`` fall in ``(lo, hi]`` for each pair."""
    return np.searchsorted(keys, hi, side="right") - np.searchsorted(keys, lo, side="right")


def to_local_times(ctx: "Context", ts) -> pd.arrays.DatetimeArray:
    """Unix seconds to timezone-aware times in the report timezone (NaT for missing)."""
    return pd.to_datetime(num(ts), unit="s", utc=True).tz_convert(ctx.tz).array
