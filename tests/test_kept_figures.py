"""A closed week's figures kept beside the store: a notebook opened later with the same parameters
reads them instead of computing the week again, and never reads them once the data, the last sync,
the parameters or the code changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from kpi_lib import weekdata
from kpi_lib.config import load_settings
from kpi_lib.periods import parse_week
from kpi_lib.store import Store
from kpi_lib.weekdata import KEPT_DIR, build_week_data, dump_week_data, load_week_data
from tests.conftest import DEMO_AS_OF

ROOT = Path(__file__).resolve().parent.parent
WEEK = "2026-W46"


def settings_for(data_dir: Path, **overrides):
    return load_settings(overrides={"data_dir": str(data_dir), "as_of": DEMO_AS_OF, "week": WEEK, **overrides})


@pytest.fixture
def store(demo_store, tmp_path):
    """A copy of the demo store of this test's own (the tests write to it)."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(demo_store / "demo.duckdb", data / "demo.duckdb")
    return data


@pytest.fixture
def builds(monkeypatch):
    """The weeks computed from the store during the test."""
    seen = []
    real = weekdata.build_week_data

    def counting(settings, *args, **kwargs):
        seen.append(settings.week)
        return real(settings, *args, **kwargs)

    monkeypatch.setattr(weekdata, "build_week_data", counting)
    return seen


def kept_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / KEPT_DIR / "demo").glob("*.arrows"))


def same_figures(a, b) -> bool:
    b.key, b.now, b.settings = a.key, a.now, a.settings
    return dump_week_data(a) == dump_week_data(b)


def test_a_notebook_opened_later_reads_the_figures_the_first_one_computed(store, tmp_path, builds):
    first = load_week_data(settings_for(store), tmp_path)
    assert len(builds) == 1 and len(kept_files(store)) == 1
    folder, (kept,) = store / KEPT_DIR / "demo", kept_files(store)
    assert os.stat(folder).st_mode & 0o777 == 0o700 and os.stat(kept).st_mode & 0o777 == 0o600
    again = load_week_data(settings_for(store, lang="ru"), tmp_path)  # the language is not a figure
    assert len(builds) == 1
    assert again.settings.lang == "ru" and again.key == weekdata.cache_key(settings_for(store, lang="ru"))
    assert same_figures(first, again)
    other = load_week_data(settings_for(store, kpi={"fcr_window_days": 3}), tmp_path)
    assert len(builds) == 2 and len(kept_files(store)) == 2  # other parameters: other figures, kept beside
    fcr = lambda data: data.result["kpis"]["first_call"]["team"]["fcr_pct"]  # noqa: E731
    assert fcr(other) != fcr(first)  # a shorter window resolves more first calls


def test_a_closed_weeks_figures_do_not_follow_the_clock(store):
    """Why "now" is not part of what the kept figures are named after, once the week is over."""
    on_wednesday = build_week_data(settings_for(store))
    weeks_later = build_week_data(settings_for(store, as_of="2027-01-14T08:30:00+03:00"))
    assert on_wednesday.now != weeks_later.now
    assert same_figures(on_wednesday, weeks_later)


def test_a_sync_or_any_write_to_the_store_makes_the_week_computed_again(store, tmp_path, builds):
    before = load_week_data(settings_for(store, week="2026-W47"), tmp_path)

    def sync_at(day: int) -> bool:  # a sync that brought nothing new; is W47's first-call quality final?
        with Store.open(store, "demo", read_only=False) as s:
            s.mark_synced(datetime(2026, 11, day, 9, tzinfo=timezone.utc))
        return load_week_data(settings_for(store, week="2026-W47"), tmp_path).result["kpis"]["first_call"]["team"]["fcr_final"]

    assert sync_at(25) is False and len(builds) == 2
    assert sync_at(25) is False and len(builds) == 2  # the same sync: kept
    assert sync_at(30) is True and len(builds) == 3  # the window ended on the 29th: the synced data cover it
    assert len(kept_files(store)) == 1  # the figures of the older sync are gone

    week = before.week
    with Store.open(store, "demo", read_only=False) as s:  # a deal won in the week gets dearer
        body = s.con.execute("SELECT r.body FROM raw r JOIN leads l ON r.entity = 'leads' AND r.id = l.id::VARCHAR "
                             "WHERE l.status_id = 142 AND l.closed_at >= ? AND l.closed_at < ? AND l.price > 0 "
                             "AND NOT l.is_deleted ORDER BY l.id LIMIT 1",
                             [week.start_ts, week.end_ts]).fetchone()[0]
        lead = json.loads(body)
        lead["price"] += 1_000_000
        s.ingest("leads", [lead])
    changed = load_week_data(settings_for(store, week="2026-W47"), tmp_path)
    assert len(builds) == 4 and len(kept_files(store)) == 1
    revenue = lambda data: data.result["kpis"]["average_check"]["team"]["won_revenue"]  # noqa: E731
    assert revenue(changed) == revenue(before) + 1_000_000
    assert same_figures(changed, load_week_data(settings_for(store, week="2026-W47"), tmp_path)) and len(builds) == 4


def test_a_running_week_is_never_kept(store, tmp_path, builds):
    load_week_data(settings_for(store, week="current"), tmp_path)
    load_week_data(settings_for(store, week="current"), tmp_path)
    assert len(builds) == 2 and kept_files(store) == []


def test_only_a_private_whole_file_is_read(store, tmp_path, builds):
    first = load_week_data(settings_for(store), tmp_path)
    (kept,) = kept_files(store)
    kept.write_bytes(kept.read_bytes()[:1000])  # cut short, as a full disk would leave no file but say so
    assert same_figures(first, load_week_data(settings_for(store), tmp_path)) and len(builds) == 2
    assert kept_files(store) == [kept] and len(kept.read_bytes()) > 1000  # computed again, kept whole

    os.chmod(store / KEPT_DIR / "demo", 0o755)  # a folder others may enter is neither read nor written
    os.utime(kept, (0, 0))
    load_week_data(settings_for(store), tmp_path)
    assert len(builds) == 3 and os.stat(kept).st_mtime == 0


def test_a_notebook_opened_after_the_weekly_run_reads_the_runs_figures(store, tmp_path, monkeypatch):
    from kpi_lib import report
    from kpi_lib.report import render_week

    params = ROOT / "params" / "weekly.yaml"
    run_settings = load_settings(params, overrides={"data_dir": str(store), "as_of": DEMO_AS_OF})
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    shutil.copy(ROOT / "notebooks" / "04_average_check.ipynb", notebooks)
    computed = []
    monkeypatch.setattr(report, "build_week_data", lambda *a, **k: computed.append(build_week_data(*a, **k))
                        or computed[-1])
    run = render_week(run_settings, tmp_path / "reports", notebooks_dir=notebooks)
    assert run.ok and len(computed) == 1 and len(kept_files(store)) == 1

    def computing(*args, **kwargs):
        raise AssertionError("the week was computed again")

    monkeypatch.setattr(weekdata, "build_week_data", computing)
    # the analyst's session a week later, with the run's parameters and no pinned "now"
    analyst = load_settings(params, overrides={"data_dir": str(store), "week": "2026-W47"})
    data = load_week_data(analyst, tmp_path)
    assert data.week.label == "2026-W47" and data.now > datetime(2026, 11, 30, tzinfo=timezone.utc)
    assert same_figures(computed[0], data)


def test_a_sync_leaves_the_last_week_computed_for_the_notebooks(tmp_path, monkeypatch):
    from tests.fake_amocrm import FakeAmoCRM, make_account
    from tests.test_amocrm_sync import cli_env

    data = tmp_path / "data"
    with FakeAmoCRM(make_account(120, seed=3)) as amo:
        done = subprocess.run([sys.executable, "-m", "kpi_lib.cli", "sync"], env=cli_env(amo, data),
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "not prepared" not in done.stderr and len(list((data / KEPT_DIR / "fakesales").glob("*.arrows"))) == 1

    def computing(*args, **kwargs):
        raise AssertionError("the week was computed again")

    monkeypatch.setattr(weekdata, "build_week_data", computing)
    notebook = load_settings(overrides={"data_dir": str(data)})  # a notebook's parameter cell as it ships
    data = load_week_data(notebook, tmp_path)
    assert data.result["week"] == parse_week("last", data.week.tz).label
    assert data.managers["user_id"].tolist() and data.last_sync_at is not None


SECTIONS = ("title", "headline", "manager_table", "items_behind", "trend_chart", "distribution_chart", "supporting",
            "data_quality", "method")


@pytest.mark.parametrize("week", ["2026-W47", "current"])
def test_a_blocks_report_from_its_own_figures_is_the_report_from_all_of_them(store, week, monkeypatch):
    """A notebook computing its week afresh computes its block only (and the blocks it needs),
    from one read of the items they use: every section it shows is the one the full week's
    figures give."""
    from kpi_lib.kpis.facts import Facts
    from kpi_lib.kpis.registry import BLOCK_NAMES, DETAIL_BLOCKS
    from kpi_lib.views import BlockReport

    reads, real_read = [], Facts._read
    monkeypatch.setattr(Facts, "_read", lambda self, con, parts: (reads.append(parts), real_read(self, con, parts))[1])
    full = build_week_data(settings_for(store, week=week))
    assert reads == [("leads", "closed", "owners", "links", "calls", "first_calls", "tasks", "activity", "service")]
    assert tuple(full.details) == DETAIL_BLOCKS and all(len(full.details[name]) for name in DETAIL_BLOCKS)
    for block in BLOCK_NAMES:
        reads.clear()
        own = build_week_data(settings_for(store, week=week), blocks=(block,))
        assert len(reads) == 1, (block, reads)  # what it uses, read at once
        assert set(own.result["kpis"]) < set(full.result["kpis"]) and block in own.result["kpis"]
        assert own.result["kpis"][block] == full.result["kpis"][block]
        assert own.moves[block] == full.moves[block]
        sections = SECTIONS + (("worst_tasks", "due_tasks") if block == "smart_audit" else ())
        for lang in ("en", "ru"):
            mine, theirs = BlockReport(own, block, lang), BlockReport(full, block, lang)
            for section in sections:
                assert getattr(mine, section)()._repr_html_() == getattr(theirs, section)()._repr_html_(), \
                    (block, lang, section)
    assert own.due is not None if week == "current" else own.due is None


def test_a_notebook_reads_the_weeks_figures_or_its_blocks_kept_ones(store, tmp_path, builds):
    """A block's notebook keeps the figures it computed for itself; the week's full figures, once
    kept (by a sync, a run or another notebook), serve every block."""
    one = load_week_data(settings_for(store), tmp_path, blocks=("first_call",))
    again = load_week_data(settings_for(store), tmp_path, blocks=("first_call",))
    assert len(builds) == 1 and len(kept_files(store)) == 1 and same_figures(one, again)
    assert set(one.result["kpis"]) == {"first_call"}
    other = load_week_data(settings_for(store), tmp_path, blocks=("average_check",))
    assert len(builds) == 2 and set(other.result["kpis"]) == {"average_check"}
    full = load_week_data(settings_for(store), tmp_path)
    assert len(builds) == 3 and len(full.result["kpis"]) == 6
    after = load_week_data(settings_for(store), tmp_path, blocks=("smart_audit",))
    assert len(builds) == 3 and same_figures(full, after)


def test_a_week_reads_the_twelve_weeks_before_it_only_for_a_median_target(store, monkeypatch):
    """The weeks of items a week's figures read: the shown trends (and the week before, for the
    drivers), and the 12 weeks before the week only when a figure of the blocks computed has the
    team's trailing median for a target (average check and revenue per active day by default)."""
    from kpi_lib.kpis import context
    from kpi_lib.weekdata import context_weeks

    plain, median = settings_for(store), settings_for(store, kpi={"targets": {"smart_index": None}})
    assert context_weeks(plain) == 13 and context_weeks(plain, ("average_check",)) == 13
    assert context_weeks(plain, ("smart_audit",)) == context_weeks(plain, ("first_call", "cost_of_service")) == 12
    assert context_weeks(median, ("smart_audit",)) == 13
    assert context_weeks(settings_for(store, kpi={"trend_weeks": 1}), ("smart_audit",)) == 2
    assert context_weeks(settings_for(store, kpi={"trend_weeks": 20}), ("average_check",)) == 20
    reads = []
    real_read = context._FactsReader.read
    monkeypatch.setattr(context._FactsReader, "read", lambda self, lo, hi, *a, **k: (
        reads.append(lo), real_read(self, lo, hi, *a, **k))[1])
    for settings, weeks in ((plain, 12), (median, 13)):
        data = build_week_data(settings, blocks=("smart_audit",))
        assert reads[-1] == data.week.shift(1 - weeks).start_ts and len(data.targets)
    assert len(reads) == 2
