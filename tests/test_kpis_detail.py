"""The items behind every figure (kpi-definitions.md §10), computed by hand on a built account.

One small week (2026-W47, now pinned to Friday 18:00) holds every FCR reason, each escalation
kind, an unresolved lead with two reasons, a contact call mapped to a lead, an uncalled lead,
won deals with and without a score, a lost deal and two audited tasks.  Every expected row
below is worked out from the items the test writes.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from kpi_builders import NEW, TALK, WON, LOST, Account, at
from kpi_lib.cli import main
from kpi_lib.errors import ConfigError
from kpi_lib.kpis import (DETAIL_BLOCKS, block_detail, compute_kpis, detail_csv, detail_records,
                          find_items_pulling_down)

NOW = "2026-11-20 18:00"  # Friday of W47: as_of
AS_OF = "2026-11-20T18:00:00+03:00"
URL = "https://testshop.amocrm.ru/leads/detail/{}"


def iso(local: str) -> str:
    return pd.Timestamp(local).isoformat().replace(" ", "T") + "+03:00"


def week_account() -> Account:
    acc = Account()
    acc.user(1, "Елена Смирнова", admin=True)
    acc.user(101, "Анна")
    acc.user(102, "Борис")
    # lead 1: first connected call Monday 10:00, advanced Tuesday: resolved
    acc.lead(1, 101, at("2026-11-16 09:58"), name="Кофемашины")
    acc.call(at("2026-11-16 10:00"), 101, lead=1)
    acc.move(1, at("2026-11-17 10:00"), 101, NEW, TALK)
    # lead 2: the customer called back on Tuesday at 15:20 (a missed call_in still counts)
    acc.lead(2, 101, at("2026-11-16 10:57"), name="Станки")
    acc.call(at("2026-11-16 11:00"), 101, lead=2)
    acc.call(at("2026-11-17 15:20"), 101, lead=2, kind="call_in", status=6, duration=0)
    acc.move(2, at("2026-11-18 10:00"), 101, NEW, TALK)
    # lead 3: a second connected call_out on Wednesday and no advance: two reasons
    acc.lead(3, 101, at("2026-11-16 11:50"), name="Вентиляторы")
    acc.call(at("2026-11-16 12:00"), 101, lead=3)
    acc.call(at("2026-11-17 12:00"), 101, lead=3, status=6, duration=0)  # an attempt: no reason
    acc.call(at("2026-11-18 12:00"), 101, lead=3)
    # lead 4: its first call is a call on its contact, mapped to it; no advance
    acc.contact(501, 102)
    acc.lead(4, 102, at("2026-11-17 09:00"), contacts=[501], name="Склад")
    acc.call(at("2026-11-17 09:30"), 102, contact=501)
    # lead 5: created Thursday 10:00, never called
    acc.lead(5, 102, at("2026-11-19 10:00"), name="Офис")
    # escalations of 101: a task to the supervisor, a take-over, a supervisor call of 12 minutes
    acc.task(1, at("2026-11-18 14:00"), at("2026-11-19 18:00"), text="согласовать скидку", entity_id=1,
             created_by=101)
    acc.reassign(2, at("2026-11-19 10:00"), 101, 1)
    acc.call(at("2026-11-19 16:00"), 1, lead=3, duration=720)
    # won and lost deals
    acc.contact(600, 101)
    acc.lead(10, 101, at("2026-11-10 10:00"), status=WON, closed=at("2026-11-17 12:00"), price=1000, csat=5,
             contacts=[600], name="Первая покупка")
    acc.lead(11, 101, at("2026-11-10 10:00"), status=WON, closed=at("2026-11-18 12:00"), price=2000, csat=2,
             contacts=[600], name="Повторная покупка")
    acc.lead(12, 102, at("2026-11-10 10:00"), status=WON, closed=at("2026-11-18 13:00"), name="Без бюджета")
    acc.lead(13, 102, at("2026-11-10 10:00"), status=LOST, closed=at("2026-11-19 12:00"), price=500,
             name="Отказ")
    # two audited tasks of 101: a generic text (S fails), and an overdue open task (T fails)
    done = acc.task(101, at("2026-11-16 09:00"), at("2026-11-17 18:00"), text="Позвонить", entity_id=1,
                    completed=True, result="отправил КП", updated=at("2026-11-17 12:00"), task_id=7001)
    acc.complete(done, at("2026-11-17 12:00"), 101)
    acc.task(101, at("2026-11-16 09:00"), at("2026-11-18 18:00"), text="Отправить коммерческое предложение клиенту",
             entity_id=3, task_id=7002)
    return acc


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return week_account().context(tmp_path_factory.mktemp("detail"), now=NOW)


def records(ctx, block, **kw):
    return detail_records(block_detail(ctx, block, **kw))


def test_first_call_rows(ctx):
    assert records(ctx, "first_call") == [
        {"lead_id": 1, "name": "Кофемашины", "manager": 101, "manager_name": "Анна",
         "fc_at": iso("2026-11-16 10:00"), "resolved": True, "reasons": [], "callback_at": None,
         "repeat_call_at": None, "url": URL.format(1)},
        {"lead_id": 2, "name": "Станки", "manager": 101, "manager_name": "Анна",
         "fc_at": iso("2026-11-16 11:00"), "resolved": False, "reasons": ["callback"],
         "callback_at": iso("2026-11-17 15:20"), "repeat_call_at": None, "url": URL.format(2)},
        {"lead_id": 3, "name": "Вентиляторы", "manager": 101, "manager_name": "Анна",
         "fc_at": iso("2026-11-16 12:00"), "resolved": False, "reasons": ["repeat_call", "no_advance"],
         "callback_at": None, "repeat_call_at": iso("2026-11-18 12:00"), "url": URL.format(3)},
        {"lead_id": 4, "name": "Склад", "manager": 102, "manager_name": "Борис",
         "fc_at": iso("2026-11-17 09:30"), "resolved": False, "reasons": ["no_advance"], "callback_at": None,
         "repeat_call_at": None, "url": URL.format(4)},
    ]
    first = compute_kpis(ctx)["kpis"]["first_call"]
    assert first["by_manager"]["101"]["fcr_eligible"] == 3 and first["by_manager"]["101"]["fcr_resolved"] == 1


def test_cost_of_service_rows(ctx):
    common = {"manager": 101, "manager_name": "Анна", "supervisor": 1, "supervisor_name": "Елена Смирнова"}
    assert records(ctx, "cost_of_service") == [
        {"lead_id": 1, "name": "Кофемашины", **common, "kind": "E1", "at": iso("2026-11-18 14:00"),
         "minutes": 10.0, "text": "согласовать скидку", "url": URL.format(1)},
        {"lead_id": 2, "name": "Станки", **common, "kind": "E2", "at": iso("2026-11-19 10:00"), "minutes": 30.0,
         "text": None, "url": URL.format(2)},
        {"lead_id": 3, "name": "Вентиляторы", **common, "kind": "E3", "at": iso("2026-11-19 16:00"),
         "minutes": 12.0, "text": None, "url": URL.format(3)},
    ]
    cost = compute_kpis(ctx)["kpis"]["cost_of_service"]["by_manager"]["101"]
    assert cost["supervisor_minutes"] == 10 + 30 + 12 and cost["escalation_events"] == 3


def test_speed_to_lead_rows(ctx):
    rows = block_detail(ctx, "speed_to_lead")
    assert rows[["lead_id", "manager", "uncalled"]].values.tolist() == [
        [1, 101, False], [2, 101, False], [3, 101, False], [4, 102, False], [5, 102, True]]
    # business minutes from creation to the first call (lead 4: its contact's call, 30 minutes on)
    five = detail_records(rows)[-1]
    # Thursday 10:00 to Friday 18:00 on the clock
    assert five == {"lead_id": 5, "name": "Офис", "manager": 102, "manager_name": "Борис",
                    "created_at": iso("2026-11-19 10:00"), "t1": None, "stl_min": None, "uncalled": True,
                    "waited_min": 32 * 60.0, "url": URL.format(5)}
    assert [r["stl_min"] for r in detail_records(rows)[:4]] == [2.0, 3.0, 10.0, 30.0]


def test_won_lost_and_score_rows(ctx):
    csat = records(ctx, "customer_satisfaction")
    assert [(r["lead_id"], r["manager"], r["score"], r["satisfied"], r["repeat"], r["price"]) for r in csat] == [
        (10, 101, 5.0, True, False, 1000.0), (11, 101, 2.0, False, True, 2000.0), (12, 102, None, None, None, None)]
    assert csat[1]["closed_at"] == iso("2026-11-18 12:00")
    check = records(ctx, "average_check")
    assert [(r["lead_id"], r["status"], r["price"], r["pipeline_id"], r["pipeline"]) for r in check] == [
        (10, "won", 1000.0, 1, "Sales"), (11, "won", 2000.0, 1, "Sales"), (12, "won", None, 1, "Sales"),
        (13, "lost", 500.0, 1, "Sales")]


def test_productivity_rows(ctx):
    rows = records(ctx, "productivity")
    assert [{k: r[k] for k in ("manager", "date", "active_by", "connected_calls", "talk_minutes", "status_changes",
                               "tasks_completed")} for r in rows] == [
        {"manager": 101, "date": "2026-11-16", "active_by": ["connected_call"], "connected_calls": 3,
         "talk_minutes": 3.0, "status_changes": 0, "tasks_completed": 0},
        {"manager": 101, "date": "2026-11-17", "active_by": ["status_change", "task_completed"],
         "connected_calls": 0, "talk_minutes": 0.0, "status_changes": 1, "tasks_completed": 1},
        {"manager": 101, "date": "2026-11-18", "active_by": ["connected_call", "status_change"],
         "connected_calls": 1, "talk_minutes": 1.0, "status_changes": 1, "tasks_completed": 0},
        {"manager": 102, "date": "2026-11-17", "active_by": ["connected_call"], "connected_calls": 1,
         "talk_minutes": 1.0, "status_changes": 0, "tasks_completed": 0},
    ]
    assert block_detail(ctx, "productivity")["date"].iloc[0] == date(2026, 11, 16)


def test_smart_rows(ctx):
    rows = records(ctx, "smart_audit")
    marks = [(r["task_id"], r["name"], r["entity_type"], r["S"], r["M"], r["A"], r["R"], r["T"], r["score"],
              r["overdue"], r["url"]) for r in rows]
    assert marks == [
        (7001, "Кофемашины", "leads", False, True, True, True, True, 0.8, False, URL.format(1)),
        (7002, "Вентиляторы", "leads", True, None, True, True, False, 0.75, True, URL.format(3)),
    ]
    assert rows[0]["completed_at"] == iso("2026-11-17 12:00") and rows[1]["completed_at"] is None


def test_items_pulling_down_by_reason(ctx):
    items = find_items_pulling_down(ctx, "2026-W47")
    got = [(r.manager, r.block, r.reason, r.lead_id, None if pd.isna(r.task_id) else r.task_id)
           for r in items.itertuples()]
    assert got == [
        (101, "customer_satisfaction", "low_csat", 11, None),
        (101, "cost_of_service", "E1", 1, None), (101, "cost_of_service", "E2", 2, None),
        (101, "cost_of_service", "E3", 3, None),
        (101, "first_call", "callback", 2, None), (101, "first_call", "repeat_call", 3, None),
        (101, "first_call", "no_advance", 3, None), (101, "first_call", "slow_call", 3, None),
        (101, "smart_audit", "not_specific", 1, 7001), (101, "smart_audit", "not_time_bound", 3, 7002),
        (102, "first_call", "no_advance", 4, None), (102, "first_call", "uncalled", 5, None),
        (102, "first_call", "slow_call", 4, None), (102, "average_check", "lost", 13, None),
        (102, "productivity", "unpriced_win", 12, None),
    ]
    by = {(r.manager, r.reason): r for r in items.itertuples()}
    assert set(by) == {(101, "low_csat"), (101, "E1"), (101, "E2"), (101, "E3"), (101, "callback"),
                       (101, "repeat_call"), (101, "no_advance"), (101, "slow_call"), (101, "not_specific"),
                       (101, "not_time_bound"), (102, "no_advance"), (102, "uncalled"), (102, "slow_call"),
                       (102, "lost"), (102, "unpriced_win")}
    assert by[(101, "callback")].at.isoformat() == iso("2026-11-17 15:20")
    assert by[(101, "E3")].minutes == 12.0 and by[(101, "E1")].text == "согласовать скидку"
    assert by[(101, "E1")].supervisor_name == "Елена Смирнова"
    assert by[(102, "uncalled")].minutes == 32 * 60.0
    assert by[(101, "slow_call")].minutes == 10.0 and by[(102, "slow_call")].minutes == 30.0
    assert by[(101, "low_csat")].score == 2.0 and by[(102, "lost")].price == 500.0
    assert by[(101, "not_time_bound")].task_id == 7002 and bool(by[(101, "not_time_bound")].overdue)
    # the lead with two reasons is listed under both
    assert items.loc[items["lead_id"] == 3, "reason"].tolist() == ["E3", "repeat_call", "no_advance", "slow_call",
                                                                  "not_time_bound"]
    # grouped: reasons of a manager are contiguous, in the documented order
    anna = items.loc[items["manager"] == 101, "reason"].tolist()
    assert anna == ["low_csat", "E1", "E2", "E3", "callback", "repeat_call", "no_advance", "slow_call",
                    "not_specific", "not_time_bound"]
    assert items["manager"].dtype == "int64"
    assert find_items_pulling_down(ctx, manager=102)["manager"].unique().tolist() == [102]


def test_weeks_as_strings_and_manager_filter(ctx):
    by_label = block_detail(ctx, "first_call", week="2026-W47")
    assert by_label.equals(block_detail(ctx, "first_call"))
    assert by_label.equals(block_detail(ctx, "first_call", week="current"))  # now is inside W47
    assert len(block_detail(ctx, "first_call", week="last")) == 0  # W46 had no calls
    assert compute_kpis(ctx, "2026-W47") == compute_kpis(ctx)
    assert block_detail(ctx, "cost_of_service", manager=102).empty
    with pytest.raises(ConfigError, match="manager 999 is not a manager of this report: use one of 101, 102"):
        block_detail(ctx, "first_call", manager=999)
    with pytest.raises(ConfigError, match="use YYYY-Www"):
        block_detail(ctx, "first_call", week="W47")
    for block in DETAIL_BLOCKS:
        frame = block_detail(ctx, block)
        assert frame["manager"].dtype == "int64" and "url" in frame and "manager_name" in frame
        for column in frame.columns:
            if pd.api.types.is_datetime64_any_dtype(frame[column]):
                assert str(frame[column].dt.tz) == "Europe/Moscow", (block, column)


def test_cli_json_and_csv_give_the_same_rows(ctx, tmp_path, capsys):
    data = tmp_path / "data"
    week_account().write(data)
    for block in DETAIL_BLOCKS:
        args = ["detail", "--week", "2026-W47", "--block", block, "--as-of", AS_OF, "--data-dir", str(data)]
        assert main(args + ["--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert rows == records(ctx, block)
        assert main(args + ["--csv"]) == 0
        table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
        assert len(table) == len(rows) and list(table[0]) == list(rows[0])

        def as_csv(value):
            if value is None:
                return ""
            if isinstance(value, bool):
                return "true" if value else "false"
            return ";".join(value) if isinstance(value, list) else str(value)

        assert table == [{k: as_csv(v) for k, v in r.items()} for r in rows], block
        assert main(args) == 0
        assert capsys.readouterr().out.startswith(f"{block} in 2026-W47: {len(rows)} row(s)")
    args = ["detail", "--week", "2026-W47", "--block", "first_call", "--as-of", AS_OF, "--data-dir", str(data)]
    assert main(args + ["--manager", "102", "--json"]) == 0
    assert [r["lead_id"] for r in json.loads(capsys.readouterr().out)] == [4]
    assert main(args[:4] + ["sales", "--data-dir", str(data), "--json"]) == 2
    assert "unknown KPI block 'sales': use one of customer_satisfaction" in capsys.readouterr().err
    assert detail_csv(block_detail(ctx, "first_call")).splitlines()[3].split(",")[6] == "repeat_call;no_advance"


def test_links_need_a_plain_subdomain_a_known_type_and_an_id():
    from types import SimpleNamespace

    from kpi_lib.kpis.detail import entity_urls

    ctx = SimpleNamespace(account={"subdomain": "shop-1"})
    got = entity_urls(ctx, ["leads", "contacts", None, "companies", "tasks", "leads"],
                      [1, 2.0, 3, np.nan, 5, 100000007])
    assert got.tolist() == ["https://shop-1.amocrm.ru/leads/detail/1", "https://shop-1.amocrm.ru/contacts/detail/2",
                            None, None, None, "https://shop-1.amocrm.ru/leads/detail/100000007"]
    assert entity_urls(ctx, "companies", [7]).tolist() == ["https://shop-1.amocrm.ru/companies/detail/7"]
    assert entity_urls(ctx, None, [7]).tolist() == [None]
    for bad in (None, "", "a/b", "-shop"):
        assert entity_urls(SimpleNamespace(account={"subdomain": bad}), "leads", [1, 2]).tolist() == [None, None]
    assert entity_urls(ctx, "leads", []).tolist() == []
