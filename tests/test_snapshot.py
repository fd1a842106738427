"""The week's figures shared with a run's notebooks: one snapshot, no code, no links, no waiting on
someone else's file, and never a recomputation from a store that changed during the run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import pandas.testing as pdt
import pytest

from kpi_lib import i18n
from kpi_lib.config import load_settings
from kpi_lib.errors import ReportError
from kpi_lib.weekdata import (RUN_MARK, SNAPSHOT_NAME, build_week_data, dump_week_data, load_week_data,
                              parse_week_data, write_week_data)
from tests.conftest import DEMO_AS_OF

ROOT = Path(__file__).resolve().parent.parent
STRANGER = 4242  # a uid that is not ours


def settings_for(data_dir: Path, **overrides):
    return load_settings(overrides={"data_dir": str(data_dir), "as_of": DEMO_AS_OF, **overrides})


def team_check(data) -> float:
    return data.result["kpis"]["average_check"]["team"]["avg_check"]


@pytest.fixture(scope="module")
def figures(demo_store):
    """The current week of the demo (with its due tasks) and a forged copy whose team check is 123."""
    settings = settings_for(demo_store, week="current")
    real = build_week_data(settings)
    forged = parse_week_data(dump_week_data(real), settings)
    forged.result = json.loads(json.dumps(real.result))
    forged.result["kpis"]["average_check"]["team"]["avg_check"] = 123.0
    return settings, real, forged


@pytest.fixture
def private(tmp_path):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    assert os.stat(folder).st_mode & 0o777 == 0o700
    return folder


def mark(folder: Path, pid: int) -> None:
    (folder / RUN_MARK).write_text(json.dumps({"pid": pid, "run_id": "test"}), encoding="utf-8")
    os.chmod(folder / RUN_MARK, 0o600)


def test_the_snapshot_keeps_every_figure_and_table(figures):
    settings, real, _ = figures
    raw = dump_week_data(real)
    assert b"pickle" not in raw and raw[:8] == b"KPIWEEK1"
    back = parse_week_data(raw, settings)
    assert back.result == real.result and back.key == real.key and back.errors == real.errors
    assert (back.week, back.as_of, back.now, back.account, back.last_sync_at) == (
        real.week, real.as_of, real.now, real.account, real.last_sync_at)
    assert back.as_of.tzinfo == real.week.tz and real.due is not None
    for a, b in [(real.managers, back.managers), (real.trends, back.trends), (real.targets, back.targets),
                 (real.due, back.due)]:
        pdt.assert_frame_equal(a, b)
    assert set(back.details) == set(real.details) and set(back.quality) == set(real.quality)
    for name in real.details:
        pdt.assert_frame_equal(real.details[name], back.details[name])
    for name in real.quality:
        pdt.assert_frame_equal(real.quality[name], back.quality[name])
    with pytest.raises(ValueError):
        parse_week_data(raw[: len(raw) // 2], settings)  # cut short: never half a snapshot


def test_no_pickle_anywhere():
    for path in sorted((ROOT / "kpi_lib").rglob("*.py")):
        assert not re.search(r"\b(c?pickle|dill|joblib|shelve|marshal)\b", path.read_text(encoding="utf-8")), path


def test_a_snapshot_is_read_only_from_a_private_folder_as_a_file_of_ours(figures, private, tmp_path):
    settings, real, forged = figures
    write_week_data(forged, private)
    assert team_check(load_week_data(settings, private)) == 123.0  # ours, in our 0700 folder: read

    os.chown(private / SNAPSHOT_NAME, STRANGER, -1)  # someone else's file
    with pytest.raises(ReportError):
        load_week_data(settings, private)  # a run's folder with a file not ours: never read, never recomputed
    os.chown(private / SNAPSHOT_NAME, os.getuid(), -1)

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    shutil.copy(private / SNAPSHOT_NAME, shared / SNAPSHOT_NAME)
    mark(shared, os.getppid())
    assert team_check(load_week_data(settings, shared)) == pytest.approx(team_check(real))  # others may write there

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(private, elsewhere / "link", target_is_directory=True)
    assert team_check(load_week_data(settings, elsewhere / "link")) == pytest.approx(team_check(real))


def test_a_symlink_swapped_in_a_loop_is_never_followed(figures, private, tmp_path):
    """Another process keeps swapping the snapshot for a link to its own: it is never loaded."""
    settings, real, forged = figures
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    write_week_data(forged, theirs)
    write_week_data(real, private)
    mark(private, os.getppid())  # as the run that started this kernel marks its folder
    genuine = (private / SNAPSHOT_NAME).read_bytes()
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            link = private / ".swap-link"
            link.unlink(missing_ok=True)
            os.symlink(theirs / SNAPSHOT_NAME, link)
            os.replace(link, private / SNAPSHOT_NAME)
            time.sleep(0.0005)
            write_week_data_bytes(private, genuine)

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    try:
        seen = [team_check(load_week_data(settings, private)) for _ in range(400)]
    finally:
        stop.set()
        swapper.join()
    assert 123.0 not in seen and seen == [pytest.approx(team_check(real))] * 400


def write_week_data_bytes(folder: Path, raw: bytes) -> None:
    tmp = folder / ".swap-file"
    tmp.write_bytes(raw)
    os.chmod(tmp, 0o600)
    os.replace(tmp, folder / SNAPSHOT_NAME)


def test_nobody_waits_on_a_mark_they_did_not_get_from_their_run(figures, private, tmp_path):
    settings, real, _ = figures
    mark(private, 999_999_999)  # planted: not the process that started this one
    started = time.monotonic()
    assert team_check(load_week_data(settings, private)) == pytest.approx(team_check(real))
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    os.chmod(open_folder, 0o777)
    mark(open_folder, os.getppid())  # "ours", but in a folder anyone can write
    assert team_check(load_week_data(settings, open_folder)) == pytest.approx(team_check(real))
    assert time.monotonic() - started < 120  # the wait for a run's figures is 600 s


def test_a_run_that_gives_up_stops_the_wait_at_once(figures, private):
    from kpi_lib.weekdata import give_up_week_data

    settings, _, _ = figures
    mark(private, os.getppid())
    threading.Timer(0.5, give_up_week_data, (private, "StoreError: the store is damaged")).start()
    started = time.monotonic()
    with pytest.raises(ReportError, match="the store is damaged"):
        load_week_data(settings, private)
    assert time.monotonic() - started < 120


@pytest.mark.slow
def test_a_sync_that_finishes_during_the_run_changes_nothing_the_run_shows(demo_store, tmp_path):
    """The store changes after the run read it, while a notebook starts: the page, the index,
    summary.json and the chart still show the run's one snapshot."""
    from kpi_lib.report import render_week
    from kpi_lib.views import open_report

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(demo_store / "demo.duckdb", data / "demo.duckdb")
    folder = tmp_path / "nb"
    folder.mkdir()
    nb = nbformat.read(ROOT / "notebooks" / "04_average_check.ipynb", as_version=4)
    sync = ("from kpi_lib.store import Store\n"
            "with Store.open(data_dir, read_only=False) as store:\n"
            "    store.con.execute('UPDATE leads SET price = price * 100')\n"
            "    store.mark_synced()")
    nb.cells.insert(1, nbformat.v4.new_code_cell(sync))
    nbformat.write(nb, folder / "04_average_check.ipynb")
    settings = settings_for(data)

    run = render_week(settings, tmp_path / "reports", notebooks_dir=folder)
    assert run.ok, [n.error for n in run.notebooks]
    after = open_report("average_check", week="2026-W47", as_of=DEMO_AS_OF, data_dir=str(data)).kpis["team"]
    week = run.folder
    summary = json.loads((week / "summary.json").read_text(encoding="utf-8"))
    column = [c["key"] for c in summary["scorecard"]["columns"]].index("avg_check")
    team = next(r for r in summary["scorecard"]["rows"] if r["manager"] == "team")["cells"][column]
    assert after["avg_check"] == pytest.approx(team["value"] * 100)  # the sync did land, during the run
    page = (week / "04_average_check.html").read_text(encoding="utf-8")
    index = (week / "index.html").read_text(encoding="utf-8")
    shown = i18n.format_money(team["value"], "en", "RUB")
    assert team["display"] == shown and shown in index and shown in page
    assert i18n.format_money(after["avg_check"], "en", "RUB") not in page


def test_a_run_reads_the_store_once_for_every_figure_it_shows(demo_store, monkeypatch):
    """The run's context holds the items of all the weeks its trends, targets and drivers read, so
    the figures never go back to the store (which a sync may have changed meanwhile)."""
    from kpi_lib.kpis import context
    from kpi_lib.report import load_run_context

    reads = []
    real_read = context._FactsReader.read
    monkeypatch.setattr(context._FactsReader, "read", lambda self, lo, hi, *a, **k: (
        reads.append((lo, hi)), real_read(self, lo, hi, *a, **k))[1])
    settings = settings_for(demo_store, week="2026-W47")
    ctx = load_run_context(settings)
    data = build_week_data(ctx.settings, ctx=ctx)
    assert len(reads) == 1, reads
    assert data.trends["week"].nunique() == settings.kpi.trend_weeks
