"""Why the figures moved, as a reader sees it: the page's opening sentence, the manager table's
change column and funnel plot, the scorecard index's changes, links and driver sentences —
from a real weekly run on the demo account, opened in headless Chromium."""

from __future__ import annotations

import json
import re
from html import escape
from datetime import datetime, timezone

import pytest

from kpi_lib import explain
from kpi_lib.kpis import compute_moves, load_context
from kpi_lib.render import write_index
from kpi_lib.report import render_week
from kpi_lib.weekdata import build_week_data
from test_report import notebooks_dir, settings_for

pytestmark = pytest.mark.slow
WEEK = "2026-W47"


@pytest.fixture(scope="module")
def week_run(demo_store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("drivers-run")
    nbs = notebooks_dir(tmp, "01_customer_satisfaction", "03_first_call_quality")
    settings = settings_for(demo_store, week=WEEK)
    run = render_week(settings, tmp / "reports", notebooks_dir=nbs)
    assert run.ok
    return settings, run, tmp / "reports" / WEEK


def test_every_page_opens_with_the_driver_sentence(week_run):
    from tests.browser import check_page

    settings, _, folder = week_run
    data = build_week_data(settings)
    moves, names = data.moves, data.names("Team")
    assert moves == compute_moves(load_context(settings))  # the snapshot holds the drivers, computed once
    for page, block in (("01_customer_satisfaction.html", "customer_satisfaction"),
                        ("03_first_call_quality.html", "first_call")):
        shown = check_page(folder / page)
        assert shown.console_errors == [] and shown.broken_images == []
        sentence = explain.describe_move(moves[block], block, names, "en")
        text = shown.text.replace("\u00a0", " ")
        assert sentence.replace("\u00a0", " ") in text
        assert text.index(sentence.replace("\u00a0", " ")[:40]) < text.index(f"Team, {WEEK}")  # it opens the page
        # the manager table: the same change as the headline, one arrow rule, the adjusted rate, the funnel plot
        html = (folder / page).read_text(encoding="utf-8")
        record = moves[block]
        arrow, _ = explain.change_arrow(record["key"], record["value"], record["previous"], ">=")
        change = explain.format_change(record["key"], record["change"], "en")
        assert f"{arrow} {change} against the previous week" in html
        team_row = re.search(r'<tr class="kpi-team">(.*?)</tr>', html, re.S).group(1)
        assert f"{arrow} {change}" in team_row
        assert "Adjusted for n" in text and "empirical Bayes" in text
        assert "data-kpi-funnel" in html and "against n, with 95% and 99.8% limits" in html
        assert "rising" not in text and "falling" not in text


def test_the_index_shows_changes_links_and_driver_sentences(week_run):
    from tests.browser import check_page

    settings, run, folder = week_run
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    card = summary["scorecard"]
    shown = check_page(folder / "index.html")
    assert shown.console_errors == []
    text = shown.text.replace("\u00a0", " ")
    for d in card["drivers"]:
        assert d["sentence"].replace("\u00a0", " ") in text
    assert text.index("Why the figures moved") > text.index("Manager")  # under the table
    for row in card["rows"]:
        for cell, col in zip(row["cells"], card["columns"]):
            if cell["previous"] is None or cell["value"] is None:
                assert cell["change_display"] == "·"
                continue
            arrow, css = explain.change_arrow(col["key"], cell["value"], cell["previous"], col["direction"])
            assert cell["change_display"].startswith(arrow) and cell["change_class"] == css
            shown_change = explain.rounded(col["key"], cell["value"] - cell["previous"])
            assert (arrow == "▲") == (shown_change > 0) and (arrow == "▼") == (shown_change < 0)
    team = card["rows"][-1]
    for cell in team["cells"]:
        assert cell["change_display"].replace("\u00a0", " ") in text and f"n = {cell['n']}" in text
    html = (folder / "index.html").read_text(encoding="utf-8")
    pages = {c["block"]: c["href"] for c in card["columns"]}
    assert pages["customer_satisfaction"] == "01_customer_satisfaction.html" and pages["average_check"] is None
    assert html.count('href="03_first_call_quality.html"') >= len(card["rows"]) + 1  # the head and every figure
    assert "✓" in text or "✗" in text
    assert "managers/" not in html  # no card was built: no link to one

    # with the managers' cards in the week folder, each name links to its card
    data = build_week_data(settings)
    (folder / "managers").mkdir(exist_ok=True)
    for row in card["rows"][:-1]:
        (folder / "managers" / f"{row['manager']}.html").write_text("<p>card</p>", encoding="utf-8")
    write_index(folder, run, data, settings, datetime.now(timezone.utc))
    html = (folder / "index.html").read_text(encoding="utf-8")
    for row in card["rows"][:-1]:
        assert f'<a href="managers/{row["manager"]}.html">{escape(row["name"])}</a>' in html
