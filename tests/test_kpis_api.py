"""The KPI command line, params validation, trends, targets and data-quality tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kpi_builders import WON, Account, at
from kpi_lib.cli import main
from kpi_lib.config import load_settings
from kpi_lib.errors import ConfigError
from kpi_lib.kpis import BLOCKS, KEYS, compute_kpis, compute_trends, data_quality, load_context, target_table


def small_account() -> Account:
    acc = Account()
    acc.user(1, "Руководитель", admin=True)
    acc.user(101, "Анна")
    acc.user(102, "Борис")
    acc.contact(1001, 101)
    for week_start, price in (("2026-11-02", 100), ("2026-11-09", 300), ("2026-11-16", 200)):
        day = at(f"{week_start} 12:00") + 86400
        lead = int(week_start[-2:])
        acc.lead(lead, 101, day - 3600, status=WON, closed=day, price=price, csat=5, contacts=[1001])
        acc.call(day - 1800, 101, lead=lead)
        acc.move(lead, day, 101, 10, WON)
    acc.lead(40, 102, at("2026-11-17 10:00"), status=WON, closed=at("2026-11-18 10:00"))  # unpriced, no contact
    acc.call(at("2026-11-18 10:00"), 102, contact=1009)  # a contact without leads: unmapped
    acc.call(at("2026-11-18 11:00"), 102, lead=40, status=None, duration=25)
    return acc


def write(acc: Account, tmp_path):
    acc.write(tmp_path / "data")
    return tmp_path / "data"


def test_kpis_json_end_to_end(tmp_path, capsys):
    data = write(small_account(), tmp_path)
    code = main(["kpis", "--week", "2026-W47", "--as-of", "2026-11-25T09:00:00+03:00", "--data-dir", str(data),
                 "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["week"] == "2026-W47"
    assert out["timezone"] == "Europe/Moscow" and out["currency"] == "RUB"
    assert out["as_of"] == "2026-11-23T00:00:00+03:00"
    assert out["managers"] == [{"user_id": 101, "name": "Анна", "active": True},
                               {"user_id": 102, "name": "Борис", "active": True}]
    assert list(out["kpis"]) == list(BLOCKS)
    for block in BLOCKS:
        keys = [k for k in KEYS[block] if k not in ("nps", "due_today", "due_tomorrow")]
        assert list(out["kpis"][block]["team"]) == keys
        assert sorted(out["kpis"][block]["by_manager"]) == ["101", "102"]
    check = out["kpis"]["average_check"]
    assert check["by_manager"]["101"]["avg_check"] == 200.0
    assert check["by_manager"]["102"]["avg_check"] is None
    assert check["team"]["won"] == 2 and isinstance(check["team"]["won"], int)
    assert check["team"]["unpriced_share_pct"] == 100 * 1 / 2
    assert out["kpis"]["first_call"]["team"]["fcr_final"] is False  # last sync 2026-11-28 < 2026-11-30


def test_kpis_last_week_and_text_table(tmp_path, capsys):
    data = write(small_account(), tmp_path)
    assert main(["kpis", "--week", "last", "--as-of", "2026-11-25T09:00:00+03:00", "--data-dir", str(data)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("KPIs for 2026-W47 (Europe/Moscow")
    assert "Анна (101)" in text and "team" in text and "no data" in text
    assert "Average check" in text and "Smart audit" in text
    assert main(["kpis", "--week", "last", "--as-of", "2026-11-18T09:00:00+03:00", "--data-dir", str(data),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["week"] == "2026-W46"


@pytest.mark.parametrize("kpi, message", [
    ({"colour": 1}, "kpi.colour: unknown setting"),
    ({"fcr_window_days": "seven"}, "kpi.fcr_window_days: expected a whole number"),
    ({"supervisors": "1"}, "kpi.supervisors: expected a list"),
    ({"managers": [101, 555]}, "kpi.managers: user id 555 is not a user of this account: use ids from the "
                               "account's users (1 Руководитель, 101 Анна, 102 Борис)"),
    ({"supervisors": [9]}, "kpi.supervisors: user id 9 is not a user"),
    ({"managers": [101, 1], "supervisors": [1]}, "kpi.managers: user 1 is also a supervisor"),
    ({"pipelines": [77]}, "kpi.pipelines: pipeline id 77 is not a pipeline of this account: use one of 1, 2"),
    ({"timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
    ({"targets": {"csat": 80}}, "kpi.targets.csat: unknown target"),
    ({"targets": {"csat_pct": 120}}, "kpi.targets.csat_pct: expected a number from 0 to 100 (a percentage), got 120"),
    ({"targets": {"avg_check": -1}}, "kpi.targets.avg_check: expected a number of 0 or more, got -1"),
    ({"targets": [80]}, "kpi.targets: expected a mapping of KPI name to target"),
    ({"supervisor_hourly_rate": -5}, "kpi.supervisor_hourly_rate: expected a number of 0 or more, got -5"),
    ({"business_hours": {"start": "09:00", "end": "24:30"}},
     "kpi.business_hours.end: expected a time of day from '00:00' to '24:00'"),
])
def test_params_validation_errors(tmp_path, capsys, kpi, message):
    data = write(small_account(), tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"kpi": kpi}), encoding="utf-8")  # JSON is YAML
    code = main(["kpis", "--week", "2026-W47", "--params", str(params), "--data-dir", str(data), "--json"])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err


def test_params_choose_people(tmp_path):
    acc = small_account()
    acc.user(103, "Вера", active=False)
    data = write(acc, tmp_path)
    settings = load_settings(overrides={"data_dir": str(data), "week": "2026-W47",
                                        "kpi": {"supervisors": [102], "managers": [101, 103]}})
    ctx = load_context(settings)
    assert ctx.supervisors == [102]
    assert ctx.managers["user_id"].tolist() == [101, 103]
    assert ctx.managers["active"].tolist() == [True, False]
    default = load_context(load_settings(overrides={"data_dir": str(data), "week": "2026-W47"}))
    assert default.supervisors == [1] and default.managers["user_id"].tolist() == [101, 102, 103]


def test_trends_match_single_weeks(tmp_path):
    ctx = small_account().context(tmp_path, now="2026-11-25 09:00")
    trends = compute_trends(ctx, 4)
    assert list(trends.columns) == ["week", "week_start", "block", "key", "manager", "value"]
    assert sorted(trends["week"].unique()) == ["2026-W44", "2026-W45", "2026-W46", "2026-W47"]
    assert trends["week_start"].min() == pd.Timestamp("2026-10-26", tz="Europe/Moscow")
    assert str(trends["manager"].dtype) == "Int64" and trends["manager"].dropna().unique().tolist() == [101, 102]
    for week in (ctx.week.shift(-2), ctx.week.shift(-1), ctx.week):
        single = compute_kpis(ctx, week)
        rows = trends.loc[trends["week"] == week.label]
        for block in BLOCKS:
            for manager, figures in [("team", single["kpis"][block]["team"]),
                                     *single["kpis"][block]["by_manager"].items()]:
                for key, value in figures.items():
                    who = rows["manager"].isna() if manager == "team" else rows["manager"] == int(manager)
                    got = rows.loc[(rows["block"] == block) & who.fillna(False) & (rows["key"] == key), "value"]
                    assert len(got) == 1, (block, key)
                    if value is None:
                        assert np.isnan(got.iloc[0]), (week.label, block, manager, key)
                    else:
                        assert got.iloc[0] == pytest.approx(float(value)), (week.label, block, manager, key)
    revenue = trends.loc[(trends["key"] == "won_revenue") & (trends["manager"] == 101)
                         & (trends["block"] == "average_check")]
    assert revenue["value"].tolist() == [0.0, 100.0, 300.0, 200.0]


def test_target_table(tmp_path):
    ctx = small_account().context(tmp_path, now="2026-11-25 09:00", targets={"csat_pct": 90, "smart_index": None})
    result = compute_kpis(ctx)
    table = target_table(ctx, result)
    assert list(table.columns) == ["block", "key", "manager", "value", "target", "direction", "met", "target_source"]
    assert len(table) == 7 * 3  # six primaries and stl_median_min, for team, 101 and 102
    assert str(table["manager"].dtype) == "Int64"
    row = table.assign(manager=table["manager"].astype(object).where(table["manager"].notna(), "team")).set_index(
        ["key", "manager"])
    assert row.loc[("csat_pct", 101), "target"] == 90 and row.loc[("csat_pct", 101), "target_source"] == "params"
    assert bool(row.loc[("csat_pct", 101), "met"]) is True  # 100 >= 90
    assert row.loc[("csat_pct", 102), "met"] is pd.NA  # no response: no value
    assert row.loc[("escalation_rate_pct", "team"), "target_source"] == "default"
    assert row.loc[("escalation_rate_pct", "team"), "direction"] == "<="
    # no target for avg_check: the team's median over W35–W46 of the weeks with a value: 100 and 300
    assert row.loc[("avg_check", "team"), "target"] == (100 + 300) / 2
    assert row.loc[("avg_check", "team"), "target_source"] == "median12"
    assert bool(row.loc[("avg_check", "team"), "met"]) is True  # 200 >= 200
    assert row.loc[("smart_index", "team"), "target_source"] == "median12"  # set to null in params
    trends = compute_trends(ctx, 13)
    assert target_table(ctx, result, trends).equals(table)


def test_data_quality_tables(tmp_path):
    ctx = small_account().context(tmp_path, now="2026-11-25 09:00")
    quality = data_quality(ctx)
    assert list(quality) == ["unpriced_wins", "unmapped_calls", "calls_without_status", "won_without_contact",
                             "survey_coverage"]
    assert quality["unpriced_wins"]["lead_id"].tolist() == [40]
    assert quality["unmapped_calls"][["contact_id", "caller"]].values.tolist() == [[1009, 102]]
    assert quality["calls_without_status"][["duration", "connected"]].values.tolist() == [[25, True]]
    assert quality["won_without_contact"]["lead_id"].tolist() == [40]
    coverage = quality["survey_coverage"]
    team = coverage.loc[coverage["manager"].isna()].iloc[0]
    assert team["won"] == 2 and team["responses"] == 1 and team["coverage_pct"] == 100 * 1 / 2
    assert coverage["manager"].dropna().tolist() == [101, 102]


def test_unknown_block_detail(tmp_path):
    from kpi_lib.kpis import block_detail

    ctx = small_account().context(tmp_path)
    with pytest.raises(ConfigError, match="unknown KPI block 'sales'"):
        block_detail(ctx, "sales")


def test_missing_store_names_the_fix(tmp_path, capsys):
    assert main(["kpis", "--week", "last", "--data-dir", str(tmp_path / "nothing"), "--json"]) == 2
    assert "run 'kpi-report demo'" in capsys.readouterr().err


def test_account_with_nobody_to_report(tmp_path):
    acc = Account()
    acc.user(1, "Boss", admin=True)
    ctx = acc.context(tmp_path, now="2026-11-18 10:00")
    result = compute_kpis(ctx)
    assert result["managers"] == []
    assert result["kpis"]["average_check"] == {
        "team": {"won": 0, "priced_won": 0, "avg_check": None, "median_check": None, "won_revenue": 0.0,
                 "unpriced_share_pct": None, "lost": 0, "win_rate_pct": None}, "by_manager": {}}
    assert result["kpis"]["smart_audit"]["team"]["due_today"] == 0
    assert len(target_table(ctx, result)) == 7
    assert all(len(frame) == 0 for name, frame in data_quality(ctx).items() if name != "survey_coverage")


def test_trend_weeks_must_be_positive(tmp_path):
    ctx = small_account().context(tmp_path)
    with pytest.raises(ConfigError, match="trend weeks 0"):
        compute_trends(ctx, 0)


def test_a_context_reads_its_items_once_and_never_from_a_changed_store(tmp_path, monkeypatch):
    """The items are read at first use, for the span asked for then and the context's own weeks:
    12 weeks of trends and the week's figures are one read, the same figures as a context that
    read them up front; a store written since the context was loaded is not read into it."""
    from kpi_lib.errors import StoreError
    from kpi_lib.kpis import context
    from kpi_lib.store import Store

    data = write(small_account(), tmp_path)
    settings = load_settings(overrides={"data_dir": str(data), "week": "2026-W47",
                                        "as_of": "2026-11-25T09:00:00+03:00"})
    reads = []
    real_read = context._FactsReader.read
    monkeypatch.setattr(context._FactsReader, "read", lambda self, lo, hi, *a, **k: (
        reads.append((lo, hi)), real_read(self, lo, hi, *a, **k))[1])
    ctx = load_context(settings)
    assert reads == []
    trends, result = compute_trends(ctx, 12), compute_kpis(ctx)
    assert len(reads) == 1 and reads[0][0] == ctx.week.shift(-11).start_ts
    eager = load_context(settings, weeks=12)
    assert len(reads) == 2
    pd.testing.assert_frame_equal(trends, compute_trends(eager, 12))
    assert result == compute_kpis(eager) and len(reads) == 2

    some = load_context(settings, weeks=2, parts=())  # the calls and tasks at their first use
    assert len(reads) == 3 and compute_kpis(some) == result and len(reads) == 3

    # the week's data quality without the calls read: the week's calls alone, the same tables
    weekly = load_context(settings, weeks=2, parts=("first_calls",))
    quality = data_quality(weekly)
    assert "calls" not in vars(weekly.facts) and len(quality["unmapped_calls"]) and len(quality["calls_without_status"])
    for name, table in data_quality(eager).items():
        pd.testing.assert_frame_equal(quality[name], table, obj=name)
    for weeks in (1, 2):
        lo, hi = weekly.week.shift(1 - weeks).start_ts, weekly.week.end_ts
        held = eager.facts.calls_in(lo, hi).reset_index(drop=True)
        noted = set(quality["unmapped_calls"]["call_id"]) | set(quality["calls_without_status"]["call_id"])
        assert sorted(held["id"]) == sorted(noted) and "calls" not in vars(weekly.facts)  # no others held
        pd.testing.assert_frame_equal(weekly.facts.calls_in(lo, hi), held)

    stale, partly = load_context(settings), load_context(settings, weeks=2, parts=("calls",))
    weekly = load_context(settings, weeks=2, parts=("first_calls",))
    with Store.open(data, None, read_only=False) as store:
        store.mark_changed()
    for ctx in (stale, partly):
        with pytest.raises(StoreError, match="changed after this report's context was loaded.*load the context again"):
            compute_kpis(ctx)
    with pytest.raises(StoreError, match="load the context again"):
        data_quality(weekly)
    assert compute_kpis(load_context(settings)) == result
