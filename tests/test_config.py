"""Settings: one check per ``kpi:`` setting, times of day, numbers, and nothing hidden."""

from __future__ import annotations

import dataclasses
import math

import pytest

from kpi_lib.config import KPI_CHECKS, KpiSettings, Settings, load_settings, parse_kpi_settings
from kpi_lib.errors import ConfigError


def test_every_kpi_setting_has_exactly_one_check():
    assert set(KPI_CHECKS) == {f.name for f in dataclasses.fields(KpiSettings)}


@pytest.mark.parametrize("text, expected", [("09:00", "09:00"), ("9:5", "09:05"), ("00:00", "00:00"),
                                            ("23:59", "23:59")])
def test_times_of_day_from_midnight_to_the_end_of_the_day(text, expected):
    hours = parse_kpi_settings({"business_hours": {"start": text, "end": "24:00"}}).business_hours
    assert (hours.start, hours.end) == (expected, "24:00")


@pytest.mark.parametrize("text", ["24:30", "24:01", "25:00", "12:60", "9", "09:00:00", "ab:cd", "-1:00", "123:00",
                                  540])
def test_times_past_the_end_of_the_day_are_refused(text):
    with pytest.raises(ConfigError, match=r"kpi\.business_hours\.end: expected a time of day from '00:00' to "
                                          r"'24:00', like '09:00' \(quoted\), got"):
        parse_kpi_settings({"business_hours": {"start": "00:00", "end": text}})


@pytest.mark.parametrize("value", [-1, math.nan, math.inf, True, "1500"])
def test_money_and_minutes_are_finite_numbers_of_zero_or_more(value):
    with pytest.raises(ConfigError, match=r"kpi\.supervisor_hourly_rate: expected a number of 0 or more, got"):
        parse_kpi_settings({"supervisor_hourly_rate": value})


def test_whole_numbers_name_their_minimum():
    with pytest.raises(ConfigError, match=r"kpi\.fcr_window_days: expected a whole number of 1 or more, got 0"):
        parse_kpi_settings({"fcr_window_days": 0})
    assert parse_kpi_settings({"min_result_words": 0}).min_result_words == 0


def test_settings_hide_nothing_and_copy_with_replace(tmp_path):
    settings = load_settings(overrides={"data_dir": str(tmp_path), "kpi": {"targets": {"csat_pct": 85}}})
    assert set(vars(settings)) == {f.name for f in dataclasses.fields(Settings)}
    moved = dataclasses.replace(settings, week="2026-W47", as_of="2026-11-25T12:00:00+03:00")
    assert moved.notebook_parameters()["kpi"] == {"targets": {"csat_pct": 85}}
    assert moved.kpi.targets == {"csat_pct": 85} and moved.week == "2026-W47"
