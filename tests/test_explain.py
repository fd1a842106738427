"""What the reports say about a move: the arrow rule, the driver sentence and fair comparison."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kpi_lib.explain import change_arrow, describe_move, format_change, named_managers
from kpi_lib.kpis.fairness import beta_prior, funnel_limits, shrink_rates

NAMES = {"101": "Алексей Лебедев", "102": "Светлана Попова", "103": "Anna"}


def manager(uid, rate_effect, mix_effect, rate=None, previous_rate=None, n=0, share=0.0, previous_share=0.0):
    return {"manager": uid, "rate_effect": rate_effect, "mix_effect": mix_effect, "rate": rate,
            "previous_rate": previous_rate, "n": n, "previous_n": n, "share": share, "previous_share": previous_share}


def record(change=-6.1, limit=3.0, other=0.0, value=62.6):
    previous = value - change
    return {"key": "fcr_pct", "value": value, "previous": previous, "change": change, "limit": limit, "n": 80,
            "other": other, "managers": [
                manager(101, -3.6, -0.3, rate=58.0, previous_rate=71.0, n=24, share=0.3, previous_share=0.31),
                manager(102, -0.5, -1.5, rate=60.0, previous_rate=61.0, n=30, share=0.375, previous_share=0.3),
                manager(103, 0.01, -0.01, rate=70.0, previous_rate=70.0, n=26, share=0.325, previous_share=0.39),
            ]}


@pytest.mark.parametrize("value, previous, direction, expected", [
    (62.6, 63.0, ">=", ("▼", "bad")),   # −0.4 pp is never shown as rising
    (63.0, 62.6, ">=", ("▲", "good")),
    (5.2, 6.0, "<=", ("▼", "good")),    # the escalation rate falling is good
    (5.2, 4.0, "<=", ("▲", "bad")),
    (70.01, 70.04, ">=", ("→", "flat")),  # a change that rounds to 0.0 pp is no change
    (None, 70.0, ">=", ("·", "none")),
    (70.0, float("nan"), ">=", ("·", "none")),
])
def test_the_arrow_is_the_sign_of_the_change_as_shown(value, previous, direction, expected):
    assert change_arrow("fcr_pct", value, previous, direction) == expected


def test_the_arrow_follows_the_rounding_of_the_figure():
    assert change_arrow("avg_check", 100_000.4, 100_000.0, ">=") == ("→", "flat")  # money: whole units
    assert change_arrow("avg_check", 100_001.0, 100_000.0, ">=") == ("▲", "good")
    assert change_arrow("smart_index", 80.04, 80.0, ">=") == ("→", "flat")


def test_changes_are_signed_in_the_figures_unit():
    assert format_change("fcr_pct", -6.14, "en") == "−6.1\u00a0pp"
    assert format_change("fcr_pct", 2.0, "ru") == "+2,0\u00a0п. п."
    assert format_change("avg_check", -1234.4, "en") == "−1,234\u00a0RUB"
    assert format_change("avg_check", -1234.4, "ru", "RUB", signed=False) == "1\u00a0234\u00a0₽"
    assert format_change("fcr_pct", 0.01, "en") == "0.0\u00a0pp"


def test_the_sentence_names_the_largest_effects_with_their_reason():
    text = describe_move(record(), "first_call", NAMES, "en")
    assert text == ("First-call resolution fell 6.1\u00a0pp to 62.6%: "
                    "Алексей Лебедев −3.9\u00a0pp (own rate fell from 71.0% to 58.0%, n = 24), "
                    "Светлана Попова −2.0\u00a0pp (a larger share of the team's first calls: 30% → 38%).")
    ru = describe_move(record(), "first_call", NAMES, "ru")
    assert ru.startswith("Решение с первого звонка: снижение на 6,1\u00a0п. п., до 62,6\u00a0%: Алексей Лебедев −3,9\u00a0п. п. "
                         "(собственный показатель снизился с 71,0\u00a0% до 58,0\u00a0%, n = 24)")
    assert "Anna" not in text  # an effect that rounds to nothing is not a driver


def test_the_sentence_says_noise_instead_of_a_story():
    text = describe_move(record(change=-2.0, limit=12.9), "first_call", NAMES, "en")
    assert text == ("First-call resolution fell 2.0\u00a0pp to 62.6%, within ordinary week-to-week noise "
                    "(±12.9\u00a0pp at n = 80): no manager to single out.")
    assert "n = 80" in describe_move(record(change=-2.0, limit=None), "first_call", NAMES, "en")


def test_the_sentence_without_a_previous_week_or_a_change():
    empty = dict(record(), change=None, previous=None)
    assert describe_move(empty, "first_call", NAMES, "en") == (
        "First-call resolution is 62.6%; the previous week has no figure to compare with.")
    assert describe_move(dict(record(), value=None), "first_call", NAMES, "ru") == (
        "Решение с первого звонка: за эту неделю нет данных.")
    assert "did not change" in describe_move(record(change=0.02), "first_call", NAMES, "en")


def test_other_is_named_when_it_matters():
    text = describe_move(dict(record(other=-1.5), key="escalation_rate_pct"), "cost_of_service", NAMES, "en")
    assert text.endswith("deals shared between managers −1.5\u00a0pp.")


def test_two_or_three_managers_are_named():
    names = [m["manager"] for m in named_managers(record())]
    assert names == [101, 102]
    three = record()
    three["managers"][2].update(rate_effect=-1.0, mix_effect=0.0)
    assert [m["manager"] for m in named_managers(three)] == [101, 102, 103]


def test_empirical_bayes_pulls_few_cases_towards_the_team():
    # rates that spread far more than chance: 2/20, 18/20, 0/2, 25/50
    x, n = np.array([2, 18, 0, 25]), np.array([20, 20, 2, 50])
    p, weight = beta_prior(x, n)
    assert p == pytest.approx(45 / 92)
    assert 0 < weight < math.inf
    shrunk = shrink_rates(x, n)
    assert shrunk == pytest.approx((x + weight * p) / (n + weight))
    raw = x / n
    assert all(abs(s - p) <= abs(r - p) + 1e-12 for s, r in zip(shrunk, raw))  # never further than the raw rate
    pulled = (shrunk - raw) / (p - raw)  # the share of the way to the team's rate: M / (n + M)
    assert pulled == pytest.approx(weight / (n + weight))
    assert pulled[2] > pulled[0] > pulled[3]  # 2 cases are pulled most, 50 least


def test_empirical_bayes_without_excess_spread_is_the_team_rate():
    x, n = np.array([5, 6, 0]), np.array([10, 12, 0])  # 50 % and 50 %: chance explains it all
    shrunk = shrink_rates(x, n)
    assert shrunk[:2] == pytest.approx([11 / 22, 11 / 22]) and np.isnan(shrunk[2])
    assert np.isnan(shrink_rates([0], [0])[0])


def test_funnel_limits():
    low, high = funnel_limits(0.5, [100, 25], 1.959964)
    assert low == pytest.approx([0.5 - 1.959964 * 0.05, 0.5 - 1.959964 * 0.1])
    assert high == pytest.approx([0.5 + 1.959964 * 0.05, 0.5 + 1.959964 * 0.1])
    assert funnel_limits(0.9, [1], 3.090232)[1] == pytest.approx([1.0])  # clipped at 100 %
