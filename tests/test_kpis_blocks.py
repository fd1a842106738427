"""Every key of every KPI block against hand-computed values (kpi-definitions.md §1–§5).

The accounts are built item by item, written to a real store and read back; the expected
figures are written as the arithmetic that gives them.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from kpi_builders import LOST, NEW, OFFER, TALK, WON, Account, at
from kpi_lib.config import load_settings
from kpi_lib.kpis import KEYS, block_detail, compute_kpis, data_quality, load_context


def people(acc: Account) -> None:
    acc.user(1, "Supervisor", admin=True)
    acc.user(101, "Anna")
    acc.user(102, "Boris")


def figures(result, block, who):
    table = result["kpis"][block]
    return table["team"] if who == "team" else table["by_manager"][str(who)]


def check(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for key, value in expected.items():
        if value is None or isinstance(value, bool):
            assert actual[key] is value, key
        else:
            assert actual[key] == pytest.approx(value), key
            assert type(actual[key]) is type(value), key


# --- §1 customer satisfaction ------------------------------------------------------------------

def test_customer_satisfaction(tmp_path):
    acc = Account()
    people(acc)
    for c in (1001, 1002, 1003, 1004, 1005):
        acc.contact(c, 101)
    week = at("2026-11-18 12:00")
    acc.lead(100, 101, at("2026-10-01 10:00"), status=WON, closed=at("2026-10-02 10:00"), contacts=[1001])  # earlier
    acc.lead(108, 102, at("2026-10-01 10:00"), status=WON, closed=at("2026-10-02 10:00"), contacts=[1004],
             deleted=True)  # an earlier win that does not count
    acc.lead(1, 101, week, status=WON, closed=week, contacts=[1001], csat=5, nps=10)
    acc.lead(2, 101, week, status=WON, closed=week + 1, contacts=[1002], csat="4,0", nps=9)
    acc.lead(3, 101, week, status=WON, closed=week + 2, csat=2, nps="6")
    acc.lead(4, 101, week, status=WON, closed=week + 3, contacts=[1003], csat=7, nps=0)
    acc.lead(5, 102, week, status=WON, closed=week + 4, contacts=[1004, 1001], csat=3, nps=11)
    acc.lead(9, 102, week, status=WON, closed=week + 5, contacts=[(1005, False), (1001, True)], nps=9)
    acc.lead(6, 101, week, status=WON, closed=at("2026-11-25 10:00"), contacts=[1002])  # C2's later win
    acc.lead(7, 101, at("2026-10-01 10:00"), status=LOST, closed=at("2026-10-02 10:00"), contacts=[1003])
    acc.lead(20, 1, week, status=WON, closed=week, csat=1)  # the supervisor's win: no manager's, not the team's
    acc.lead(21, 101, week, status=WON, closed=week, csat=1, deleted=True)
    r = compute_kpis(acc.context(tmp_path, nps_field="nps"))
    check(figures(r, "customer_satisfaction", 101), {
        "won": 4, "responses": 3,  # leads 1, 2, 3 (lead 4's 7 is out of range)
        "csat_pct": 100 * 2 / 3, "csat_mean": (5 + 4 + 2) / 3, "coverage_pct": 100 * 3 / 4,
        "repeat_win_share_pct": 100 * 1 / 3,  # with a contact: 1, 2, 4; repeat: 1 (C1 won in October)
        "nps": 100 * (2 - 2) / 4,  # 10, 9 promoters; 6, 0 detractors
    })
    check(figures(r, "customer_satisfaction", 102), {
        "won": 2, "responses": 1, "csat_pct": 100 * 0 / 1, "csat_mean": 3.0, "coverage_pct": 100 * 1 / 2,
        "repeat_win_share_pct": 100 * 1 / 2,  # lead 9's main contact is C1; lead 5's main C4 won only deleted
        "nps": 100 * (1 - 0) / 1,  # lead 5's 11 is out of range; lead 9: 9
    })
    check(figures(r, "customer_satisfaction", "team"), {
        "won": 6, "responses": 4, "csat_pct": 100 * 2 / 4, "csat_mean": (5 + 4 + 2 + 3) / 4,
        "coverage_pct": 100 * 4 / 6, "repeat_win_share_pct": 100 * 2 / 5, "nps": 100 * (3 - 2) / 5,
    })
    without_nps = compute_kpis(acc.context(tmp_path / "plain"))
    assert "nps" not in figures(without_nps, "customer_satisfaction", "team")


def test_csat_field_by_id_and_empty_week(tmp_path):
    acc = Account()
    people(acc)
    acc.lead(1, 101, at("2026-11-18 10:00"), status=WON, closed=at("2026-11-18 12:00"), csat=4)
    r = compute_kpis(acc.context(tmp_path, csat_field=500))
    assert figures(r, "customer_satisfaction", 101)["csat_pct"] == 100.0
    check(figures(r, "customer_satisfaction", 102), {
        "won": 0, "responses": 0, "csat_pct": None, "csat_mean": None, "coverage_pct": None,
        "repeat_win_share_pct": None})


# --- §2 cost of service ----------------------------------------------------------------------------

def test_cost_of_service_escalations(tmp_path):
    acc = Account()
    people(acc)
    acc.contact(1001, 101)
    old = at("2026-11-02 10:00")
    for lead, owner in ((1, 101), (2, 1), (3, 101), (4, 101), (5, 101), (6, 101), (8, 102)):
        acc.lead(lead, owner, old)
    acc.lead(9, 101, old, deleted=True)
    acc.lead(7, 101, old, status=WON, closed=at("2026-11-20 10:00"), price=500)
    # E1: 101 asks the supervisor in a task on lead 1 (a task on a deleted lead or a contact is no E1)
    acc.task(1, at("2026-11-16 11:00"), at("2026-11-17 11:00"), entity_id=1, created_by=101)
    acc.task(1, at("2026-11-16 11:00"), at("2026-11-17 11:00"), entity_id=9, created_by=101)
    acc.task(1, at("2026-11-16 11:00"), at("2026-11-17 11:00"), entity_type="contacts", entity_id=1001,
             created_by=101)
    # E2: the supervisor takes lead 2 over from 101; lead 3 passing from 102 to 101 is no E2
    acc.reassign(2, at("2026-11-17 12:00"), 101, 1, by=1)
    acc.reassign(3, at("2026-11-20 12:00"), 102, 101, by=1)
    # E3: the supervisor's connected 300 s call on lead 3, owned by 102 at that time; an attempt is no E3
    acc.call(at("2026-11-18 12:00"), 1, lead=3, duration=300)
    acc.call(at("2026-11-18 13:00"), 1, lead=1, status=6, duration=0)
    # worked leads of 101: an attempt on 4, a status change on 5, a completed task on 6, a call on 1
    acc.call(at("2026-11-18 10:00"), 101, lead=4, status=6, duration=10)
    acc.move(5, at("2026-11-18 10:00"), 101, NEW, TALK)
    t6 = acc.task(101, at("2026-11-16 09:00"), at("2026-11-25 10:00"), entity_id=6, completed=True, result="ok done")
    acc.complete(t6, at("2026-11-19 10:00"), 101)
    acc.call(at("2026-11-18 11:00"), 101, lead=1)
    # worked leads of 102: a call on 3 and on 4, a completed task on 8 (completion time from updated_at)
    acc.call(at("2026-11-18 09:00"), 102, lead=3, status=6, duration=0)
    acc.call(at("2026-11-18 09:30"), 102, lead=4, status=6, duration=0)
    acc.task(102, at("2026-11-10 09:00"), at("2026-12-01 10:00"), entity_id=8, completed=True,
             updated=at("2026-11-19 15:00"), result="all done")
    r = compute_kpis(acc.context(tmp_path))
    check(figures(r, "cost_of_service", 101), {
        "escalated_leads": 2,  # 1 (E1), 2 (E2)
        "worked_leads": 5,  # 4, 5, 6, 1 and the escalated 2
        "escalation_rate_pct": 100 * 2 / 5, "escalation_events": 2,
        "supervisor_minutes": 10 * 1 + 30 * 1.0, "won": 1, "cost_per_won_deal": 40 * 1500 / 60 / 1,
    })
    check(figures(r, "cost_of_service", 102), {
        "escalated_leads": 1, "worked_leads": 3,  # 3 (escalated too), 4, 8
        "escalation_rate_pct": 100 * 1 / 3, "escalation_events": 1, "supervisor_minutes": 300 / 60,
        "won": 0, "cost_per_won_deal": None,
    })
    check(figures(r, "cost_of_service", "team"), {
        "escalated_leads": 3, "worked_leads": 7,  # 1, 2, 3, 4, 5, 6, 8: lead 4 once
        "escalation_rate_pct": 100 * 3 / 7, "escalation_events": 3, "supervisor_minutes": 40 + 5.0,
        "won": 1, "cost_per_won_deal": 45 * 1500 / 60 / 1,
    })
    detail = block_detail(acc.context(tmp_path / "again"), "cost_of_service")
    assert sorted(detail["kind"]) == ["E1", "E2", "E3"]
    assert detail.set_index("kind").loc["E3", "minutes"] == 5.0
    custom = compute_kpis(acc.context(tmp_path / "rates", supervisor_hourly_rate=3000, minutes_per_escalation_task=5,
                                      minutes_per_takeover=60))
    assert figures(custom, "cost_of_service", 101)["supervisor_minutes"] == 5 * 1 + 60 * 1
    assert figures(custom, "cost_of_service", 101)["cost_per_won_deal"] == 65 * 3000 / 60 / 1


# --- §3 first-call quality -----------------------------------------------------------------------------

def first_call_account() -> Account:
    acc = Account()
    people(acc)
    acc.contact(1006, 101)
    # F1 (101): an attempt, then a connected call, then an advance: resolved; stl 09:00 -> 09:10 = 10
    acc.lead(1, 101, at("2026-11-16 09:00"))
    acc.call(at("2026-11-16 09:10"), 101, lead=1, status=6, duration=0)
    acc.call(at("2026-11-17 10:00"), 101, lead=1)
    acc.move(1, at("2026-11-18 10:00"), 101, NEW, TALK)
    # F2 (101): created 17:58, called 09:03 next day: stl 2 + 3 = 5; the customer calls back: unresolved
    acc.lead(2, 101, at("2026-11-16 17:58"))
    acc.call(at("2026-11-17 09:03"), 101, lead=2)
    acc.move(2, at("2026-11-18 10:00"), 101, NEW, TALK)
    acc.call(at("2026-11-19 10:00"), 101, lead=2, kind="call_in", status=6, duration=0)
    # F4 (102): created Saturday, never called
    acc.lead(4, 102, at("2026-11-21 10:00"))
    # F5 (102): the customer's connected call 30 min after creation; advanced; next call after the window
    acc.lead(5, 102, at("2026-11-18 12:00"))
    acc.call(at("2026-11-18 12:30"), 102, lead=5, kind="call_in")
    acc.move(5, at("2026-11-19 10:00"), 102, NEW, OFFER)
    acc.call(at("2026-11-25 12:31"), 102, lead=5)
    # F6 (101's lead, first reached by 102 through the contact): only a backward move: unresolved
    acc.lead(6, 101, at("2026-11-02 10:00"), status=OFFER, contacts=[1006])
    acc.call(at("2026-11-19 11:00"), 102, contact=1006)
    acc.move(6, at("2026-11-20 10:00"), 101, OFFER, TALK)
    acc.move(6, at("2026-11-20 11:00"), 101, TALK, 50, new_pipeline=2)
    # F8 (102): created the week before, won within the window: resolved
    acc.lead(8, 102, at("2026-11-10 10:00"), status=WON, closed=at("2026-11-21 10:00"), price=10)
    acc.call(at("2026-11-20 10:00"), 102, lead=8)
    acc.move(8, at("2026-11-21 10:00"), 102, TALK, WON)
    return acc


def test_first_call_quality(tmp_path):
    acc = first_call_account()
    r = compute_kpis(acc.context(tmp_path))
    check(figures(r, "first_call", 101), {
        "fcr_eligible": 2, "fcr_resolved": 1, "fcr_pct": 100 * 1 / 2, "fcr_final": True,
        "first_call_connect_pct": 100 * 1 / 2,  # F1's first call was an attempt, F2's connected
        "new_leads": 2, "uncalled_leads": 0, "stl_median_min": (10 + 5) / 2, "stl_within_5_pct": 100 * 1 / 2,
    })
    check(figures(r, "first_call", 102), {
        "fcr_eligible": 3, "fcr_resolved": 2, "fcr_pct": 100 * 2 / 3, "fcr_final": True,  # F5, F6, F8
        "first_call_connect_pct": 100 * 3 / 3,
        "new_leads": 2, "uncalled_leads": 1, "stl_median_min": 30.0, "stl_within_5_pct": 100 * 0 / 2,
    })
    check(figures(r, "first_call", "team"), {
        "fcr_eligible": 5, "fcr_resolved": 3, "fcr_pct": 100 * 3 / 5, "fcr_final": True,
        "first_call_connect_pct": 100 * 4 / 5, "new_leads": 4, "uncalled_leads": 1,
        "stl_median_min": 10.0,  # median of 10, 5, 30
        "stl_within_5_pct": 100 * 1 / 4,
    })


def test_first_call_before_the_window_closes(tmp_path):
    acc = first_call_account()
    # now is Wednesday 12:10 of the week: as_of = now, so F5 (created 12:00, called 12:30) is uncalled;
    # the other rules read all synced data, as a re-run with a pinned as-of would
    r = compute_kpis(acc.context(tmp_path, now="2026-11-18 12:10"))
    assert r["as_of"] == "2026-11-18T12:10:00+03:00"
    check(figures(r, "first_call", 102), {
        "fcr_eligible": 3, "fcr_resolved": 2, "fcr_pct": 100 * 2 / 3, "fcr_final": False,
        "first_call_connect_pct": 100.0, "new_leads": 2, "uncalled_leads": 2, "stl_median_min": None,
        "stl_within_5_pct": 0.0,
    })
    assert figures(r, "first_call", 101)["fcr_final"] is False
    # the window of W47 closes at the end of W47 + 7 days
    assert figures(compute_kpis(acc.context(tmp_path / "a", now="2026-11-29 23:59")), "first_call",
                   "team")["fcr_final"] is False
    assert figures(compute_kpis(acc.context(tmp_path / "b", now="2026-11-30 00:00")), "first_call",
                   "team")["fcr_final"] is True


def test_fcr_final_follows_the_last_sync_whatever_as_of_pins(tmp_path):
    """§3: final once the store's last sync is at or after the end of W + window (2026-11-30 00:00)."""
    acc = first_call_account()
    msk = ZoneInfo("Europe/Moscow")
    for synced, final in ((datetime(2026, 11, 29, 23, 59, tzinfo=msk), False),
                          (datetime(2026, 11, 30, 0, 0, tzinfo=msk), True)):
        data = acc.write(tmp_path / str(final), synced=synced)
        for pinned in ("2026-11-20T12:00:00+03:00", "2026-12-31T12:00:00+03:00"):
            ctx = load_context(load_settings(overrides={"data_dir": str(data), "account": "test",
                                                        "week": "2026-W47", "as_of": pinned}))
            assert figures(compute_kpis(ctx), "first_call", "team")["fcr_final"] is final, (synced, pinned)


def test_speed_to_lead_across_a_weekend_and_outside_business_hours(tmp_path):
    acc = Account()
    people(acc)
    acc.lead(1, 101, at("2026-11-13 17:15"))  # Friday 17:15, called Sunday 21:00: 45 business minutes
    acc.call(at("2026-11-15 21:00"), 101, lead=1)
    acc.lead(2, 101, at("2026-11-10 20:00"))  # Tuesday night, called Wednesday 09:20: 20 minutes
    acc.call(at("2026-11-11 09:20"), 101, lead=2)
    acc.lead(3, 101, at("2026-11-14 10:00"))  # Saturday, called Sunday: 0 minutes
    acc.call(at("2026-11-15 12:00"), 101, lead=3)
    acc.lead(4, 102, at("2026-11-12 10:00"))  # Thursday 10:00, reassigned, called by 102 on Friday 10:00
    acc.reassign(4, at("2026-11-12 11:00"), 101, 102)
    acc.call(at("2026-11-13 10:00"), 102, lead=4)
    acc.lead(5, 102, at("2026-11-12 10:00"))  # uncalled by the end of the week, handed to 102 later
    acc.reassign(5, at("2026-11-20 11:00"), 101, 102)
    acc.call(at("2026-11-17 09:00"), 102, lead=5)
    acc.lead(6, 101, at("2026-11-13 19:00"))  # Friday night, called Monday: after the week, so uncalled
    acc.call(at("2026-11-16 09:04"), 101, lead=6)
    ctx = acc.context(tmp_path, week="2026-W46")
    r = compute_kpis(ctx)
    check({k: v for k, v in figures(r, "first_call", 101).items() if k.startswith(("new", "unc", "stl"))}, {
        "new_leads": 5, "uncalled_leads": 2,  # leads 5 and 6, owned by 101 at as_of
        "stl_median_min": 20.0,  # median of 45, 20, 0
        "stl_within_5_pct": 100 * 1 / 5,
    })
    assert figures(r, "first_call", 102)["new_leads"] == 1  # lead 4, owned by 102 at its first call
    assert figures(r, "first_call", 102)["stl_median_min"] == 9 * 60  # Thu 10:00 -> Fri 10:00
    detail = block_detail(ctx, "speed_to_lead").set_index("lead_id")
    assert detail.loc[1, "stl_min"] == 45.0 and detail.loc[3, "stl_min"] == 0.0
    assert detail.loc[6, "uncalled"] and pd.isna(detail.loc[6, "t1"])
    custom = compute_kpis(acc.context(tmp_path / "hours", week="2026-W46",
                                      business_hours={"days": [1, 2, 3, 4, 5, 6, 7], "start": "08:00",
                                                      "end": "20:00"}))
    # every day 08:00-20:00: lead 1 = 165 + 720 + 720, lead 2 = 80, lead 3 = 600 + 240
    assert figures(custom, "first_call", 101)["stl_median_min"] == sorted([165 + 720 + 720, 80, 600 + 240])[1]


# --- §4 average check ----------------------------------------------------------------------------

def test_average_check(tmp_path):
    acc = Account()
    people(acc)
    day = at("2026-11-17 12:00")
    for lead, owner, price in ((1, 101, 100), (2, 101, 300), (3, 101, None), (4, 101, 0), (5, 102, 50),
                               (6, 102, 70), (7, 102, 1000)):
        acc.lead(lead, owner, day - 86400, status=WON, closed=day + lead, price=price)
    acc.lead(8, 101, day - 86400, status=LOST, closed=day, price=999)
    acc.lead(9, 102, day - 86400, status=WON, closed=day, price=5)
    acc.reassign(9, day + 3600, 101, 102)  # won under 101, handed to 102 afterwards
    acc.lead(10, 101, day - 86400, status=TALK, price=10)  # open: neither won nor lost
    r = compute_kpis(acc.context(tmp_path))
    check(figures(r, "average_check", 101), {
        "won": 5, "priced_won": 3, "avg_check": (100 + 300 + 5) / 3, "median_check": 100.0,
        "won_revenue": 100 + 300 + 0 + 0 + 5.0, "unpriced_share_pct": 100 * (5 - 3) / 5, "lost": 1,
        "win_rate_pct": 100 * 5 / (5 + 1),
    })
    check(figures(r, "average_check", 102), {
        "won": 3, "priced_won": 3, "avg_check": (50 + 70 + 1000) / 3, "median_check": 70.0,
        "won_revenue": 1120.0, "unpriced_share_pct": 0.0, "lost": 0, "win_rate_pct": 100.0,
    })
    check(figures(r, "average_check", "team"), {
        "won": 8, "priced_won": 6, "avg_check": (100 + 300 + 5 + 50 + 70 + 1000) / 6,
        "median_check": (70 + 100) / 2, "won_revenue": 1525.0, "unpriced_share_pct": 100 * 2 / 8, "lost": 1,
        "win_rate_pct": 100 * 8 / 9,
    })
    quality = data_quality(acc.context(tmp_path / "q"))
    assert sorted(quality["unpriced_wins"]["lead_id"]) == [3, 4]
    assert sorted(quality["won_without_contact"]["lead_id"]) == [1, 2, 3, 4, 5, 6, 7, 9]


# --- §5 productivity -------------------------------------------------------------------------------------

def test_productivity_seed_example(tmp_path):
    """Manager 1: check 100 at 5 calls a day; manager 2: 70 at 20 — 500 against 1400."""
    acc = Account()
    people(acc)
    acc.lead(1, 101, at("2026-11-16 10:00"), status=WON, closed=at("2026-11-17 18:00"), price=100)
    acc.lead(2, 102, at("2026-11-16 10:00"), status=WON, closed=at("2026-11-18 18:00"), price=70)
    for i in range(5):
        acc.call(at("2026-11-17 10:00") + 600 * i, 101, lead=1)
    for i in range(20):
        acc.call(at("2026-11-18 09:00") + 600 * i, 102, lead=2)
    r = compute_kpis(acc.context(tmp_path))
    check(figures(r, "productivity", 101), {
        "active_days": 1, "connected_calls": 5, "talk_minutes": 5 * 60 / 60, "revenue_per_active_day": 100 / 1,
        "calls_per_active_day": 5 / 1, "wins_per_100_calls": 100 * 1 / 5, "check_x_calls_per_day": 100 * 5.0,
    })
    check(figures(r, "productivity", 102), {
        "active_days": 1, "connected_calls": 20, "talk_minutes": 20.0, "revenue_per_active_day": 70.0,
        "calls_per_active_day": 20.0, "wins_per_100_calls": 100 * 1 / 20, "check_x_calls_per_day": 70 * 20.0,
    })
    assert figures(r, "productivity", 101)["check_x_calls_per_day"] == 500
    assert figures(r, "productivity", 102)["check_x_calls_per_day"] == 1400
    check(figures(r, "productivity", "team"), {
        "active_days": 2, "connected_calls": 25, "talk_minutes": 25.0, "revenue_per_active_day": 170 / 2,
        "calls_per_active_day": 25 / 2, "wins_per_100_calls": 100 * 2 / 25,
        "check_x_calls_per_day": (170 / 2) * (25 / 2),
    })


def test_active_days(tmp_path):
    acc = Account()
    people(acc)
    acc.contact(1001, 101)
    acc.lead(1, 101, at("2026-11-02 10:00"))
    acc.lead(2, 101, at("2026-11-02 10:00"), deleted=True)
    acc.call(at("2026-11-16 23:30"), 101, lead=1)  # Monday, late
    acc.call(at("2026-11-17 10:00"), 101, lead=1, status=6, duration=0)  # Tuesday: an attempt only
    acc.move(1, at("2026-11-18 10:00"), 101, NEW, TALK)  # Wednesday
    acc.call(at("2026-11-18 11:00"), 101, lead=2)  # Wednesday again, on a deleted lead: still work
    t = acc.task(101, at("2026-11-16 10:00"), at("2026-11-30 10:00"), entity_type="contacts", entity_id=1001,
                 completed=True, result="done well")
    acc.complete(t, at("2026-11-19 10:00"), 101)  # Thursday
    acc.task(101, at("2026-11-16 10:00"), at("2026-11-30 10:00"), entity_type=None, completed=True,
             updated=at("2026-11-20 10:00"), result="done well")  # Friday: a task on no entity
    acc.call(at("2026-11-18 12:00"), 102, lead=1)  # 102 on Wednesday
    acc.call(at("2026-11-22 12:00"), 1, lead=1)  # the supervisor: nobody's
    r = compute_kpis(acc.context(tmp_path))
    assert figures(r, "productivity", 101)["active_days"] == 4  # Mon, Wed, Thu, Fri (not Tue: an attempt)
    assert figures(r, "productivity", 101)["connected_calls"] == 2
    assert figures(r, "productivity", 102)["active_days"] == 1
    assert figures(r, "productivity", "team")["active_days"] == 4 + 1  # (manager, date) pairs: Wed twice
    days = block_detail(acc.context(tmp_path / "d"), "productivity")
    assert days.loc[days["manager"] == 101, "connected_calls"].tolist() == [1, 1, 0, 0]


def test_json_keys_and_types(tmp_path):
    acc = first_call_account()
    r = compute_kpis(acc.context(tmp_path, now="2026-11-18 12:10"))
    assert list(r) == ["week", "timezone", "currency", "as_of", "managers", "kpis"]
    assert r["currency"] == "RUB"
    assert [m["user_id"] for m in r["managers"]] == [101, 102]
    for block, keys in KEYS.items():
        expected = [k for k in keys if k != "nps"]
        table = r["kpis"][block]
        assert list(table) == ["team", "by_manager"]
        assert list(table["by_manager"]) == ["101", "102"]
        for row in [table["team"], *table["by_manager"].values()]:
            assert list(row) == expected  # due_today/due_tomorrow: now is inside the week
    past = compute_kpis(acc.context(tmp_path / "past"))
    assert "due_today" not in past["kpis"]["smart_audit"]["team"]
