"""Why a figure moved (kpi-definitions.md §11) against hand-computed effects.

Each account has two weeks, W46 (the week before) and W47, built item by item and read back
through a real store.  Expected effects are written as the §11 arithmetic on the rates and
shares that the items give: r = the manager's own figure, s = den_m / Σ den.
"""

from __future__ import annotations

import json
import math

import pytest

from kpi_builders import NEW, TALK, WON, Account, at
from kpi_lib.cli import main
from kpi_lib.kpis import compute_drivers, compute_kpis, compute_moves
from kpi_lib.kpis.drivers import decompose, noise_limit, within_noise

W46, W47 = at("2026-11-10 12:00"), at("2026-11-17 12:00")  # a Tuesday of each week
DAY = 86400


def people(acc: Account, *extra: int) -> Account:
    acc.user(1, "Supervisor", admin=True)
    acc.user(101, "Anna")
    acc.user(102, "Boris")
    for uid in extra:
        acc.user(uid, f"Manager {uid}")
    return acc


def effects(record: dict) -> dict[int, tuple[float, float]]:
    return {m["manager"]: (m["rate_effect"], m["mix_effect"]) for m in record["managers"]}


def split(r1: float, s1: float, r0: float, s0: float) -> tuple[float, float]:
    """§11 written out: (rate effect, mix effect)."""
    return (r1 - r0) * (s1 + s0) / 2, (s1 - s0) * (r1 + r0) / 2


def check(record: dict, value: float, previous: float, expected: dict[int, tuple[float, float]],
          other: float = 0.0) -> None:
    assert record["value"] == pytest.approx(value) and record["previous"] == pytest.approx(previous)
    assert record["change"] == pytest.approx(value - previous)
    got = effects(record)
    assert set(got) == set(expected)
    for manager, (rate, mix) in expected.items():
        assert got[manager][0] == pytest.approx(rate, abs=1e-9), manager
        assert got[manager][1] == pytest.approx(mix, abs=1e-9), manager
    assert record["other"] == pytest.approx(other, abs=1e-9)
    total = math.fsum([e for pair in got.values() for e in pair] + [record["other"]])
    assert total == pytest.approx(record["change"], abs=1e-12)


def test_decompose_by_hand():
    # W0: A 8/10 (80 %), B 3/10 (30 %), team 11/20 = 55 %; W1: A 6/10 (60 %), B 9/30 (30 %), team 15/40.
    r = decompose("fcr_pct", 37.5, 55.0, [(101, 60.0, 10, 80.0, 10), (102, 30.0, 30, 30.0, 10)])
    check(r, 37.5, 55.0, {101: (-7.5, -17.5), 102: (0.0, 7.5)})


def test_a_manager_absent_in_a_week_has_only_a_mix_effect():
    # C only in W1 (2 of 2); A 1/2 in both weeks: team 50 % → 75 %.
    r = decompose("csat_pct", 75.0, 50.0, [(101, 50.0, 2, 50.0, 2), (103, 100.0, 2, None, 0), (104, None, 0, None, 0)])
    check(r, 75.0, 50.0, {101: split(50, 0.5, 50, 1.0), 103: (0.0, (0.5 - 0) * (100 + 100) / 2), 104: (0.0, 0.0)})


def test_a_null_week_makes_every_effect_null():
    r = decompose("csat_pct", 75.0, None, [(101, 50.0, 2, None, 0)])
    assert r == {"key": "csat_pct", "value": 75.0, "previous": None, "change": None,
                 "managers": [{"manager": 101, "rate_effect": None, "mix_effect": None}], "other": None}


def won_deals(acc: Account, deals) -> None:
    """(lead id, owner, closed at, csat, price) won deals."""
    for lead, owner, closed, csat, price in deals:
        acc.lead(lead, owner, closed - 5 * DAY, status=WON, closed=closed, csat=csat, price=price)


def test_customer_satisfaction_and_average_check(tmp_path):
    acc = people(Account(), 103)
    won_deals(acc, [
        (1, 101, W46, 5, 100), (2, 101, W46 + 60, 5, 100), (3, 102, W46, 5, 300), (4, 102, W46 + 60, 2, 100),
        (5, 101, W47, 2, 200), (6, 102, W47, 5, 100), (7, 102, W47 + 60, 5, 100), (8, 102, W47 + 120, 1, 400),
        (9, 103, W47, 5, 300),  # manager 103 has no deal in W46
    ])
    moves = compute_moves(acc.context(tmp_path))
    # csat: W46 A 2/2, B 1/2, team 3/4; W47 A 0/1, B 2/3, C 1/1, team 3/5.
    check(moves["customer_satisfaction"], 60.0, 75.0, {
        101: split(0, 1 / 5, 100, 2 / 4), 102: split(200 / 3, 3 / 5, 50, 2 / 4),
        103: (0.0, (1 / 5 - 0) * (100 + 100) / 2)})
    # average check: W46 A 100 (2), B 200 (2), team 150; W47 A 200 (1), B 200 (3), C 300 (1), team 1100 / 5.
    check(moves["average_check"], 220.0, 150.0, {
        101: split(200, 1 / 5, 100, 2 / 4), 102: split(200, 3 / 5, 200, 2 / 4), 103: (0.0, (1 / 5) * 600 / 2)})
    record = moves["customer_satisfaction"]
    c = next(m for m in record["managers"] if m["manager"] == 103)
    assert (c["rate"], c["previous_rate"], c["n"], c["previous_n"], c["share"], c["previous_share"]) == \
        (100.0, None, 1, 0, 0.2, 0.0)


def test_revenue_per_active_day(tmp_path):
    acc = people(Account())
    won_deals(acc, [(1, 101, W46, None, 200), (2, 102, W46, None, 400), (3, 101, W47, None, 200),
                    (4, 102, W47, None, 600)])
    acc.lead(50, 101, W46 - 30 * DAY)
    # connected calls make active days: W46 A 2, B 1; W47 A 1, B 3
    for when, who in [(W46, 101), (W46 + DAY, 101), (W46, 102), (W47, 101), (W47, 102), (W47 + DAY, 102),
                      (W47 + 2 * DAY, 102)]:
        acc.call(when, who, lead=50)
    r = compute_moves(acc.context(tmp_path))["productivity"]
    # W46: A 200 / 2, B 400 / 1, team 600 / 3; W47: A 200 / 1, B 600 / 3, team 800 / 4.
    check(r, 200.0, 200.0, {101: split(200, 1 / 4, 100, 2 / 3), 102: split(200, 3 / 4, 400, 1 / 3)})


def test_revenue_won_without_an_active_day_is_carried_by_other(tmp_path):
    """A deal won in a week with no active day has no rate to split: ``other`` carries it."""
    acc = people(Account(), 103)
    won_deals(acc, [(1, 101, W46, None, 200), (2, 101, W47, None, 200), (3, 103, W47, None, 300)])
    acc.lead(50, 101, W46 - 30 * DAY)
    for when in (W46, W47):
        acc.call(when, 101, lead=50)
    r = compute_moves(acc.context(tmp_path))["productivity"]
    # W46: A 200 / 1; W47: A 200 / 1, C 300 in 0 days, team 500 / 1. Only A has a rate.
    check(r, 500.0, 200.0, {101: (0.0, 0.0), 102: (0.0, 0.0), 103: (0.0, 0.0)}, other=300.0)


def first_call(acc: Account, lead: int, who: int, when: int, resolved: bool) -> None:
    acc.lead(lead, who, when - 3600)
    acc.call(when, who, lead=lead)
    if resolved:
        acc.move(lead, when + 3600, who, NEW, TALK)


def test_first_call_resolution(tmp_path):
    acc = people(Account(), 103)
    plan = {(101, W46): (4, 3), (102, W46): (1, 0), (101, W47): (2, 1), (102, W47): (2, 2)}
    lead = 1
    for (who, week), (eligible, resolved) in plan.items():
        for i in range(eligible):
            first_call(acc, lead, who, week + i * 600, resolved=i < resolved)
            lead += 1
    r = compute_moves(acc.context(tmp_path))["first_call"]
    # W46: A 3/4, B 0/1, team 3/5; W47: A 1/2, B 2/2, team 3/4; manager 103 has no first call at all.
    check(r, 75.0, 60.0, {101: split(50, 2 / 4, 75, 4 / 5), 102: split(100, 2 / 4, 0, 1 / 5), 103: (0.0, 0.0)})


def test_escalation_rate_with_a_lead_worked_by_two_managers(tmp_path):
    acc = people(Account())
    for lead in range(1, 11):
        acc.lead(lead, 101, W46 - 30 * DAY)
    for lead in (1, 2, 3, 4):
        acc.call(W46, 101, lead=lead, status=6, duration=0)  # attempts work a lead too
    for lead in (5, 6):
        acc.call(W46, 102, lead=lead)
    acc.task(1, W46, W46 + DAY, entity_id=1, created_by=101)  # E1: A hands lead 1 to the supervisor
    for lead in (7, 8):
        acc.call(W47, 101, lead=lead)
    for lead in (8, 9, 10):
        acc.call(W47 + 60, 102, lead=lead)
    acc.task(1, W47, W47 + DAY, entity_id=9, created_by=102)
    r = compute_moves(acc.context(tmp_path))["cost_of_service"]
    # W46: A 1/4, B 0/2, team 1/6; W47: A 0/2, B 1/3, team 1/4 (lead 8 counts once): shares of 5, not 4.
    a, b = split(0, 2 / 5, 25, 4 / 6), split(100 / 3, 3 / 5, 0, 2 / 6)
    change = 25 - 100 / 6
    check(r, 25.0, 100 / 6, {101: a, 102: b}, other=change - sum(a) - sum(b))
    assert r["other"] == pytest.approx(5.0)  # (25 − 20): the shared lead


def test_smart_index(tmp_path):
    acc = people(Account())
    acc.lead(50, 101, W46 - 30 * DAY)

    def task(who: int, due: int, good: bool) -> None:
        if good:  # S, M, A, R, T all pass: 1
            t = acc.task(who, due - DAY, due, entity_id=50, completed=True, result="Offer sent by mail",
                         updated=due - 3600)
            acc.complete(t, due - 3600, who)
        else:  # generic text (S fails), open and overdue (T fails), M not applicable: 2 of 4
            acc.task(who, due - DAY, due, text="call", entity_id=50)

    for who, due, good in [(101, W46, True), (101, W46 + 60, True), (102, W46, True), (102, W46 + 60, False),
                           (101, W47, True), (101, W47 + 60, False), (102, W47, True), (102, W47 + 60, True),
                           (102, W47 + 120, True), (102, W47 + 180, False)]:
        task(who, due, good)
    ctx = acc.context(tmp_path)
    r = compute_moves(ctx)["smart_audit"]
    # W46: A 100 (2), B 75 (2), team 87.5; W47: A 75 (2), B 87.5 (4), team 500 / 6.
    check(r, 500 / 6, 87.5, {101: split(75, 2 / 6, 100, 2 / 4), 102: split(87.5, 4 / 6, 75, 2 / 4)})


def test_a_figure_null_in_one_week(tmp_path):
    acc = people(Account())
    won_deals(acc, [(1, 101, W47, 5, 100), (2, 102, W47, None, 100)])  # no survey answer in W46, no deal at all
    r = compute_drivers(acc.context(tmp_path))
    for block in ("customer_satisfaction", "average_check"):
        assert r[block]["previous"] is None and r[block]["value"] is not None
        assert r[block]["change"] is None and r[block]["other"] is None
        assert all(m["rate_effect"] is None and m["mix_effect"] is None for m in r[block]["managers"])
        assert [m["manager"] for m in r[block]["managers"]] == [101, 102]


def test_noise_limit_of_a_proportion():
    # pooled 50 % over 100 + 100: 1.96 × √(0.25 × 0.02) = 13.9 pp
    limit = noise_limit("fcr_pct", 55.0, 100, 45.0, 100)
    assert limit == pytest.approx(100 * 1.959964 * math.sqrt(0.25 * 0.02))
    assert within_noise({"change": 10.0, "limit": limit}) and not within_noise({"change": -14.0, "limit": limit})
    assert noise_limit("fcr_pct", 55.0, 100, None, 0) is None
    assert noise_limit("avg_check", 10.0, 4, 8.0, 4, (1.0, 2.0)) == pytest.approx(1.959964 * math.sqrt(5))
    assert noise_limit("revenue_per_active_day", 10.0, 4, 8.0, 2, (4.0, 8.0)) == pytest.approx(1.959964 * math.sqrt(8))


def test_the_command_prints_the_contract_json(demo_store, capsys):
    code = main(["drivers", "--data-dir", str(demo_store), "--week", "2026-W47", "--as-of", "2026-11-25T12:00:00+03:00",
                 "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    main(["kpis", "--data-dir", str(demo_store), "--week", "2026-W47", "--as-of", "2026-11-25T12:00:00+03:00", "--json"])
    now = json.loads(capsys.readouterr().out)
    main(["kpis", "--data-dir", str(demo_store), "--week", "2026-W46", "--as-of", "2026-11-25T12:00:00+03:00", "--json"])
    before = json.loads(capsys.readouterr().out)
    assert set(out) == {"customer_satisfaction", "cost_of_service", "first_call", "average_check", "productivity",
                        "smart_audit"}
    people_ids = [m["user_id"] for m in now["managers"]]
    for block, r in out.items():
        assert set(r) == {"key", "value", "previous", "change", "managers", "other"}
        assert r["value"] == now["kpis"][block]["team"][r["key"]]
        assert r["previous"] == before["kpis"][block]["team"][r["key"]]
        assert r["change"] == pytest.approx(r["value"] - r["previous"], abs=1e-12)
        assert [m["manager"] for m in r["managers"]] == people_ids
        parts = [e for m in r["managers"] for e in (m["rate_effect"], m["mix_effect"])] + [r["other"]]
        assert math.fsum(parts) == pytest.approx(r["change"], abs=1e-9)
    main(["drivers", "--data-dir", str(demo_store), "--week", "2026-W47", "--as-of", "2026-11-25T12:00:00+03:00"])
    text = capsys.readouterr().out
    assert "rate effect" in text and "other" in text and now["managers"][0]["name"] in text


def test_the_week_figures_agree_with_compute_kpis(tmp_path):
    acc = people(Account())
    won_deals(acc, [(1, 101, W46, 5, 100), (2, 102, W47, 4, 250)])
    ctx = acc.context(tmp_path)
    r = compute_drivers(ctx)
    assert r["average_check"]["value"] == compute_kpis(ctx)["kpis"]["average_check"]["team"]["avg_check"]
    assert r["average_check"]["previous"] == compute_kpis(ctx, ctx.week.shift(-1))["kpis"]["average_check"]["team"][
        "avg_check"]
