"""The items behind a figure (kpi-definitions.md §10): shared columns, links, JSON and CSV.

Every block's ``detail_*`` function returns one row per item its figures count, with the same
conventions, so that a frame, ``kpi-report detail --json`` and ``--csv`` carry the same rows:

- ``manager`` is the integer user id the item is attributed to, ``manager_name`` its name;
- ``name`` is the deal's (or the task's entity's) name and ``url`` its page in amoCRM
  (``https://{subdomain}.amocrm.ru/leads/detail/{id}``; null when the account has no usable
  subdomain or the item has no entity);
- times are timezone-aware in the report timezone (``*_at`` columns, ``t1``,
  ``complete_till``); a calendar day is a ``datetime.date``;
- entity types are spelled as amoCRM's task API and URLs spell them: ``leads``, ``contacts``,
  ``companies``;
- rows are sorted by manager, then by time.
"""

from __future__ import annotations

import csv
import io
import math
import re
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .common import num, positions
from .facts import facts_of

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context

#: The one spelling of entity types in KPI frames (amoCRM's task ``entity_type`` and URL path).
ENTITY_TYPES = ("leads", "contacts", "companies")
_SUBDOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$", re.IGNORECASE)


def entity_urls(ctx: "Context", entity_types, entity_ids) -> np.ndarray:
    """``https://{subdomain}.amocrm.ru/{entity_type}/detail/{id}`` for each (type, id) pair (a
    single type string applies to all ids); None unless the subdomain, the type and the id are sane."""
    ids = num(entity_ids)
    sub = ctx.account.get("subdomain")
    sub = "" if sub is None else str(sub)
    if not _SUBDOMAIN.match(sub):
        return np.full(len(ids), None, dtype=object)
    if isinstance(entity_types, str) or entity_types is None:
        kinds = pa.nulls(len(ids), pa.string()) if entity_types is None else pa.repeat(entity_types, len(ids))
    else:
        kinds = pa.array(entity_types, type=pa.string(), from_pandas=True)
    ok = pc.is_in(kinds, pa.array(ENTITY_TYPES)).to_numpy(zero_copy_only=False) & ~np.isnan(ids)
    # joined in Arrow: several times faster than a Python string per row
    numbers = pc.cast(pa.array(np.where(ok, ids, 0).astype("int64")), pa.string())
    urls = pc.binary_join_element_wise(f"https://{sub}.amocrm.ru/", kinds, "/detail/", numbers, "")
    return pc.if_else(pa.array(ok), urls, pa.scalar(None, pa.string())).to_numpy(zero_copy_only=False)


def user_names(ctx: "Context", ids) -> np.ndarray:
    """The users' names for ``ids`` (None for an unknown id)."""
    users = ctx.frames["users"]
    known, last = np.unique(num(users["id"])[::-1], return_index=True)  # an id's last row
    names = np.append(users["name"].astype(object).to_numpy()[::-1][last], None)
    return names[positions(known, ids)]  # an unknown id (-1) takes the None at the end


def finish_rows(ctx: "Context", rows: dict[str, Any], order: Iterable[str], entity_type: str | None = "leads",
                entity_col: str = "lead_id") -> pd.DataFrame:
    """A detail frame from ``rows``, with ``name``, ``manager_name`` and ``url`` filled in for the
    entity in ``entity_col`` (of type ``entity_type``, or of the ``entity_type`` column when
    ``entity_col`` is not ``lead_id``; None: no link), sorted by ``order``.  The first column of
    ``rows``, ``name``, ``manager`` and ``manager_name`` lead; ``url`` comes last."""
    frame = pd.DataFrame(rows)
    frame["manager"] = frame["manager"].astype("int64")
    frame["manager_name"] = user_names(ctx, frame["manager"])
    if entity_type is not None:
        if "name" not in frame:
            frame["name"] = facts_of(ctx).lead_names(frame[entity_col])
        frame["url"] = entity_urls(ctx, entity_type if entity_col == "lead_id" else frame["entity_type"],
                                   frame[entity_col])
    first = list(dict.fromkeys(c for c in (next(iter(rows)), "name", "manager", "manager_name") if c in frame))
    frame = frame[first + [c for c in frame.columns if c not in first]]
    keys = [_sort_keys(frame[c]) for c in reversed(list(order))]
    if any(k is None for k in keys):
        return frame.sort_values(list(order), ignore_index=True, kind="stable")
    return frame.take(np.lexsort([k for pair in keys for k in pair])).reset_index(drop=True)


def _sort_keys(column: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """A column's values and whether each is missing, for ``np.lexsort`` to order rows as a stable
    ``sort_values`` does (missing last), several times faster; None for a column of another kind."""
    if column.dtype.kind in "iub":
        values = column.to_numpy()
        return values, np.zeros(len(values), dtype=bool)
    if column.dtype.kind == "f":
        values = column.to_numpy()
        return values, np.isnan(values)
    if column.dtype.kind == "M":  # times, with or without a zone: instants as int64, NaT the smallest
        values = column.array.asi8
        return values, values == np.iinfo("int64").min
    return None


def _plain(value: Any) -> Any:
    """A frame value as a JSON value: ISO 8601 times, None for missing, Python numbers."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def detail_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a detail frame as JSON-ready dicts (what ``kpi-report detail --json`` prints)."""
    columns = list(frame.columns)
    return [{c: _plain(v) for c, v in zip(columns, row)} for row in frame.itertuples(index=False, name=None)]


def detail_csv(frame: pd.DataFrame) -> str:
    """The rows of a detail frame as CSV: the JSON's values, lists joined by ``;``, null as empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(frame.columns)

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return ";".join(str(v) for v in value)
        return str(value)

    for record in detail_records(frame):
        writer.writerow([cell(v) for v in record.values()])
    return out.getvalue()
