"""The weekly run's guarantees: failures leave artefacts and keep the last good report, the
index pages, escaping of CRM text, the figures cache, and the report language's formats.

Runs here use a copy of only the notebooks a test needs, to keep them quick.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import nbformat
import pytest

from kpi_lib import i18n
from kpi_lib.config import load_settings
from kpi_lib.errors import KpiError
from kpi_lib.cli import print_run
from kpi_lib.report import render_week
from kpi_lib.store import Store
from tests.conftest import DEMO_AS_OF

ROOT = Path(__file__).resolve().parent.parent
EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def notebooks_dir(tmp_path: Path, *names: str, broken: str | None = None) -> Path:
    """A folder with copies of the named notebooks; ``broken`` gets a failing last cell."""
    folder = tmp_path / ("nb-broken" if broken else "nb")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for name in names:
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        if name == broken:
            nb.cells.append(nbformat.v4.new_code_cell('raise RuntimeError("boom <b>bold</b>")'))
        nbformat.write(nb, folder / f"{name}.ipynb")
    return folder


def settings_for(data_dir: Path, **overrides):
    return load_settings(overrides={"data_dir": str(data_dir), "as_of": DEMO_AS_OF, **overrides})


@pytest.mark.slow
def test_failed_notebook_keeps_the_last_good_report(demo_store, tmp_path, capsys):
    out, settings = tmp_path / "reports", settings_for(demo_store)
    good = notebooks_dir(tmp_path, "04_average_check", "06_smart_audit")
    assert render_week(settings, out, notebooks_dir=good).ok
    week = out / "2026-W47"
    previous_html = (week / "06_smart_audit.html").read_bytes()
    previous_nb = (week / "notebooks" / "06_smart_audit.ipynb").read_bytes()

    broken = notebooks_dir(tmp_path, "04_average_check", "06_smart_audit", broken="06_smart_audit")
    run = render_week(settings, out, notebooks_dir=broken)
    assert not run.ok
    assert (week / "06_smart_audit.html").read_bytes() == previous_html
    assert (week / "notebooks" / "06_smart_audit.ipynb").read_bytes() == previous_nb
    failed_page = (week / "06_smart_audit.failed.html").read_text(encoding="utf-8")
    from tests.browser import check_page

    shown = check_page(week / "06_smart_audit.failed.html")
    assert shown.console_errors == [] and "boom <b>bold</b>" in shown.text
    assert "RuntimeError" in failed_page and "boom &lt;b&gt;bold&lt;/b&gt;" in failed_page
    assert "<b>bold</b>" not in failed_page
    failed_nb = nbformat.read(week / "notebooks" / "06_smart_audit.failed.ipynb", as_version=4)
    assert any(o.get("output_type") == "error" for c in failed_nb.cells for o in c.get("outputs", []))
    index = (week / "index.html").read_text(encoding="utf-8")
    assert 'href="06_smart_audit.failed.html"' in index and 'href="06_smart_audit.html"' in index
    summary = json.loads((week / "summary.json").read_text(encoding="utf-8"))
    assert summary["ok"] is False
    entry = next(n for n in summary["notebooks"] if n["name"] == "06_smart_audit")
    assert entry == {"name": "06_smart_audit", "title": "SMART task audit", "html": "06_smart_audit.failed.html",
                     "ok": False, "error": entry["error"]} and "RuntimeError" in entry["error"]
    assert next(n for n in summary["notebooks"] if n["name"] == "04_average_check")["ok"] is True
    assert not list(out.glob(".*staging*")), "the staging folder was left behind"
    assert [p.name for p in (out / ".weeks" / "2026-W47").iterdir()] == [week.resolve().name]

    assert render_week(settings, out, notebooks_dir=good).ok  # a good run clears the failure marks
    assert not (week / "06_smart_audit.failed.html").exists()
    assert not (week / "notebooks" / "06_smart_audit.failed.ipynb").exists()
    assert "failed.html" not in (week / "index.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_run_exits_non_zero_on_a_failed_notebook_and_says_so(demo_store, tmp_path, capsys):
    broken = notebooks_dir(tmp_path, "01_customer_satisfaction", broken="01_customer_satisfaction")
    assert print_run(render_week(settings_for(demo_store), tmp_path / "reports", notebooks_dir=broken), 1.0) == 1
    err = capsys.readouterr().err
    assert "01_customer_satisfaction" in err and "failed" in err


@pytest.mark.slow
def test_a_notebook_over_its_timeout_fails_with_an_artefact(demo_store, tmp_path):
    folder = tmp_path / "slow"
    folder.mkdir()
    nb = nbformat.read(ROOT / "notebooks" / "01_customer_satisfaction.ipynb", as_version=4)
    nb.cells = nb.cells[:1] + [nbformat.v4.new_code_cell("import time\ntime.sleep(120)")]
    nbformat.write(nb, folder / "01_customer_satisfaction.ipynb")
    started = datetime.now()
    run = render_week(settings_for(demo_store), tmp_path / "reports", notebooks_dir=folder, timeout=20)
    assert (datetime.now() - started).total_seconds() < 100
    assert not run.ok and "did not finish within 20 s" in run.notebooks[0].error
    week = run.folder
    assert (week / "01_customer_satisfaction.failed.html").exists()
    kept = nbformat.read(week / "notebooks" / "01_customer_satisfaction.failed.ipynb", as_version=4)
    assert kept.metadata["papermill"]["parameters"]["week"] == "2026-W47"


def test_a_bad_store_changes_nothing(demo_store, tmp_path):
    out = tmp_path / "reports"
    (out / "2026-W47").mkdir(parents=True)
    (out / "2026-W47" / "index.html").write_text("previous", encoding="utf-8")
    with pytest.raises(KpiError):
        render_week(settings_for(tmp_path / "no-data"), out)
    with pytest.raises(KpiError, match="424242"):  # a manager id the account does not have
        render_week(settings_for(demo_store, kpi={"managers": [424242]}), out)
    assert (out / "2026-W47" / "index.html").read_text(encoding="utf-8") == "previous"
    assert sorted(p.name for p in out.iterdir()) == ["2026-W47"]  # no lock file left behind


@pytest.mark.slow
def test_reports_index_lists_every_week_newest_first(demo_store, tmp_path):
    out, nbs = tmp_path / "reports", notebooks_dir(tmp_path, "04_average_check")
    (out / ".2026-W47.staging-killed" / "notebooks").mkdir(parents=True)  # as a killed run leaves it
    for week in ("2026-W46", "2026-W47"):
        assert render_week(settings_for(demo_store, week=week), out, notebooks_dir=nbs).ok
    index = (out / "index.html").read_text(encoding="utf-8")
    assert index.index("2026-W47/index.html") < index.index("2026-W46/index.html")
    assert not list(out.glob(".*staging*"))
    week_index = (out / "2026-W46" / "index.html").read_text(encoding="utf-8")
    assert "04_average_check.html" in week_index and "summary" not in week_index.lower()
    summary = json.loads((out / "2026-W46" / "summary.json").read_text(encoding="utf-8"))
    assert set(summary) >= {"week", "generated_at", "last_sync_at", "lang", "account", "ok", "notebooks",
                            "scorecard", "targets_met", "targets_total", "charts"}
    columns = summary["scorecard"]["columns"]
    assert [c["key"] for c in columns] == ["csat_pct", "escalation_rate_pct", "fcr_pct", "avg_check",
                                           "revenue_per_active_day", "smart_index"]
    rows = summary["scorecard"]["rows"]
    assert rows[-1]["manager"] == "team" and all(len(r["cells"]) == 6 for r in rows)
    assert 0 <= summary["targets_met"] <= summary["targets_total"] <= 6
    assert summary["charts"] == [{"file": "charts/average_check.png", "title": "Average check: Average check"}]
    assert (out / "2026-W46" / "charts" / "average_check.png").read_bytes()[:4] == b"\x89PNG"
    datetime.fromisoformat(summary["generated_at"])
    assert "synced before this week ended" not in week_index
    later = load_settings(overrides={"data_dir": str(demo_store), "as_of": "2026-12-25T12:00:00+03:00",
                                     "week": "2026-W48"})
    assert render_week(later, out, notebooks_dir=nbs).ok  # the demo was synced on 25 Nov, before W48 ended
    assert "synced before this week ended" in (out / "2026-W48" / "index.html").read_text(encoding="utf-8")


@pytest.fixture
def evil_store(demo_store, tmp_path):
    """The demo account plus a manager, a won deal and a task all named like a script."""
    data = tmp_path / "evil-data"
    data.mkdir()
    shutil.copy(demo_store / "demo.duckdb", data / "demo.duckdb")
    as_of = int(datetime.fromisoformat(DEMO_AS_OF).timestamp())
    with Store.open(data, "demo", read_only=False) as store:
        pipeline = int(store.frame("pipelines")["id"].iloc[0])
        with store.transaction():
            store.ingest("users", [{"id": 990001, "name": EVIL, "rights": {"is_admin": False, "is_active": True}}])
            store.ingest("leads", [{"id": 99000001, "name": EVIL, "price": 0, "responsible_user_id": 990001,
                                    "status_id": 142, "pipeline_id": pipeline, "created_by": 990001,
                                    "created_at": as_of - 5 * 3600, "updated_at": as_of - 3600,
                                    "closed_at": as_of - 3600}])
            store.ingest("tasks", [{"id": 99000001, "text": EVIL, "responsible_user_id": 990001, "created_by": 990001,
                                    "entity_type": "leads", "entity_id": 99000001, "is_completed": False,
                                    "created_at": as_of - 7200, "updated_at": as_of - 7200,
                                    "complete_till": as_of + 3600, "task_type_id": 1}])
    return data


@pytest.mark.slow
def test_crm_text_renders_as_text_everywhere(evil_store, tmp_path):
    from tests.browser import check_page

    out = tmp_path / "reports"
    nbs = notebooks_dir(tmp_path, "04_average_check", "06_smart_audit")
    run = render_week(settings_for(evil_store, week="current", lang="ru"), out, notebooks_dir=nbs)
    assert run.ok, [n.error for n in run.notebooks]
    week = out / run.week
    pages = sorted(week.glob("*.html")) + [out / "index.html"]
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert EVIL not in html, page.name
        report = check_page(page)
        assert report.dialogs == [] and report.console_errors == [], page.name
    for page in (week / "index.html", week / "04_average_check.html", week / "06_smart_audit.html"):
        assert ESCAPED in page.read_text(encoding="utf-8"), page.name
        assert EVIL in check_page(page).text, page.name
    audit = (week / "06_smart_audit.html").read_text(encoding="utf-8")
    due = audit[audit.index("Задачи на сегодня и завтра"):]
    assert ESCAPED in due and "https://" in due  # today's task is listed with its link into amoCRM
    summary = json.loads((week / "summary.json").read_text(encoding="utf-8"))
    assert EVIL in [r["name"] for r in summary["scorecard"]["rows"]]  # JSON keeps the text; pages escape it


def test_open_report_computes_alone(demo_store, tmp_path, monkeypatch):
    from kpi_lib.views import open_report

    monkeypatch.chdir(tmp_path)  # as in JupyterLab: not a run's folder
    report = open_report("average_check", week="2026-W47", as_of=DEMO_AS_OF, data_dir=str(demo_store), lang="en")
    team = report.kpis["team"]["avg_check"]
    with pytest.raises(KpiError, match="average_check"):
        open_report("avg", week="2026-W47", as_of=DEMO_AS_OF, data_dir=str(demo_store))
    assert i18n.format_money(team, "en", report.currency) in report.headline()._repr_html_()


@pytest.mark.parametrize("params", sorted((ROOT / "params").glob("*.yaml")), ids=lambda p: p.name)
def test_notebooks_find_the_runs_figures(demo_store, params):
    """The cache key a notebook computes from its parameters is the one the run wrote."""
    import ast

    from kpi_lib.report import load_run_context
    from kpi_lib.weekdata import cache_key

    run = load_run_context(load_settings(params, overrides={"data_dir": str(demo_store)})).settings
    # papermill writes the parameters into the notebook as Python literals
    received = {k: ast.literal_eval(repr(v)) for k, v in run.notebook_parameters().items()}
    assert cache_key(load_settings(overrides=received)) == cache_key(run)
    assert received["week"] == run.week and received["as_of"]


def test_report_styles_touch_only_report_outputs():
    """Outputs carry their stylesheet into JupyterLab too: every rule must stay inside .kpi."""
    css = re.sub(r"/\*.*?\*/", "", (ROOT / "kpi_lib" / "templates" / "report.css").read_text(encoding="utf-8"), flags=re.S)
    selectors = [sel.strip() for block in re.findall(r"([^{}]+)\{", css) for sel in block.split(",")]
    assert selectors and all(sel == ".kpi" or sel.startswith(".kpi ") for sel in selectors), selectors


def test_links_into_amocrm_only_for_a_plain_subdomain():
    from types import SimpleNamespace

    from kpi_lib.sections import crm_link

    def link(subdomain, entity_type="leads", entity_id=31460459):
        return crm_link(SimpleNamespace(data=SimpleNamespace(account={"subdomain": subdomain})), entity_type, entity_id)

    assert link("demo-sales") == "https://demo-sales.amocrm.ru/leads/detail/31460459"
    assert link("demo-sales", "contacts", 7) == "https://demo-sales.amocrm.ru/contacts/detail/7"
    assert link("evil.example/x?") is None and link(None) is None and link("demo", "unknown") is None
    assert link("demo", "leads", None) is None


def test_strings_exist_in_both_languages_with_the_same_placeholders():
    fields = re.compile(r"{(\w+)}")
    for key, entry in i18n.strings().items():
        assert set(entry) == {"en", "ru"} and entry["en"].strip() and entry["ru"].strip(), key
        assert set(fields.findall(entry["en"])) == set(fields.findall(entry["ru"])), key
    for key in i18n.KINDS:
        assert i18n.has_text(f"kpi.{key}"), key


def test_numbers_money_and_dates_follow_the_locale():
    nbsp = "\u00a0"
    assert i18n.format_money(1234567, "ru", "RUB") == f"1{nbsp}234{nbsp}567{nbsp}₽"
    assert i18n.format_money(1234567.4, "en", "RUB") == f"1,234,567{nbsp}RUB"
    assert i18n.format_pct(83.44, "ru") == f"83,4{nbsp}%" and i18n.format_pct(83.44, "en") == "83.4%"
    assert i18n.format_value("stl_median_min", 4.25, "en") == f"4.2{nbsp}min"
    assert i18n.format_value("won", 12, "ru") == "12" and i18n.format_value("csat_pct", None, "ru") == "нет данных"
    assert i18n.format_value("fcr_final", False, "ru") == "нет"
    assert i18n.format_date(datetime(2026, 11, 23), "ru") == f"23{nbsp}ноября 2026"
    assert i18n.format_number(-0.04, "en", 1) == "0.0"
