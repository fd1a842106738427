"""A week published whole, under faults: kill -9 at several moments of a run and of its publish,
a full disk, a truncated store, a second run waiting on the week's lock, and what is left behind.

Every check reads the run id a week's files carry: one generation means one run id.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from kpi_lib.cli import main
from kpi_lib.errors import DiskFullError
from kpi_lib.render import DEFINITIONS_PAGE
from tests.conftest import DEMO_AS_OF, week_held

ROOT = Path(__file__).resolve().parent.parent
WEEK = "2026-W47"
META = re.compile(r'<meta name="kpi-report-run" content="([^"]*)">')
RUN = """
import sys
from kpi_lib.config import load_settings
from kpi_lib.log import configure_logging
from kpi_lib.report import render_week
configure_logging()
settings = load_settings(overrides={"data_dir": sys.argv[1], "as_of": sys.argv[4]})
run = render_week(settings, sys.argv[2], notebooks_dir=sys.argv[3])
print("RUN", run.run_id, run.ok)
"""


def one_notebook(tmp_path: Path, name: str = "04_average_check") -> Path:
    folder = tmp_path / "nb"
    folder.mkdir(exist_ok=True)
    shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", folder / f"{name}.ipynb")
    return folder


def start_run(data: Path, out: Path, notebooks: Path, tmpdir: Path) -> subprocess.Popen:
    env = dict(os.environ, TMPDIR=str(tmpdir), PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", RUN, str(data), str(out), str(notebooks), DEMO_AS_OF],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_ids(week: Path) -> dict[str, str]:
    """The run id each file of a week folder carries (pages, index, summary, notebooks)."""
    ids = {}
    for page in sorted(week.glob("*.html")):
        found = META.findall(page.read_text(encoding="utf-8"))
        ids[page.name] = found[0] if len(found) == 1 else f"{len(found)} run ids"
    ids["summary.json"] = json.loads((week / "summary.json").read_text(encoding="utf-8")).get("run_id")
    for nb in sorted((week / "notebooks").glob("*.ipynb")):
        ids[f"notebooks/{nb.name}"] = nbformat.read(nb, as_version=4).metadata.get("kpi_report", {}).get("run_id")
    return ids


def one_run_id(week: Path) -> str:
    ids = run_ids(week)
    assert "index.html" in ids and len(ids) >= 4, ids
    assert len(set(ids.values())) == 1, ids
    return next(iter(ids.values()))


def leftovers(out: Path) -> list[str]:
    """Anything but the current generations, the week links, the indexes, the definitions page and the ledger."""
    found = [p.name for p in out.iterdir() if p.name not in ("index.html", DEFINITIONS_PAGE, "sent.json", ".weeks")
             and not (p.is_symlink() and re.fullmatch(r"\d{4}-W\d\d", p.name))]
    for base in (out / ".weeks").iterdir():
        current = (out / base.name).resolve()
        found += [f"{base.name}/{p.name}" for p in base.iterdir() if p.resolve() != current]
    return found


MOMENTS = {
    "staging made": lambda week, out: list(week.glob(".staging-*")),
    "kernel started": lambda week, out: list(week.glob(".work-*/kernel-*.json")),
    "figures written": lambda week, out: list(week.glob(".work-*/week-data.arrows")),
    "page rendered": lambda week, out: list(week.glob(".staging-*/04_average_check.html")),
    "index staged": lambda week, out: list(week.glob(".staging-*/index.html")),
}


@pytest.mark.slow
def test_kill_9_at_any_moment_leaves_one_generation(demo_store, tmp_path):
    out, nbs, tmpdir = tmp_path / "reports", one_notebook(tmp_path), tmp_path / "tmp"
    tmpdir.mkdir()
    first = start_run(demo_store, out, nbs, tmpdir)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    good = one_run_id(out / WEEK)
    before = {p.name: p.read_bytes() for p in (out / WEEK).glob("*.html")}
    for moment, reached in list(MOMENTS.items()) + [("published", None)]:
        run = start_run(demo_store, out, nbs, tmpdir)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and run.poll() is None:
            if reached is None:
                if (out / WEEK).resolve().name != good:
                    break
            elif reached(out / ".weeks" / WEEK, out):
                break
            time.sleep(0.002)
        if run.poll() is None:
            run.send_signal(signal.SIGKILL)
        else:  # the last moments last milliseconds: a run may finish before the kill lands
            assert moment in ("index staged", "published") and run.returncode == 0, (moment, run.stderr.read())
        run.wait(timeout=60)
        current = one_run_id(out / WEEK)  # whatever the moment, the week is one generation
        if current == good:
            assert {p.name: p.read_bytes() for p in (out / WEEK).glob("*.html")} == before, moment
        else:
            assert moment in ("index staged", "published"), f"published before its index was staged: {moment}"
            good = current
            before = {p.name: p.read_bytes() for p in (out / WEEK).glob("*.html")}
    last = start_run(demo_store, out, nbs, tmpdir)
    assert last.wait(timeout=300) == 0, last.stderr.read()
    one_run_id(out / WEEK)
    assert leftovers(out) == []  # staging, private folders and old generations of killed runs are gone
    assert [p.name for p in tmpdir.iterdir()] == []  # no kernel connection file in the temp folder


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MB tmpfs (the tests run as root) and a way to fill it to ``free`` bytes."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], check=True)

    def fill(free: int) -> None:
        stats = os.statvfs(mount)
        size = stats.f_bavail * stats.f_frsize - free
        with open(mount / "filler", "ab") as fh:
            fh.write(b"\0" * max(0, size))

    try:
        yield mount, fill
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
# With 500 KB free the run writes the week's snapshot (about 250 KB) and the disk fills with its pages.
@pytest.mark.parametrize("free", [16_000, 500_000], ids=["before-the-figures", "after-the-figures"])
def test_a_full_disk_stops_the_run_and_keeps_the_previous_week(demo_store, tmp_path, small_disk, capsys, free):
    from kpi_lib.config import load_settings
    from kpi_lib.report import render_week

    mount, fill = small_disk
    out, nbs = mount / "reports", one_notebook(tmp_path)
    settings = load_settings(overrides={"data_dir": str(demo_store), "as_of": DEMO_AS_OF})
    assert render_week(settings, out, notebooks_dir=nbs).ok
    good = one_run_id(out / WEEK)
    before = {p.name: p.read_bytes() for p in (out / WEEK).rglob("*") if p.is_file()}
    fill(free)
    with pytest.raises(DiskFullError, match="no space left") as caught:
        render_week(settings, out, notebooks_dir=nbs)
    assert str(caught.value).startswith(f"no space left on the device of {out}:")
    assert one_run_id(out / WEEK) == good
    assert {p.name: p.read_bytes() for p in (out / WEEK).rglob("*") if p.is_file()} == before
    assert leftovers(out) == []
    if free < 100_000:  # the whole command: one line, exit 2
        code = main(["run", "--week", WEEK, "--as-of", DEMO_AS_OF, "--data-dir", str(demo_store),
                     "--out", str(out)])
        said = capsys.readouterr().err
        err = [line for line in said.strip().splitlines() if not re.match(r"\d\d:\d\d:\d\d INFO ", line)]
        assert code == 2 and err == [f"kpi-report run: error: no space left on the device of {out}: free some "
                                     "space there, then run again (the previous reports are kept as they were)"], said
        assert one_run_id(out / WEEK) == good and leftovers(out) == []


def test_a_truncated_store_says_how_to_fix_it(demo_store, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(demo_store / "demo.duckdb", data / "demo.duckdb")
    os.truncate(data / "demo.duckdb", os.path.getsize(data / "demo.duckdb") // 2)
    for command in (["kpis", "--week", WEEK], ["run", "--week", WEEK, "--out", str(tmp_path / "reports")]):
        code = main(command + ["--data-dir", str(data), "--as-of", DEMO_AS_OF])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert "demo.duckdb" in err[0] and "damaged" in err[0]
        assert "kpi-report sync" in err[0] and "kpi-report demo" in err[0]
    assert not (tmp_path / "reports" / WEEK).exists()


@pytest.mark.slow
def test_a_second_run_waits_for_the_weeks_lock_and_says_so(demo_store, tmp_path):

    out, nbs, tmpdir = tmp_path / "reports", one_notebook(tmp_path), tmp_path / "tmp"
    tmpdir.mkdir()
    out.mkdir()
    with week_held(out, WEEK, "send"):
        run = start_run(demo_store, out, nbs, tmpdir)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(run.stderr), daemon=True)
        reader.start()
        deadline = time.monotonic() + 120
        while not any("waiting for" in line for line in lines) and time.monotonic() < deadline \
                and run.poll() is None:
            time.sleep(0.05)
        said = "".join(lines)
        assert "waiting for" in said and f"send of {WEEK}" in said and f"pid {os.getpid()}" in said, said
        assert not (out / WEEK).exists()
    assert run.wait(timeout=300) == 0
    one_run_id(out / WEEK)
    assert not list(out.rglob("*.lock")) and leftovers(out) == []


def test_a_run_cleans_what_killed_runs_left_in_any_week_nobody_holds(tmp_path):
    from kpi_lib.publish import clean_stale, week_lock

    out = tmp_path / "reports"
    for week in ("2026-W45", "2026-W46"):
        base = out / ".weeks" / week
        for name in ("20261101T000000Z-aaaaaa", ".staging-20261102T000000Z-bbbbbb",
                     ".work-20261102T000000Z-bbbbbb-x1y2", "20261102T000000Z-cccccc"):
            (base / name / "notebooks").mkdir(parents=True)
        os.symlink(f".weeks/{week}/20261101T000000Z-aaaaaa", out / week)
    (out / ".2026-W44.staging-killed" / "notebooks").mkdir(parents=True)  # as older versions left it
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with week_lock(out, "2026-W46", what="send"):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(30)
    try:
        clean_stale(out, held="2026-W47")
    finally:
        release.set()
        holder.join()
    assert sorted(p.name for p in (out / ".weeks" / "2026-W45").iterdir()) == ["20261101T000000Z-aaaaaa"]
    assert len(list((out / ".weeks" / "2026-W46").iterdir())) == 4  # held by a send: left alone
    assert not (out / ".2026-W44.staging-killed").exists()
    assert (out / "2026-W45" / "notebooks").is_dir() and not list(out.glob("*.lock"))
