"""Every notebook with every params file, executed on the demo account and opened in Chromium.

Each params file drives one weekly run (all six notebooks in parallel, as ``kpi-report run``
does); the tests below share those runs.  The first run also carries fake secrets in its
environment, to prove none of them reaches a notebook, its metadata or a page.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import papermill
import pytest

from kpi_lib.config import NOTEBOOK_PARAMETERS, load_settings, read_params_file
from kpi_lib.cardrun import CARD_NOTEBOOK
from kpi_lib.report import NOTEBOOKS, render_week
from tests.conftest import DEMO_AS_OF

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_FILES = sorted((ROOT / "notebooks").glob("*.ipynb"))
PARAMS_FILES = sorted((ROOT / "params").glob("*.yaml"))
SECRETS = {"AMOCRM_TOKEN": "tok-Sekr3t-amo-4411", "AMOCRM_CLIENT_SECRET": "cs-Sekr3t-client-9921",
           "SMTP_PASSWORD": "pw-Sekr3t-smtp-7730"}
MAX_PAGE = 2 * 1024 * 1024


@pytest.fixture(scope="session")
def weekly_runs(demo_store, tmp_path_factory):
    """One weekly run per params file on the demo account: {params name: (exit code, week folder)}."""
    runs = {}
    saved = {name: os.environ.get(name) for name in SECRETS}
    os.environ.update(SECRETS)
    try:
        for params in PARAMS_FILES:
            out = tmp_path_factory.mktemp(f"reports-{params.stem}")
            settings = load_settings(params, overrides={"data_dir": str(demo_store), "as_of": DEMO_AS_OF})
            code = 0 if render_week(settings, out, timeout=300).ok else 1
            runs[params.stem] = (code, out / "2026-W47", settings.lang)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return runs


def test_notebooks_are_committed_clean_and_thin():
    assert [p.stem for p in NOTEBOOK_FILES] == list(NOTEBOOKS) + [CARD_NOTEBOOK]
    for path in NOTEBOOK_FILES:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.nbformat == 4 and nb.metadata["kernelspec"]["name"] == "python3", path.name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: first cell is not tagged parameters"
        for cell in code:
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs committed"
            assert not re.search(r"^\s*(def|for|while|class) ", cell.source, re.M), f"{path.name}: logic in a cell"
            assert "os.environ" not in cell.source and "getenv" not in cell.source


@pytest.mark.parametrize("params", PARAMS_FILES, ids=lambda p: p.name)
def test_params_file_matches_every_notebook(params):
    """papermill only warns about unknown names: check every key against every notebook's parameters."""
    keys = set(read_params_file(params))
    load_settings(params)  # validates the kpi: and email: sections
    for path in NOTEBOOK_FILES:
        declared = set(papermill.inspect_notebook(str(path)))
        card = {"manager"} if path.stem == CARD_NOTEBOOK else set()  # the card's own parameter
        assert declared == set(NOTEBOOK_PARAMETERS) | card, path.name
        assert keys <= declared, f"{params.name} sets {sorted(keys - declared)} unknown to {path.name}"


@pytest.mark.slow
@pytest.mark.parametrize("params", [p.stem for p in PARAMS_FILES])
def test_every_notebook_executes(weekly_runs, params):
    code, week, lang = weekly_runs[params]
    summary = json.loads((week / "summary.json").read_text(encoding="utf-8"))
    assert code == 0 and summary["ok"], [n for n in summary["notebooks"] if not n["ok"]]
    assert summary["lang"] == lang and summary["week"] == "2026-W47"
    assert [c["file"] for c in summary["charts"]] == [f"charts/{block}.png" for block in NOTEBOOKS.values()]
    assert all((week / c["file"]).read_bytes()[:4] == b"\x89PNG" for c in summary["charts"])
    for name in NOTEBOOKS:
        nb = nbformat.read(week / "notebooks" / f"{name}.ipynb", as_version=4)
        assert nb.metadata["papermill"]["parameters"]["lang"] == lang
        assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code"), name
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, name
        html = (week / f"{name}.html").read_text(encoding="utf-8")
        assert html.count("<section") >= 7 and f'lang="{lang}"' in html
        assert (week / f"{name}.html").stat().st_size < MAX_PAGE
    assert len(summary["cards"]) == 7 and all(c["ok"] for c in summary["cards"]), summary["cards"]
    for card in summary["cards"]:
        nb = nbformat.read(week / "notebooks" / "managers" / f"{card['manager']}.ipynb", as_version=4)
        assert nb.metadata["papermill"]["parameters"]["manager"] == int(card["manager"])
        assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        html = (week / card["html"]).read_text(encoding="utf-8")
        assert html.count("<section") >= 3 and f'lang="{lang}"' in html and len(html) < MAX_PAGE


@pytest.mark.slow
def test_russian_run_speaks_russian(weekly_runs):
    _, week, _ = weekly_runs["weekly_ru"]
    html = (week / "04_average_check.html").read_text(encoding="utf-8")
    assert "Средний чек" in html and "Как это считается" in html
    assert re.search(r"\d{1,3}(\u00a0\d{3})+\u00a0₽", html), "money is not formatted the Russian way"
    index = (week / "index.html").read_text(encoding="utf-8")
    assert "Сводка" in index and "Average check" not in index


@pytest.mark.slow
def test_no_secret_reaches_a_notebook_or_a_page(weekly_runs):
    _, week, _ = weekly_runs["weekly"]
    files = [p for p in week.rglob("*") if p.is_file()]
    assert any(p.suffix == ".ipynb" for p in files) and any(p.suffix == ".html" for p in files)
    for path in files:
        content = path.read_bytes()
        for value in SECRETS.values():
            assert value.encode() not in content, f"{value} leaked into {path}"


@pytest.mark.slow
@pytest.mark.parametrize("params", [p.stem for p in PARAMS_FILES])
def test_pages_open_cleanly_in_chromium(weekly_runs, params, tmp_path):
    from tests.browser import check_page

    _, week, _ = weekly_runs[params]
    pages = [week / f"{name}.html" for name in NOTEBOOKS] + [week / "index.html", week.parent / "index.html"]
    pages.append(week / json.loads((week / "summary.json").read_text(encoding="utf-8"))["cards"][0]["html"])
    for page in pages:
        shot = tmp_path / f"{page.parent.name}-{page.stem}.png"
        report = check_page(page, screenshot=shot)
        assert report.console_errors == [], (page.name, report.console_errors)
        assert report.broken_images == [], (page.name, report.broken_images)
        assert report.code_cells_visible == 0, page.name
        assert report.external_requests == [] and report.dialogs == [], page.name
        assert shot.stat().st_size > 10_000
        assert page.stat().st_size < MAX_PAGE, page.name
        if page.name != "index.html" and page.parent.name != "managers":
            assert report.images >= 3, (page.name, report.images)  # team trend, per-manager trends, distribution
            assert "import " not in report.text and "open_report" not in report.text


@pytest.mark.slow
def test_items_behind_each_figure_open_without_javascript(weekly_runs):
    from tests.browser import open_details

    for params, pages in (("weekly", ("03_first_call_quality", "02_cost_of_service", "06_smart_audit")),
                          ("weekly_ru", ("01_customer_satisfaction",))):
        _, week, _ = weekly_runs[params]
        for name in pages:
            page = week / f"{name}.html"
            html = page.read_text(encoding="utf-8")
            sections = open_details(page, "details.kpi-items-manager")
            assert sections, name
            for section in sections:
                assert section["id"].startswith("items-") and f'href="#{section["id"]}"' in html, name
                assert section["hidden_before"] and section["shown_after"], (name, section["id"])
                assert section["links"] and all(
                    re.fullmatch(r"https://demo-sales\.amocrm\.ru/(leads|contacts|companies)/detail/\d+", href)
                    for href in section["links"]), name
            assert page.stat().st_size < MAX_PAGE
