"""The items behind a figure on the report pages: in words, per manager and reason, in en and ru.

The built week of ``test_kpis_detail`` goes through the week's snapshot (``build_week_data``)
into each block's page section; every sentence below is worked out from the items it holds.
"""

from __future__ import annotations

import re

import pytest

from kpi_lib.drilldown import format_duration, group_items
from kpi_lib.kpis import pick_items_pulling_down
from kpi_lib.views import BlockReport
from kpi_lib.weekdata import build_week_data
from test_kpis_detail import NOW, URL, week_account


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    ctx = week_account().context(tmp_path_factory.mktemp("drill"), now=NOW)
    return build_week_data(ctx.settings, ctx=ctx)


def section(data, block, lang="en") -> str:
    return BlockReport(data, block, lang).items_behind().markup


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("\u00a0", " ")


def test_first_call_reasons_in_words(data):
    html = section(data, "first_call")
    assert html.count("<details") == 2 and 'id="items-101"' in html and 'id="items-102"' in html
    words = text_of(html)
    assert "#2 Станки — the customer called back on Tue 17 Nov at 15:20" in words
    assert "#3 Вентиляторы — another connected call on Wed 18 Nov at 12:00" in words
    assert "#3 Вентиляторы — no stage advance within 7 days of the first call on Mon 16 Nov at 12:00" in words
    assert "#4 Склад — no stage advance within 7 days" in words  # the lead reached through its contact
    assert "#5 Офис — created Thu 19 Nov at 10:00, not called yet: waiting 1 d 8 h" in words
    assert "#4 Склад — first call on Tue 17 Nov at 09:30, after 30 min of business time" in words
    assert f'<a href="{URL.format(2)}" target="_blank" rel="noopener">#2 Станки</a>' in html
    assert "#1 Кофемашины" not in words  # resolved, and called within 5 business minutes
    assert "<script" not in html


def test_escalations_in_words(data):
    words = text_of(section(data, "cost_of_service"))
    assert "task to Елена Смирнова: «согласовать скидку» (Wed 18 Nov at 14:00)" in words
    assert "taken over by Елена Смирнова on Thu 19 Nov at 10:00" in words
    assert "supervisor call, 12 min (Елена Смирнова, Thu 19 Nov at 16:00)" in words
    assert "Борис" not in words  # no escalation of 102: no section for him
    ru = text_of(section(data, "cost_of_service", "ru"))
    assert "задача руководителю (Елена Смирнова): «согласовать скидку» (ср 18 ноября в 14:00)" in ru
    assert "звонок руководителя, 12 мин" in ru and "Задачи, поставленные руководителю (1)" in ru


def test_csat_lost_and_tasks_to_rewrite(data):
    assert "#11 Повторная покупка — scored 2 of 5, won on Wed 18 Nov at 12:00, 2,000 RUB" in text_of(
        section(data, "customer_satisfaction"))
    assert "#13 Отказ — lost on Thu 19 Nov at 12:00, 500 RUB" in text_of(section(data, "average_check"))
    assert "#12 Без бюджета — won on Wed 18 Nov at 13:00 without a price" in text_of(section(data, "productivity"))
    audit = text_of(section(data, "smart_audit"))
    assert "Tasks to rewrite: not specific (1) #1 Кофемашины — «Позвонить», due Tue 17 Nov at 18:00" in audit
    assert ("Tasks to rewrite: overdue or done late (1) #3 Вентиляторы — «Отправить коммерческое предложение "
            "клиенту», due Wed 18 Nov at 18:00, still open") in audit
    ru = text_of(section(data, "smart_audit", "ru"))
    assert "Переписать задачи: неконкретный текст (1)" in ru and "срок вт 17 ноября в 18:00" in ru


def test_manager_table_links_to_the_items(data):
    table = BlockReport(data, "first_call", "en").manager_table().markup
    assert 'href="#items-101"' in table and 'href="#items-102"' in table
    table = BlockReport(data, "cost_of_service", "en").manager_table().markup
    assert 'href="#items-101"' in table and 'href="#items-102"' not in table
    assert 'href="#items"' in table  # the team's figure leads to the whole section
    assert 'id="items"' in section(data, "cost_of_service")


def test_nothing_to_show_and_long_lists(data):
    empty = {block: frame.iloc[0:0] for block, frame in data.details.items()}
    data_empty = type(data)(**{**data.__dict__, "details": empty})
    assert "Nothing pulls this figure down this week." in section(data_empty, "first_call")
    items = pick_items_pulling_down(data.details)
    many = items.loc[items["reason"] == "E1"].sample(40, replace=True, random_state=1)
    (group,) = group_items(many, "en", limit=30)
    assert group["n"] == 40 and len(group["entries"]) == 30 and group["more"] == 10
    assert format_duration(59.6, "en") == "1\u00a0h" and format_duration(3 * 1440 + 5, "ru") == "3\u00a0дн"


def test_a_task_on_a_contact_is_labelled_by_its_contact(data):
    items = pick_items_pulling_down(data.details)
    task = items.loc[items["reason"] == "not_specific"].copy()
    assert task[["entity_type", "entity_id"]].values.tolist() == [["leads", 1]]
    task["lead_id"], task["entity_type"], task["entity_id"] = None, "contacts", 501
    (group,) = group_items(task, "ru")
    assert group["entries"][0]["label"] == "контакт #501"
