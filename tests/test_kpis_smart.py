"""SMART task audit (kpi-definitions.md §6): each criterion passing and failing, hand-computed."""

from __future__ import annotations

import pytest

from kpi_builders import WON, Account, at
from kpi_lib.kpis import block_detail, compute_kpis, due_tasks
from kpi_lib.kpis.smart_audit import clean_words


def people(acc: Account) -> None:
    acc.user(1, "Supervisor", admin=True)
    acc.user(101, "Anna")
    acc.user(102, "Boris")


def audit(result, who):
    table = result["kpis"]["smart_audit"]
    return table["team"] if who == "team" else table["by_manager"][str(who)]


def test_cleaning_texts():
    text = "Позвонить клиенту +7 (999) 123-45-67 по www.shop.ru/x?a=1 и https://a.b/c follow-up 2 раза!"
    assert clean_words(text) == ["позвонить", "клиенту", "по", "и", "followup", "раза"]
    assert clean_words("Call back…") == ["call", "back"]
    assert clean_words("«Новая» задача №5") == ["новая", "задача", "№5"]  # № is a symbol, not punctuation
    assert clean_words("123 456") == []
    assert clean_words(None) == []


def smart_account() -> tuple[Account, dict[str, int]]:
    acc = Account()
    people(acc)
    acc.contact(1001, 101)
    acc.lead(1, 101, at("2026-11-02 10:00"), contacts=[1001])  # open
    acc.lead(2, 101, at("2026-11-02 10:00"), status=WON, closed=at("2026-11-10 10:00"))  # closed before the tasks
    acc.lead(3, 101, at("2026-11-02 10:00"), deleted=True)
    created = at("2026-11-16 09:00")
    ids = {}

    def done(name, due, text="Send the offer with prices", result="Offer sent", finished=None, **kw):
        ids[name] = acc.task(101, kw.pop("created", created), due, text=text, entity_id=kw.pop("entity_id", 1),
                             completed=True, result=result, **kw)
        acc.complete(ids[name], finished or due - 3600, 101)

    done("T1", at("2026-11-17 12:00"))  # passes everything
    done("T2", at("2026-11-18 12:00"), text="Перезвонить!")  # S: generic
    done("T3", at("2026-11-18 13:00"), text="call", result="done ok", created_by=0)  # S not applicable (robot)
    done("T4", at("2026-11-18 14:00"), result="ok")  # M: one word
    done("T5", at("2026-11-19 10:00"), text="Call the client about delivery", result="called back client",
         created=at("2026-11-19 12:00"), finished=at("2026-11-19 13:00"))  # A: born overdue; T: same day
    done("T6", at("2026-11-19 14:00"), entity_id=2)  # R: its lead closed before the task was created
    ids["T7"] = acc.task(101, created, at("2026-11-20 12:00"), entity_id=1)  # T: open and overdue at as_of
    done("T8", at("2026-11-20 12:00"), finished=at("2026-11-21 10:00"))  # T: completed the day after
    acc.task(101, created, at("2026-11-20 12:00"), entity_id=3)  # on a deleted lead: not audited
    acc.task(101, created, at("2026-11-24 12:00"), entity_id=1)  # due next week
    acc.task(1, created, at("2026-11-20 12:00"), entity_id=1)  # the supervisor's: nobody's
    ids["B1"] = acc.task(102, created, at("2026-11-18 12:00"), entity_type="contacts", entity_id=1001,
                         completed=True, result="Price list sent")  # R: via the contact's open lead
    return acc, ids


def test_each_criterion_failing(tmp_path):
    acc, ids = smart_account()
    ctx = acc.context(tmp_path)
    r = compute_kpis(ctx)
    scores = [1, 4 / 5, 4 / 4, 4 / 5, 4 / 5, 4 / 5, 3 / 4, 4 / 5]  # T1 … T8
    expected = {
        "tasks": 8, "smart_index": 100 * sum(scores) / 8, "smart_complete_pct": 100 * 2 / 8,
        "specific_pct": 100 * 6 / 7,  # T3 not applicable, T2 fails
        "measurable_pct": 100 * 6 / 7,  # T7 open, T4 fails
        "achievable_pct": 100 * 7 / 8, "relevant_pct": 100 * 7 / 8,
        "time_bound_pct": 100 * 6 / 8,  # T7 overdue, T8 late
        "overdue_pct": 100 * 1 / 8,
    }
    got = audit(r, 101)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key
    assert audit(r, 102)["smart_index"] == 100.0
    team = audit(r, "team")
    assert team["tasks"] == 9
    assert team["smart_index"] == pytest.approx(100 * (sum(scores) + 1) / 9)
    assert team["specific_pct"] == pytest.approx(100 * 7 / 8)
    assert team["overdue_pct"] == pytest.approx(100 * 1 / 9)
    detail = block_detail(ctx, "smart_audit").set_index("task_id")
    failing = {"T2": "S", "T4": "M", "T5": "A", "T6": "R", "T7": "T", "T8": "T"}
    for name, crit in failing.items():
        assert detail.loc[ids[name], crit] == False, name  # noqa: E712
    assert detail.loc[ids["T3"], "S"] is pd_na()
    assert detail.loc[ids["T7"], "M"] is pd_na()
    assert bool(detail.loc[ids["T7"], "overdue"])
    assert detail.loc[ids["T1"], ["S", "M", "A", "R", "T"]].tolist() == [True] * 5


def pd_na():
    import pandas as pd

    return pd.NA


def test_achievable_fails_above_the_daily_load(tmp_path):
    acc = Account()
    people(acc)
    acc.lead(1, 101, at("2026-11-02 10:00"))
    for hour in (10, 11, 12):  # three tasks due on Wednesday, two on Thursday; at most 2 a day
        acc.task(101, at("2026-11-16 09:00"), at(f"2026-11-18 {hour}:00"), entity_id=1, completed=True,
                 result="done it")
    for hour in (10, 11):
        acc.task(101, at("2026-11-16 09:00"), at(f"2026-11-19 {hour}:00"), entity_id=1, completed=True,
                 result="done it")
    r = compute_kpis(acc.context(tmp_path, max_tasks_per_day=2))
    assert audit(r, 101)["achievable_pct"] == pytest.approx(100 * 2 / 5)


def test_relevant_for_contacts_companies_and_no_entity(tmp_path):
    acc = Account()
    people(acc)
    acc.lead(1, 101, at("2026-11-02 10:00"), contacts=[1001], companies=[2001])
    acc.lead(2, 101, at("2026-11-02 10:00"), status=WON, closed=at("2026-11-17 10:00"), contacts=[1002])
    due = at("2026-11-19 12:00")
    kinds = [("contacts", 1001, True), ("companies", 2001, True), ("contacts", 1002, False),  # 1002's lead closed
             ("contacts", 1003, False), (None, None, False), ("leads", 999, False)]  # no links, none, unknown lead
    for entity_type, entity_id, _ in kinds:
        acc.task(101, at("2026-11-18 09:00"), due, entity_type=entity_type, entity_id=entity_id, completed=True,
                 result="done it")
    acc.task(101, at("2026-11-16 09:00"), due, entity_type="contacts", entity_id=1002, completed=True,
             result="done it")  # created before lead 2 closed: relevant
    r = compute_kpis(acc.context(tmp_path))
    assert audit(r, 101)["tasks"] == 7
    assert audit(r, 101)["relevant_pct"] == pytest.approx(100 * 3 / 7)


def test_generic_texts_and_word_counts_from_params(tmp_path):
    acc = Account()
    people(acc)
    acc.lead(1, 101, at("2026-11-02 10:00"))
    due = at("2026-11-19 12:00")
    for text in ("Follow up!", "Follow-up with the client", "Check the contract", "Проверить договор"):
        acc.task(101, at("2026-11-18 09:00"), due, text=text, entity_id=1)
    r = compute_kpis(acc.context(tmp_path, now="2026-11-19 11:00"))
    # default: at least 3 words; "follow up" is generic, "followup with the client" is 4 words
    assert audit(r, 101)["specific_pct"] == pytest.approx(100 * 2 / 4)
    r = compute_kpis(acc.context(tmp_path / "p", now="2026-11-19 11:00", min_task_words=2,
                                 generic_task_texts=["проверить договор"]))
    # 2 words suffice now: "follow up" (no longer generic) and "check the contract" pass
    assert audit(r, 101)["specific_pct"] == pytest.approx(100 * 3 / 4)


def test_due_today_and_tomorrow_in_the_current_week(tmp_path):
    acc = Account()
    people(acc)
    acc.lead(1, 101, at("2026-11-02 10:00"))
    acc.lead(3, 101, at("2026-11-02 10:00"), deleted=True)
    acc.task(101, at("2026-11-16 09:00"), at("2026-11-22 18:00"), entity_id=1)  # Sunday: today
    acc.task(101, at("2026-11-16 09:00"), at("2026-11-22 09:00"), entity_id=1)  # today, already overdue
    acc.task(101, at("2026-11-16 09:00"), at("2026-11-23 10:00"), entity_id=1)  # tomorrow, next week
    acc.task(102, at("2026-11-16 09:00"), at("2026-11-23 23:59"), entity_id=1)  # tomorrow
    acc.task(102, at("2026-11-16 09:00"), at("2026-11-22 10:00"), entity_id=1, completed=True, result="x y")
    acc.task(101, at("2026-11-16 09:00"), at("2026-11-22 10:00"), entity_id=3)  # deleted lead
    acc.task(101, at("2026-11-16 09:00"), at("2026-11-24 10:00"), entity_id=1)  # the day after tomorrow
    ctx = acc.context(tmp_path, week="current", now="2026-11-22 12:00")
    r = compute_kpis(ctx)
    assert r["week"] == "2026-W47"
    assert (audit(r, 101)["due_today"], audit(r, 101)["due_tomorrow"]) == (2, 1)
    assert (audit(r, 102)["due_today"], audit(r, 102)["due_tomorrow"]) == (0, 1)
    assert (audit(r, "team")["due_today"], audit(r, "team")["due_tomorrow"]) == (2, 2)
    due = due_tasks(ctx)
    assert due["day"].tolist() == ["today", "today", "tomorrow", "tomorrow"]
    assert due["manager"].tolist() == [101, 101, 101, 102]
    # the overdue share counts open tasks due before as_of = now
    assert audit(r, 101)["overdue_pct"] == pytest.approx(100 * 1 / 2)


def test_achievable_allows_a_minute_of_grace_before_creation(tmp_path):
    """§6 A: ``complete_till >= created_at − 60``; a task due 61 s before it was created is born overdue."""
    acc = Account()
    people(acc)
    acc.lead(1, 101, at("2026-11-02 10:00"))
    created = at("2026-11-18 12:00")
    ids = {lag: acc.task(101, created, created - lag, entity_id=1, completed=True, result="done it")
           for lag in (0, 30, 60, 61, 3600)}
    ctx = acc.context(tmp_path)
    detail = block_detail(ctx, "smart_audit").set_index("task_id")
    assert {lag: bool(detail.loc[task, "A"]) for lag, task in ids.items()} == \
        {0: True, 30: True, 60: True, 61: False, 3600: False}
    assert audit(compute_kpis(ctx), 101)["achievable_pct"] == pytest.approx(100 * 3 / 5)
