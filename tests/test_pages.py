"""What a reader sees: the pages in headless Chromium, and the charts' own texts and scales."""

from __future__ import annotations

import re

import pytest
from matplotlib.text import Text

from kpi_lib import plots
from kpi_lib.report import render_week
from kpi_lib.views import open_report, tick_digits
from tests.conftest import DEMO_AS_OF
from tests.test_report import notebooks_dir, settings_for

NBSP = "\u00a0"


@pytest.fixture(scope="module")
def ru_week(demo_store, tmp_path_factory):
    """The Russian reports of 2026-W47 (FCR still provisional on 25 Nov), then an English index over them."""
    tmp = tmp_path_factory.mktemp("pages")
    out = tmp / "reports"
    nbs = notebooks_dir(tmp, "03_first_call_quality", "05_manager_productivity", "06_smart_audit")
    run = render_week(settings_for(demo_store, lang="ru"), out, notebooks_dir=nbs)
    assert run.ok, [n.error for n in run.notebooks]
    return out, out / run.week


@pytest.mark.slow
def test_russian_pages_read_as_russian_with_no_stray_code(ru_week):
    from tests.browser import check_page

    out, week = ru_week
    for page in [*sorted(week.glob("0*.html")), week / "index.html", out / "index.html"]:
        shown = check_page(page)
        assert not shown.console_errors and not shown.broken_images, page.name
        text = shown.text
        assert "None" not in text, page.name  # a Jinja variable named `none` printed Python's None
        assert "--week" not in text and "kpi-report" not in text, page.name  # no command lines for management
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", text), page.name  # no raw ISO times
        assert not re.search(r"\d%", text), page.name  # Russian writes "90 %"
    smart = check_page(week / "06_smart_audit.html").text
    from kpi_lib import i18n

    quality = smart.split(i18n.text("sec.quality", "ru"), 1)[1]
    assert quality.lstrip().startswith(i18n.text("dq.none", "ru"))  # where "None" used to be


@pytest.mark.slow
def test_every_method_section_links_to_the_definitions(ru_week):
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM_ARGS, chromium_path

    out, week = ru_week
    assert (out / "kpi-definitions.html").is_file()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto((week / "03_first_call_quality.html").as_uri())
            link = page.locator("a", has_text="kpi-definitions.md")
            assert link.count() == 1
            page.goto(link.evaluate("a => a.href"))
            assert "§" in page.inner_text("body") or "fcr_pct" in page.inner_text("body")
            assert page.locator("h1, h2").count() > 3  # rendered from Markdown, not shown as text
        finally:
            browser.close()


@pytest.mark.slow
def test_the_provisional_fcr_shows_the_last_final_figure_beside_it(ru_week):
    from tests.browser import check_page

    _, week = ru_week
    text = check_page(week / "03_first_call_quality.html").text
    assert "Предварительно" in text
    match = re.search(r"окончательное значение за 2026-W46: (\d+,\d)" + NBSP + "%", text)
    assert match, text[:2000]


@pytest.mark.slow
def test_the_index_of_all_weeks_shows_a_readable_time(ru_week, demo_store):
    from kpi_lib.render import write_reports_index
    from tests.browser import check_page

    out, _ = ru_week
    write_reports_index(out, "en", "20261201T000000Z-test")
    text = check_page(out / "index.html").text
    assert re.search(r"\d+\s[A-Z][a-z]{2} 2026, \d\d:\d\d \((Europe/Moscow|UTC\+03:00)\)", text), text
    assert not re.search(r"\d{4}-\d\d-\d\dT", text)


def test_the_check_x_calls_index_is_named_in_plain_words_and_stays_in_supporting(demo_store):
    report = open_report("productivity", as_of=DEMO_AS_OF, lang="en", data_dir=str(demo_store))
    assert "Index: average check × connected calls per active day" in report.supporting().markup
    assert "× calls" not in report.headline().markup + report.manager_table().markup


# -- charts: texts and scales of the figures the pages show -------------------------------------

@pytest.fixture()
def figures(monkeypatch):
    """The figures the charts draw, kept as they go to PNG."""
    drawn = []
    real = plots._png

    def keep(fig, *args, **kwargs):
        fig.canvas.draw()
        drawn.append(fig)
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(plots, "_png", keep)
    return drawn


def drawn_texts(fig) -> list[Text]:
    """The texts a chart shows: titles, labels, annotations, legends and the ticks inside the view."""
    shown = []
    for ax in fig.axes:
        shown += [ax.title, ax._left_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        for axis, (low, high) in ((ax.xaxis, sorted(ax.get_xlim())), (ax.yaxis, sorted(ax.get_ylim()))):
            shown += [tick.label1 for tick in axis.get_major_ticks() if low - 1e-9 <= tick.get_loc() <= high + 1e-9]
        if ax.get_legend():
            shown += ax.get_legend().get_texts()
    for legend in fig.legends:
        shown += legend.get_texts()
    return [t for t in shown if t.get_visible() and t.get_text()]


def texts(fig) -> list[str]:
    return [t.get_text() for t in drawn_texts(fig)]


def inside(fig) -> list[str]:
    """Texts that stick out of the figure (cut off in the PNG)."""
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    out = []
    for t in drawn_texts(fig):
        ext = t.get_window_extent(renderer)
        if ext.x0 < box.x0 - 1 or ext.x1 > box.x1 + 1 or ext.y0 < box.y0 - 1 or ext.y1 > box.y1 + 1:
            out.append(t.get_text())
    return out


def test_speed_to_lead_buckets_keep_one_unit(demo_store, figures):
    report = open_report("first_call", as_of=DEMO_AS_OF, lang="en", data_dir=str(demo_store))
    report.distribution_chart()
    labels = texts(figures[-1])
    assert "30–60 min" in labels and "1–2 h" in labels and "≤ 5 min" in labels
    assert not any(re.fullmatch(r"\d+–1 min", x) for x in labels)


def test_ticks_show_what_they_mean(demo_store, figures):
    en = open_report("first_call", as_of=DEMO_AS_OF, lang="en", data_dir=str(demo_store))
    assert en.axis_formatter("fcr_pct")(7.5) == "7.5%" and en.axis_formatter("fcr_pct")(80) == "80%"
    ru = open_report("first_call", as_of=DEMO_AS_OF, lang="ru", data_dir=str(demo_store))
    assert ru.axis_formatter("fcr_pct")(90) == f"90{NBSP}%" and ru.axis_formatter("fcr_pct")(7.5) == f"7,5{NBSP}%"
    assert [tick_digits(v) for v in (5, 7.5, 0.25, 120000)] == [0, 1, 2, 0]
    ru.headline()
    labels = texts(figures[-1])
    assert f"70{NBSP}%" in labels  # the target line's own tick
    assert "нед. 46" in labels and not any(x.startswith("W") for x in labels)
    assert not any(re.fullmatch(r"\d+%", x) for x in labels)


def test_the_money_axis_of_a_russian_page_says_rubles(demo_store, figures):
    open_report("average_check", as_of=DEMO_AS_OF, lang="ru", data_dir=str(demo_store)).distribution_chart()
    labels = texts(figures[-1])
    assert "бюджет сделки, ₽" in labels and not any("RUB" in x for x in labels)


def test_small_multiples_share_one_y_scale_with_a_target_tick(demo_store, figures):
    open_report("first_call", as_of=DEMO_AS_OF, lang="en", data_dir=str(demo_store)).trend_chart()
    fig = figures[-1]
    panels = [ax for ax in fig.axes if ax.get_lines() and any(len(line.get_xdata()) > 2 for line in ax.get_lines())]
    assert len(panels) >= 6
    assert len({tuple(round(v, 6) for v in ax.get_ylim()) for ax in panels}) == 1
    assert all(70 in [round(v, 6) for v in ax.get_yticks()] for ax in panels)


@pytest.mark.parametrize("lang", ["en", "ru"])
@pytest.mark.parametrize("block", ["customer_satisfaction", "cost_of_service", "first_call", "average_check",
                                   "productivity", "smart_audit"])
def test_no_chart_text_is_cut_off(demo_store, figures, block, lang):
    report = open_report(block, as_of=DEMO_AS_OF, lang=lang, data_dir=str(demo_store))
    report.headline(), report.trend_chart(), report.distribution_chart()
    assert figures
    for fig in figures:
        assert inside(fig) == [], (block, lang)


def test_a_long_title_is_wrapped_not_cut_off(figures):
    title = "Скорость реакции на новые сделки (рабочее время до первого звонка) по всем менеджерам отдела продаж"
    plots.plot_bars(["a", "b"], [1, 2], title=title)
    fig = figures[-1]
    assert inside(fig) == []
    shown = next(t for t in texts(fig) if t.startswith("Скорость"))
    assert "\n" in shown


def test_the_emails_text_part_writes_money_with_its_currency_and_one_timezone(ru_week, demo_store):
    from zoneinfo import ZoneInfo

    from kpi_lib.mail import build_message

    _, week = ru_week
    msg = build_message(week, settings_for(demo_store, lang="ru"), tz=ZoneInfo("Europe/Moscow"))
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for part in (text, html):
        targets = re.findall(r"(?:Средний чек|Выручка за активный день)[^\n]*?цель ≥ ([\d" + NBSP + r" ]+[^\s)<]*)", part)
        assert targets and all(t.endswith("₽") for t in targets), targets
        zones = set(re.findall(r"\d\d:\d\d \(([^)]+)\)", part))
        assert zones == {"Europe/Moscow"}, zones
