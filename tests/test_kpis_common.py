"""Common rules of the KPI contract (§0, §9) on hand-built accounts, through the store."""

from __future__ import annotations

import numpy as np

from kpi_builders import LOST, WON, Account, at
from kpi_lib.kpis import block_detail, compute_kpis, data_quality
from kpi_lib.kpis.facts import facts_of
from kpi_lib.kpis.history import build_history
from kpi_lib.store import Store


def team_of(result, block):
    return result["kpis"][block]["team"]


def manager_of(result, block, uid):
    return result["kpis"][block]["by_manager"][str(uid)]


def people(acc: Account) -> None:
    acc.user(1, "Supervisor", admin=True)
    acc.user(101, "Anna")
    acc.user(102, "Boris")
    acc.user(103, "Vera", active=False)


def test_owner_at_close_after_reassignment(tmp_path):
    acc = Account()
    people(acc)
    # lead 1: 101 -> 102 before the close, won under 102, then handed to 103 after the close
    acc.lead(1, 103, at("2026-11-16 10:00"), status=WON, closed=at("2026-11-18 12:00"), price=100)
    acc.reassign(1, at("2026-11-17 10:00"), 101, 102)
    acc.reassign(1, at("2026-11-19 10:00"), 102, 103)
    # lead 2: two changes at the same second after the close keep the API's order: 101 -> 102, 102 -> 103
    acc.lead(2, 103, at("2026-11-16 10:00"), status=WON, closed=at("2026-11-18 12:00"), price=50)
    acc.reassign(2, at("2026-11-20 10:00"), 101, 102)
    acc.reassign(2, at("2026-11-20 10:00"), 102, 103)
    # lead 3: a change at the very second of the close is not "after" it: the owner is value_after
    acc.lead(3, 102, at("2026-11-16 10:00"), status=WON, closed=at("2026-11-18 12:00"), price=10)
    acc.reassign(3, at("2026-11-18 12:00"), 101, 102)
    r = compute_kpis(acc.context(tmp_path))
    assert manager_of(r, "average_check", 102)["won"] == 2  # leads 1 and 3
    assert manager_of(r, "average_check", 102)["won_revenue"] == 100 + 10
    assert manager_of(r, "average_check", 101)["won"] == 1  # lead 2
    assert manager_of(r, "average_check", 103)["won"] == 0  # inactive, still listed
    assert {m["user_id"]: m["active"] for m in r["managers"]} == {101: True, 102: True, 103: False}
    assert team_of(r, "average_check")["won"] == 3


def test_contact_calls_map_to_leads_with_the_ten_minute_rule(tmp_path):
    acc = Account()
    people(acc)
    acc.contact(501, 101)
    acc.contact(502, 101)
    acc.lead(11, 101, at("2026-11-16 10:00"), contacts=[501])
    acc.lead(12, 102, at("2026-11-17 10:00"), contacts=[501])
    acc.lead(13, 101, at("2026-11-10 10:00"), status=LOST, closed=at("2026-11-16 09:00"), contacts=[502])
    c_540 = acc.call(at("2026-11-17 09:51"), 102, contact=501)  # 540 s before lead 12: lead 12 (owner = caller)
    c_660 = acc.call(at("2026-11-17 09:49"), 102, contact=501)  # 660 s before: only lead 11 is a candidate
    c_other = acc.call(at("2026-11-17 11:00"), 103, contact=501)  # no owner match: latest created, lead 12
    c_owner = acc.call(at("2026-11-17 11:00"), 101, contact=501)  # owner match wins over the later lead
    c_closed = acc.call(at("2026-11-16 10:00"), 101, contact=502)  # its only lead closed at 09:00: unmapped
    ctx = acc.context(tmp_path)
    with Store.open(tmp_path, "test") as store:  # every call's lead, as the history facts map it
        calls = store.con.sql(f"SELECT * FROM {build_history(store.con)['calls']}").df().set_index("id")
    assert calls.loc[c_540, "lead_id"] == 12
    assert calls.loc[c_660, "lead_id"] == 11
    assert calls.loc[c_other, "lead_id"] == 12
    assert calls.loc[c_owner, "lead_id"] == 11
    assert np.isnan(calls.loc[c_closed, "lead_id"])
    unmapped = data_quality(ctx)["unmapped_calls"]
    assert unmapped["call_id"].tolist() == [c_closed]
    # the call 540 s before lead 12 was created gives it stl = 0 (§9)
    detail = block_detail(ctx, "speed_to_lead").set_index("lead_id")
    assert detail.loc[12, "stl_min"] == 0.0
    # the unmapped call still counts for the caller's productivity
    r = compute_kpis(ctx)
    assert manager_of(r, "productivity", 101)["connected_calls"] == 2  # c_owner + c_closed


def test_duplicate_uniq_is_dropped_across_lead_and_contact_notes(tmp_path):
    acc = Account()
    people(acc)
    acc.contact(501, 101)
    acc.lead(11, 101, at("2026-11-16 10:00"), contacts=[501])
    acc.call(at("2026-11-17 10:00"), 101, lead=11, uniq="same", duration=60)
    acc.call(at("2026-11-17 10:01"), 101, contact=501, uniq="same", duration=600)  # later copy: dropped
    acc.call(at("2026-11-17 12:00"), 101, lead=11, uniq="tie", duration=120, note_id=70002)
    acc.call(at("2026-11-17 12:00"), 101, lead=11, uniq="tie", duration=240, note_id=70001)  # lower id kept
    acc.call(at("2026-11-17 13:00"), 101, lead=11, uniq="", duration=30, note_id=70010)  # empty uniq: kept
    acc.items["lead_notes"][-1]["params"]["uniq"] = ""
    acc.call(at("2026-11-17 13:00"), 101, lead=11, duration=30, note_id=70011)
    acc.items["lead_notes"][-1]["params"].pop("uniq")
    r = compute_kpis(acc.context(tmp_path))
    prod = manager_of(r, "productivity", 101)
    assert prod["connected_calls"] == 4
    assert prod["talk_minutes"] == (60 + 240 + 30 + 30) / 60


def test_connected_rule_when_call_status_is_missing(tmp_path):
    acc = Account()
    people(acc)
    acc.lead(11, 101, at("2026-11-16 10:00"))
    acc.call(at("2026-11-17 10:00"), 101, lead=11, status=None, duration=19)  # attempt
    acc.call(at("2026-11-17 11:00"), 101, lead=11, status=None, duration=20)  # connected
    acc.call(at("2026-11-17 12:00"), 101, lead=11, status=8, duration=20)  # undefined status: by duration
    acc.call(at("2026-11-17 13:00"), 101, lead=11, status=8, duration=19)  # attempt
    acc.call(at("2026-11-17 14:00"), 101, lead=11, status=4, duration=0)  # conversation took place
    acc.call(at("2026-11-17 15:00"), 101, lead=11, status=6, duration=300)  # no answer: attempt
    acc.call(at("2026-11-17 16:00"), 101, lead=11, status=None, duration=None)  # nothing: attempt
    ctx = acc.context(tmp_path)
    r = compute_kpis(ctx)
    assert manager_of(r, "productivity", 101)["connected_calls"] == 3
    assert manager_of(r, "productivity", 101)["talk_minutes"] == (20 + 20 + 0) / 60
    silent = data_quality(ctx)["calls_without_status"]
    assert silent["duration"].tolist() == [19, 20, 0]
    assert silent["connected"].tolist() == [False, True, False]


def test_caller_falls_back_to_created_by(tmp_path):
    acc = Account()
    people(acc)
    acc.lead(11, 101, at("2026-11-16 10:00"))
    acc.call(at("2026-11-17 10:00"), 0, lead=11, created_by=102)  # responsible 0: the creator called
    r = compute_kpis(acc.context(tmp_path))
    assert manager_of(r, "productivity", 102)["connected_calls"] == 1
    assert team_of(r, "productivity")["connected_calls"] == 1


def test_2024_12_30_is_in_2025_w01(tmp_path):
    acc = Account()
    people(acc)
    acc.lead(1, 101, at("2024-12-20 10:00"), status=WON, closed=at("2024-12-30 10:00"), price=70)
    acc.lead(2, 101, at("2024-12-20 10:00"), status=WON, closed=at("2024-12-29 23:59"), price=30)
    ctx = acc.context(tmp_path, week="2025-W01")
    r = compute_kpis(ctx)
    assert r["week"] == "2025-W01"
    assert manager_of(r, "average_check", 101)["won_revenue"] == 70
    assert compute_kpis(ctx, ctx.week.shift(-1))["week"] == "2024-W52"
    assert manager_of(compute_kpis(ctx, ctx.week.shift(-1)), "average_check", 101)["won_revenue"] == 30


def test_report_timezone_other_than_the_accounts(tmp_path):
    acc = Account(tz="Europe/Moscow")
    people(acc)
    # Sunday 2026-11-22 20:00 in Moscow is Monday 2026-11-23 03:00 in Vladivostok (UTC+10)
    acc.lead(1, 101, at("2026-11-16 10:00"), status=WON, closed=at("2026-11-22 20:00"), price=100)
    moscow = compute_kpis(acc.context(tmp_path / "msk"))
    assert moscow["timezone"] == "Europe/Moscow"
    assert moscow["as_of"] == "2026-11-23T00:00:00+03:00"
    assert team_of(moscow, "average_check")["won"] == 1
    vlad = acc.context(tmp_path / "vvo", timezone="Asia/Vladivostok")
    r = compute_kpis(vlad)
    assert r["timezone"] == "Asia/Vladivostok"
    assert r["as_of"] == "2026-11-23T00:00:00+10:00"
    assert team_of(r, "average_check")["won"] == 0
    assert team_of(compute_kpis(vlad, vlad.week.shift(1)), "average_check")["won"] == 1
    closed = block_detail(vlad, "average_check", vlad.week.shift(1))["closed_at"].iloc[0]
    assert closed.isoformat() == "2026-11-23T03:00:00+10:00"


def test_account_without_timezone_reports_in_utc(tmp_path):
    acc = Account(tz=None)
    people(acc)
    r = compute_kpis(acc.context(tmp_path))
    assert r["timezone"] == "UTC"
    assert r["as_of"] == "2026-11-23T00:00:00+00:00"


def test_deleted_and_other_pipeline_leads_count_only_as_activity(tmp_path):
    acc = Account()
    people(acc)
    acc.lead(1, 101, at("2026-11-16 10:00"), status=WON, closed=at("2026-11-17 10:00"), price=10, deleted=True)
    acc.lead(2, 101, at("2026-11-16 10:00"), status=WON, closed=at("2026-11-17 10:00"), price=20, pipeline=2)
    acc.lead(3, 101, at("2026-11-16 10:00"), status=WON, closed=at("2026-11-17 10:00"), price=40)
    acc.call(at("2026-11-17 10:00"), 101, lead=1)
    acc.call(at("2026-11-18 10:00"), 101, lead=2)
    acc.move(2, at("2026-11-19 10:00"), 101, 40, 50, old_pipeline=2)
    ctx = acc.context(tmp_path, pipelines=[1])
    r = compute_kpis(ctx)
    assert manager_of(r, "average_check", 101)["won"] == 1
    assert manager_of(r, "average_check", 101)["won_revenue"] == 40
    prod = manager_of(r, "productivity", 101)
    assert prod["connected_calls"] == 2
    assert prod["active_days"] == 3  # Tue and Wed calls, Thu status change
    assert manager_of(r, "cost_of_service", 101)["worked_leads"] == 0
    assert manager_of(r, "first_call", 101)["fcr_eligible"] == 0


def test_lead_deleted_by_event_is_not_counted(tmp_path):
    acc = Account()
    people(acc)
    acc.lead(1, 101, at("2026-11-16 10:00"), status=WON, closed=at("2026-11-17 10:00"), price=10)
    acc.lead(2, 101, at("2026-11-16 10:00"), status=WON, closed=at("2026-11-17 10:00"), price=20)
    acc.event("lead_deleted", 1, at("2026-11-20 10:00"), 101)
    acc.event("lead_deleted", 2, at("2026-11-20 10:00"), 101)
    acc.event("lead_restored", 2, at("2026-11-21 10:00"), 101)
    r = compute_kpis(acc.context(tmp_path))
    assert manager_of(r, "average_check", 101)["won_revenue"] == 20


def test_positions_agree_with_a_plain_search_on_both_paths():
    """Managers are found by a table when their ids are close and by a binary search when they are far
    apart; both give every value's index among the ids, -1 for other values, NaN and fractions."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from kpi_lib.kpis.common import member, positions

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(0, 40), min_size=1, max_size=12, unique=True),
           st.lists(st.one_of(st.integers(-5, 50).map(float), st.just(np.nan), st.just(3.5)), max_size=60),
           st.sampled_from([0, 10_000_000, 1 << 30]))
    def check(offsets, values, spread):
        ids = np.array(sorted(10_400_000 + o * (1 + spread) for o in offsets), dtype="float64")
        vals = np.array([10_400_000 + v * (1 + spread) for v in values], dtype="float64")  # NaN stays NaN
        expected = np.array([ids.tolist().index(v) if v in ids.tolist() else -1 for v in vals.tolist()], dtype="int64")
        np.testing.assert_array_equal(positions(ids, vals), expected)
        np.testing.assert_array_equal(member(vals, ids[::-1]), expected >= 0)

    check()
    assert positions(np.array([]), np.array([1.0, np.nan])).tolist() == [-1, -1]


def test_local_dates_agree_with_each_instants_own_conversion():
    """Local dates come from the zone's offset per hour: they are each instant's own local date in
    zones with DST, with a change of offset inside an hour (Tehran in 2021: at local midnight, at
    19:30 UTC), with offsets of 45 minutes, before 1970, for missing and fractional seconds."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    import pandas as pd
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from kpi_lib.periods import local_dates

    zones = ["Europe/Moscow", "Europe/Berlin", "America/New_York", "Asia/Tehran", "Australia/Lord_Howe",
             "Pacific/Chatham", "Asia/Kathmandu", "UTC"]
    changes = {}  # each zone's instants of 2021 and 2026 with another offset than a second before
    for name in zones:
        tz, found = ZoneInfo(name), []
        for year in (2021, 2026):
            start = int(datetime(year, 1, 1, tzinfo=timezone.utc).timestamp())
            offset = [datetime.fromtimestamp(start + 900 * i, tz).utcoffset() for i in range(366 * 96)]
            found += [start + 900 * i for i in range(1, len(offset)) if offset[i] != offset[i - 1]]
        changes[name] = found
    assert any(c % 3600 == 1800 for c in changes["Asia/Tehran"])

    def expected(seconds, tz):
        return [None if v != v else datetime.fromtimestamp(v, tz).date() for v in seconds]

    @settings(max_examples=150, deadline=None)
    @given(st.sampled_from(zones), st.lists(st.one_of(
        st.integers(-3 * 10**9, 3 * 10**9).map(float), st.integers(-7200, 7200).map(float), st.just(np.nan),
        st.just(1.79e9 + 0.5)), max_size=40), st.lists(st.integers(-5400, 5400), max_size=20))
    def check(name, seconds, near):
        tz = ZoneInfo(name)
        around = [float(c + d) for c in changes[name] for d in near]
        values = np.array(seconds + around, dtype="float64")
        got = local_dates(values, tz)
        assert [None if d is pd.NaT else d.date() for d in got] == expected(values, tz)

    check()
    busy = np.arange(1.7e9, 1.7e9 + 4 * 365 * 86400, 3607.0)  # four years of DST changes in one table
    for name in zones:
        assert [d.date() for d in local_dates(busy, ZoneInfo(name))] == expected(busy, ZoneInfo(name))


def test_local_dates_in_sql_agree_with_each_instants_own_conversion():
    """The local dates a query computes from the zone's offset changes over a window (active days,
    worked leads' weeks) are each instant's own local date: around every change of offset of
    2021 and 2026 (Tehran's inside an hour, Lord Howe's half hour, Chatham's 45 minutes), and
    through the whole window, whatever second the window starts at."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    import duckdb
    import pandas as pd

    from kpi_lib.kpis.facts import _local_day
    from kpi_lib.periods import offset_changes

    con = duckdb.connect()
    for name in ("Europe/Moscow", "Europe/Berlin", "America/New_York", "Asia/Tehran", "Australia/Lord_Howe",
                 "Pacific/Chatham", "Asia/Kathmandu", "UTC"):
        tz = ZoneInfo(name)
        for year in (2021, 2026):
            lo = datetime(year, 1, 1, tzinfo=timezone.utc).timestamp() + 1234.0
            hi = datetime(year + 1, 1, 1, tzinfo=timezone.utc).timestamp()
            changes = offset_changes(lo, hi, tz)
            seen = [datetime.fromtimestamp(lo + 900 * i, tz).utcoffset() for i in range(int((hi - lo) // 900))]
            assert len(changes) - 1 == sum(a != b for a, b in zip(seen, seen[1:]))  # every change, once
            near = [float(s + d) for s, _ in changes for d in (-3601, -3600, -1, 0, 1, 1799, 1800, 3599, 3600)]
            t = np.array([v for v in near + list(np.arange(lo, hi, 3607.0)) if lo <= v < hi])
            con.register("instants", pd.DataFrame({"t": t}))
            days = con.sql(f"SELECT {_local_day('t', changes)} AS day FROM instants").df()["day"].to_numpy()
            expected = [(datetime.fromtimestamp(v, tz).date() - datetime(1970, 1, 1).date()).days for v in t]
            assert days.tolist() == expected, (name, year)


def test_kept_item_rows_are_the_callers_own_to_change(tmp_path):
    """Item rows kept per context (whole, or a week cut out of the span) are shared with no caller:
    whatever one caller writes into its rows, the next caller gets the rows as built."""
    import pandas as pd

    from kpi_lib.kpis.common import make_span
    from kpi_lib.kpis.productivity import active_days

    acc = Account()
    people(acc)
    acc.lead(11, 101, at("2026-11-09 10:00"))
    for day in ("2026-11-10", "2026-11-17", "2026-11-18"):
        acc.call(at(f"{day} 10:00"), 101, lead=11, duration=60)
    ctx = acc.context(tmp_path)
    span, week = make_span(ctx, [ctx.week.shift(-1), ctx.week]), make_span(ctx, [ctx.week])
    whole, one = active_days(ctx, span), active_days(ctx, week)
    expected = whole.copy(deep=True), one.copy(deep=True)
    assert len(whole) == 3 and len(one) == 2
    for rows in (whole, one):
        rows["w"] = 7
        rows.loc[rows.index[0], "m"] = 0
        rows.pop("date")
    pd.testing.assert_frame_equal(active_days(ctx, span), expected[0])
    pd.testing.assert_frame_equal(active_days(ctx, week), expected[1])


def test_detail_rows_are_ordered_as_a_stable_sort_orders_them():
    """A detail's rows are ordered through np.lexsort of each key column's values and missing flags:
    the same order as a stable ``sort_values`` by those columns, missing values last, ties in the
    rows' own order, for ids, numbers with NaN and zoned times with NaT."""
    import types

    import pandas as pd

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from kpi_lib.kpis.detail import finish_rows

    users = pd.DataFrame({"id": [1, 2, 3], "name": pd.array(["Анна", None, "Борис"], dtype="str")})
    ctx = types.SimpleNamespace(frames={"users": users}, account={"subdomain": None})

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.tuples(st.integers(1, 4), st.one_of(st.integers(0, 3).map(float), st.just(np.nan)),
                              st.one_of(st.integers(1_790_000_000, 1_790_000_003).map(float), st.just(np.nan))),
                    max_size=40), st.sampled_from([["manager", "at", "n"], ["manager", "n", "at"], ["at", "row"]]))
    def check(items, order):
        manager = np.array([m for m, _, _ in items], dtype="int64")
        rows = {"row": np.arange(len(items)), "manager": manager, "n": np.array([n for _, n, _ in items]),
                "at": pd.to_datetime(np.array([t for _, _, t in items], dtype="float64"), unit="s",
                                     utc=True).tz_convert("Europe/Moscow").array}
        got = finish_rows(ctx, rows, order, entity_type=None)
        frame = pd.DataFrame(rows)
        want = frame.sort_values(order, ignore_index=True, kind="stable")
        assert got["row"].tolist() == want["row"].tolist()
        names = {1: "Анна", 3: "Борис"}
        assert [x if isinstance(x, str) else None for x in got["manager_name"]] == [names.get(m) for m in got["manager"]]

    check()
