"""The items that pull a figure down, per manager and reason, picked from the detail rows (§10).

:func:`pick_items_pulling_down` turns the detail frames of a week (as
:func:`kpi_lib.kpis.block_detail` returns them, or as the week's snapshot holds them) into one
tidy frame; :func:`kpi_lib.kpis.find_items_pulling_down` does the same from a context.  The reports and the
manager cards put each row in words; the codes are:

============================  ======================  ==============================================
block (figure)                reason                  the item
============================  ======================  ==============================================
first_call (fcr_pct)          ``callback``            the customer called in within the window
                              ``repeat_call``         another connected outgoing call was needed
                              ``no_advance``          no stage advance within the window
first_call (stl_median_min)   ``uncalled``            a new lead not called yet (``minutes`` waited)
                              ``slow_call``           called after more than 5 business minutes
cost_of_service               ``E1``, ``E2``, ``E3``  escalation task, take-over, supervisor call
customer_satisfaction         ``low_csat``            a won deal scored 1–3
average_check (win_rate_pct)  ``lost``                a lost deal
productivity                  ``unpriced_win``        a won deal without a price adds no revenue
smart_audit (smart_index)     ``not_specific``,       a task failing S, M, A, R or T
                              ``no_result``,
                              ``not_achievable``,
                              ``not_relevant``,
                              ``not_time_bound``
============================  ======================  ==============================================

An unresolved lead with two reasons, or a task failing two criteria, has one row per reason.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: (block, figure, reason) in the order the reports list them.
REASONS: tuple[tuple[str, str, str], ...] = (
    ("customer_satisfaction", "csat_pct", "low_csat"),
    ("cost_of_service", "escalation_rate_pct", "E1"),
    ("cost_of_service", "escalation_rate_pct", "E2"),
    ("cost_of_service", "escalation_rate_pct", "E3"),
    ("first_call", "fcr_pct", "callback"),
    ("first_call", "fcr_pct", "repeat_call"),
    ("first_call", "fcr_pct", "no_advance"),
    ("first_call", "stl_median_min", "uncalled"),
    ("first_call", "stl_median_min", "slow_call"),
    ("average_check", "win_rate_pct", "lost"),
    ("productivity", "revenue_per_active_day", "unpriced_win"),
    ("smart_audit", "smart_index", "not_specific"),
    ("smart_audit", "smart_index", "no_result"),
    ("smart_audit", "smart_index", "not_achievable"),
    ("smart_audit", "smart_index", "not_relevant"),
    ("smart_audit", "smart_index", "not_time_bound"),
)
COLUMNS = ("block", "key", "reason", "manager", "manager_name", "lead_id", "task_id", "entity_type", "entity_id",
           "name", "url", "at",
           "minutes", "supervisor", "supervisor_name", "text", "score", "price", "overdue")
SLOW_CALL_MIN = 5.0
_CRITERIA = {"S": "not_specific", "M": "no_result", "A": "not_achievable", "R": "not_relevant", "T": "not_time_bound"}


def _part(block: str, reason: str, rows: pd.DataFrame, at: str, **extra: str) -> pd.DataFrame:
    """Rows of one reason in the common columns (``extra`` maps item columns to source columns)."""
    out = pd.DataFrame({"block": block, "reason": reason}, index=rows.index)
    for column in ("manager", "manager_name", "lead_id", "task_id", "name", "url"):
        if column in rows:
            out[column] = rows[column]
    out["entity_type"] = rows["entity_type"] if "entity_type" in rows else "leads"
    out["entity_id"] = rows["entity_id"] if "entity_id" in rows else rows["lead_id"]
    out["at"] = rows[at]
    for column, source in extra.items():
        out[column] = rows[source]
    return out


def pick_items_pulling_down(details: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per manager, the items pulling each figure down, from a week's detail frames.

    Parameters
    ----------
    details : dict of DataFrame
        Block name -> the frame :func:`kpi_lib.kpis.block_detail` returns (missing blocks
        contribute nothing).

    Returns
    -------
    DataFrame
        One row per (item, reason): ``block, key`` (the figure), ``reason`` (see the module
        table), ``manager`` (int), ``manager_name``, ``lead_id`` and ``task_id`` (Int64, NA
        when not applicable), ``entity_type`` and ``entity_id`` (what ``url`` opens: the deal,
        or a task's contact or company), ``name`` (the deal's name), ``url``, ``at`` (the moment the
        reason is about: the call back, the repeat call, the first call, the lead's creation,
        the late first call, the signal, the closing, the due time), ``minutes`` (waited for
        ``uncalled``, speed to lead for ``slow_call``, charged for E1–E3), ``supervisor``,
        ``supervisor_name``, ``text`` (the task text), ``score`` (CSAT), ``price``,
        ``overdue`` (tasks).  Sorted by manager, the order of :data:`REASONS`, then ``at``.
    """
    parts = []
    fc = details.get("first_call")
    if fc is not None and len(fc):
        for reason, at in (("callback", "callback_at"), ("repeat_call", "repeat_call_at"), ("no_advance", "fc_at")):
            hit = fc.loc[[reason in r for r in fc["reasons"]]]
            parts.append(_part("first_call", reason, hit, at))
    stl = details.get("speed_to_lead")
    if stl is not None and len(stl):
        uncalled = stl["uncalled"].to_numpy(dtype=bool)
        parts.append(_part("first_call", "uncalled", stl.loc[uncalled], "created_at", minutes="waited_min"))
        slow = ~uncalled & (stl["stl_min"].to_numpy(dtype="float64") > SLOW_CALL_MIN)
        parts.append(_part("first_call", "slow_call", stl.loc[slow], "t1", minutes="stl_min"))
    cost = details.get("cost_of_service")
    if cost is not None and len(cost):
        for kind in ("E1", "E2", "E3"):
            parts.append(_part("cost_of_service", kind, cost.loc[cost["kind"] == kind], "at", minutes="minutes",
                               supervisor="supervisor", supervisor_name="supervisor_name", text="text"))
    csat = details.get("customer_satisfaction")
    if csat is not None and len(csat):
        low = csat["score"].to_numpy(dtype="float64") < 4
        parts.append(_part("customer_satisfaction", "low_csat", csat.loc[low], "closed_at", score="score",
                           price="price"))
    check = details.get("average_check")
    if check is not None and len(check):
        parts.append(_part("average_check", "lost", check.loc[check["status"] == "lost"], "closed_at", price="price"))
        won = check.loc[check["status"] == "won"]
        unpriced = ~(won["price"].to_numpy(dtype="float64") > 0)
        parts.append(_part("productivity", "unpriced_win", won.loc[unpriced], "closed_at", price="price"))
    smart = details.get("smart_audit")
    if smart is not None and len(smart):
        for crit, reason in _CRITERIA.items():
            failed = smart.loc[(smart[crit] == False).fillna(False).to_numpy(dtype=bool)]  # noqa: E712 (NA: n/a)
            parts.append(_part("smart_audit", reason, failed, "complete_till", text="text", overdue="overdue"))
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty()
    items = pd.concat(parts, ignore_index=True)
    order = {(block, reason): i for i, (block, _key, reason) in enumerate(REASONS)}
    keys = {(block, reason): key for block, key, reason in REASONS}
    pairs = list(zip(items["block"], items["reason"]))
    items["key"] = [keys[p] for p in pairs]
    items["_order"] = [order[p] for p in pairs]
    items["_t"] = pd.to_datetime(items["at"], utc=True)
    items = items.sort_values(["manager", "_order", "_t"], kind="stable", ignore_index=True)
    out = _empty(len(items))
    for column in COLUMNS:
        if column in items:
            out[column] = items[column]
    return _typed(out)


def _empty(n: int = 0) -> pd.DataFrame:
    return pd.DataFrame({c: np.full(n, None, dtype=object) for c in COLUMNS})


def _typed(items: pd.DataFrame) -> pd.DataFrame:
    """The item columns in their documented types."""
    items["manager"] = items["manager"].astype("int64")
    for column in ("lead_id", "task_id", "entity_id", "supervisor"):
        items[column] = pd.array(pd.to_numeric(items[column], errors="coerce"), dtype="Float64").astype("Int64")
    for column in ("minutes", "score", "price"):
        items[column] = pd.to_numeric(items[column], errors="coerce").astype("float64")
    items["overdue"] = pd.array(items["overdue"], dtype="boolean")
    return items
