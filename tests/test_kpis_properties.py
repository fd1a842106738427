"""Invariants of the KPIs on random small accounts (hypothesis), through the store."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas.testing as pdt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpi_builders import LOST, NEW, OFFER, TALK, WON, Account, at
from kpi_lib.kpis import BLOCKS, compute_kpis, compute_trends, compute_week_and_trends, data_quality

W46 = at("2026-11-09 00:00")
W48 = at("2026-11-23 00:00")
WEEK = 7 * 86400
PEOPLE = [101, 102, 1, 0]  # two managers, the supervisor, the robot
SUMMED = ("won", "lost", "priced_won", "responses", "escalation_events", "connected_calls", "tasks", "active_days",
          "new_leads", "uncalled_leads", "fcr_eligible", "fcr_resolved", "talk_minutes", "supervisor_minutes",
          "won_revenue")
DISTINCT = ("escalated_leads", "worked_leads")

moments = st.integers(min_value=W46, max_value=W48 + WEEK - 1)
leads = st.fixed_dictionaries({
    "owner": st.sampled_from([101, 102, 1]), "created": moments, "status": st.sampled_from([NEW, TALK, WON, LOST]),
    "close_after": st.integers(0, 10 * 86400), "price": st.sampled_from([None, 0, 50, 120.5]),
    "deleted": st.booleans(), "contacts": st.lists(st.sampled_from([1001, 1002, 1003]), max_size=2, unique=True),
    "csat": st.sampled_from([None, 1, 4, 5, 9]),
})
calls = st.fixed_dictionaries({
    "when": moments, "caller": st.sampled_from(PEOPLE), "target": st.integers(0, 9),
    "on_contact": st.booleans(), "kind": st.sampled_from(["call_in", "call_out"]),
    "duration": st.sampled_from([0, 19, 20, 75]), "status": st.sampled_from([None, 4, 6, 8]),
    "uniq": st.sampled_from([None, "a", "b"]),
})
tasks = st.fixed_dictionaries({
    "who": st.sampled_from([101, 102, 1]), "by": st.sampled_from([101, 102, 1, 0]), "created": moments,
    "due_after": st.integers(-7200, 5 * 86400), "target": st.integers(0, 9), "done": st.booleans(),
    "text": st.sampled_from(["call", "Send the offer today", "Позвонить", "Agree the delivery date"]),
    "result": st.sampled_from([None, "ok", "Offer sent by mail"]),
})
moves = st.fixed_dictionaries({
    "target": st.integers(0, 9), "when": moments, "by": st.sampled_from(PEOPLE),
    "kind": st.sampled_from(["status", "owner"]), "to": st.sampled_from([TALK, OFFER, WON, LOST, 1, 101, 102]),
})
accounts = st.fixed_dictionaries({
    "leads": st.lists(leads, min_size=1, max_size=8), "calls": st.lists(calls, max_size=12),
    "tasks": st.lists(tasks, max_size=6), "moves": st.lists(moves, max_size=6),
})


def build(spec: dict, first_id: int = 1, contacts=(1001, 1002, 1003), acc: Account | None = None) -> Account:
    acc = acc or Account()
    if not acc.items["users"]:
        acc.user(1, "Supervisor", admin=True)
        acc.user(101, "Anna")
        acc.user(102, "Boris")
    ids = [first_id + i for i in range(len(spec["leads"]))]
    for lead_id, lead in zip(ids, spec["leads"]):
        closed = lead["created"] + lead["close_after"] if lead["status"] in (WON, LOST) else None
        acc.lead(lead_id, lead["owner"], lead["created"], status=lead["status"], closed=closed, price=lead["price"],
                 deleted=lead["deleted"], csat=lead["csat"],
                 contacts=[contacts[[1001, 1002, 1003].index(c)] for c in lead["contacts"]])
    for call in spec["calls"]:
        target = ids[call["target"] % len(ids)]
        where = {"contact": contacts[call["target"] % 3]} if call["on_contact"] else {"lead": target}
        acc.call(call["when"], call["caller"], kind=call["kind"], duration=call["duration"], status=call["status"],
                 uniq=f"{call['uniq']}{first_id}" if call["uniq"] else None, **where)
    for task in spec["tasks"]:
        acc.task(task["who"], task["created"], task["created"] + task["due_after"], text=task["text"],
                 entity_id=ids[task["target"] % len(ids)], completed=task["done"], result=task["result"],
                 created_by=task["by"], updated=task["created"] + 3600)
    for move in spec["moves"]:
        lead = ids[move["target"] % len(ids)]
        if move["kind"] == "status" and move["to"] in (TALK, OFFER, WON, LOST):
            acc.move(lead, move["when"], move["by"], NEW, move["to"])
        elif move["to"] in (1, 101, 102):
            acc.reassign(lead, move["when"], 101 if move["to"] != 101 else 102, move["to"], by=move["by"])
    return acc


def shifted(spec: dict, start: int = W48) -> dict:
    """The same items moved into the week from ``start`` (default W48), from one hour after its start."""
    out = {key: [dict(item) for item in items] for key, items in spec.items()}
    for items in out.values():
        for item in items:
            for key in ("created", "when"):
                if key in item:
                    item[key] = start + 3600 + (item[key] - W46) % (WEEK - 7200)
    return out


RUN = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fresh_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="kpi-prop-"))


@RUN
@given(accounts)
def test_percentages_and_team_totals(spec):
    folder = fresh_dir()
    try:
        ctx = build(spec).context(folder, week="2026-W48", now="2026-12-31 12:00")
        trends = compute_trends(ctx, 3)
        result, together = compute_week_and_trends(ctx, 3)  # the week and its trends from one span
        assert result == compute_kpis(ctx)
        pdt.assert_frame_equal(together, trends, check_exact=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    values = trends.dropna(subset=["value"])
    pct = values.loc[values["key"].str.endswith("_pct") | (values["key"] == "smart_index"), "value"]
    assert ((pct >= 0) & (pct <= 100 + 1e-9)).all()
    for (week, block, key), rows in trends.groupby(["week", "block", "key"]):
        team = rows.loc[rows["manager"].isna().to_numpy(), "value"].iloc[0]
        people = rows.loc[rows["manager"].notna().to_numpy(), "value"]
        if key in SUMMED:
            assert math.isclose(team, people.sum(), abs_tol=1e-9), (week, block, key)
        if key in DISTINCT:
            assert people.max() <= team <= people.sum(), (week, block, key)
        if key in ("fcr_resolved", "responses", "priced_won", "uncalled_leads"):
            base = {"fcr_resolved": "fcr_eligible", "responses": "won", "priced_won": "won",
                    "uncalled_leads": "new_leads"}[key]
            total = trends.loc[(trends["week"] == week) & (trends["block"] == block) & (trends["key"] == base)]
            assert (rows.set_index("manager")["value"] <= total.set_index("manager")["value"]).all()


@RUN
@given(accounts)
def test_unpriced_wins_add_up(spec):
    folder = fresh_dir()
    try:
        ctx = build(spec).context(folder, week="2026-W47", now="2026-12-31 12:00")
        result = compute_kpis(ctx)
        unpriced = data_quality(ctx)["unpriced_wins"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    check = result["kpis"]["average_check"]
    assert check["team"]["won"] == check["team"]["priced_won"] + len(unpriced)
    for manager, figures in check["by_manager"].items():
        assert figures["won"] == figures["priced_won"] + int((unpriced["manager"] == int(manager)).sum())


@RUN
@given(accounts, accounts)
def test_the_next_weeks_items_do_not_leak_into_a_week(spec, later):
    """Items entirely in W+1 (new leads and contacts, their calls, tasks and moves) leave W unchanged."""
    later = shifted(later)
    for task in later["tasks"]:
        task["due_after"] = abs(task["due_after"]) + 3600  # due in W+1 as well (or later)
    folder = fresh_dir()
    try:
        alone = compute_kpis(build(spec).context(folder / "a", now="2026-12-31 12:00"))
        both = build(later, first_id=100, contacts=(2001, 2002, 2003), acc=build(spec))
        together = compute_kpis(both.context(folder / "b", now="2026-12-31 12:00"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for block in BLOCKS:
        assert alone["kpis"][block] == nan_safe(together["kpis"][block]), block


def nan_safe(value):
    if isinstance(value, dict):
        return {k: nan_safe(v) for k, v in value.items()}
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def unsplit(block: str, *weeks: dict) -> bool:
    """Whether a manager has revenue won in a week without an active day (no rate to split)."""
    return block == "productivity" and any(
        (row.get("won_revenue") or 0) > 0 and not days.get(m, {}).get("active_days")
        for week in weeks
        for days in [week["kpis"]["productivity"]["by_manager"]]
        for m, row in week["kpis"]["average_check"]["by_manager"].items())


@RUN
@given(accounts, accounts)
def test_drivers_add_up_to_the_change(spec, before):
    """§11: rate and mix effects plus ``other`` equal the change of the §8 team figure exactly;
    ``other`` is 0 for every figure whose team items are the disjoint union of the managers', unless
    a manager won revenue in a week without an active day."""
    from kpi_lib.kpis import compute_drivers

    folder = fresh_dir()
    try:
        acc = build(shifted(spec), first_id=100, contacts=(2001, 2002, 2003), acc=build(shifted(before, W48 - WEEK)))
        ctx = acc.context(folder, week="2026-W48", now="2026-12-31 12:00")
        drivers = compute_drivers(ctx)
        now, prev = compute_kpis(ctx), compute_kpis(ctx, ctx.week.shift(-1))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for block, r in drivers.items():
        assert r["value"] == now["kpis"][block]["team"][r["key"]]
        assert r["previous"] == prev["kpis"][block]["team"][r["key"]]
        assert len(r["managers"]) == 2
        if r["value"] is None or r["previous"] is None:
            assert r["change"] is None and r["other"] is None
            assert all(m["rate_effect"] is None and m["mix_effect"] is None for m in r["managers"])
            continue
        parts = [e for m in r["managers"] for e in (m["rate_effect"], m["mix_effect"])]
        assert r["change"] == r["value"] - r["previous"]
        assert math.isclose(math.fsum(parts + [r["other"]]), r["change"], rel_tol=1e-12, abs_tol=1e-9)
        if block != "cost_of_service" and not unsplit(block, now, prev):
            assert math.isclose(r["other"], 0.0, abs_tol=1e-7 * max(1.0, abs(r["value"]), abs(r["previous"]))), block


@RUN
@given(accounts)
def test_a_weeks_items_cut_from_its_trends_are_the_items_computed_alone(spec):
    """The detail rows, data quality and drivers of a week are cut out of the rows its trends were
    computed from; they equal the ones a fresh context computes for that week alone."""
    from kpi_lib.kpis import DETAIL_BLOCKS, block_detail, compute_moves

    folder = fresh_dir()
    try:
        acc = build(spec)
        after_trends = acc.context(folder, week="2026-W47", now="2026-11-25 12:00")
        compute_week_and_trends(after_trends, 2)
        alone = acc.context(folder, week="2026-W47", now="2026-11-25 12:00")
        for block in DETAIL_BLOCKS:
            pdt.assert_frame_equal(block_detail(after_trends, block), block_detail(alone, block), check_exact=True)
        for key, frame in data_quality(after_trends).items():
            pdt.assert_frame_equal(frame, data_quality(alone)[key], check_exact=True)
        assert compute_moves(after_trends) == compute_moves(acc.context(folder, week="2026-W47", now="2026-11-25 12:00"))
        assert after_trends.cache and any(k.startswith("items:") for k in after_trends.cache)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
