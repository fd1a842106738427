"""The Makefile as a new user meets it: the demo in its own folder, JupyterLab as root, no warnings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kpi_builders import WON, Account, at

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent


def project_copy(tmp_path: Path) -> Path:
    """The project's Makefile and pyproject beside the venv that runs these tests (``make`` never rebuilds it)."""
    home = tmp_path / "project"
    shutil.copytree(ROOT / "kpi_lib", home / "kpi_lib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "notebooks", home / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, home / name)
    (home / ".venv").symlink_to(VENV)
    return home


def make(home: Path, *targets: str, dry: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KPI_", "AMOCRM_"))}
    env["PYTHONPATH"] = str(home)  # the copy's kpi_lib, even though the venv installs this checkout's
    flags = ["-n"] if dry else []
    return subprocess.run(["make", "-s", "-o", ".venv/bin/kpi-report", *flags, *targets], cwd=home, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_make_report_after_a_real_sync_builds_the_demo_apart_and_warns_of_nothing(tmp_path):
    home = project_copy(tmp_path)
    synced = Account()  # an account a real sync wrote to data/
    synced.user(1, "Руководитель", admin=True)
    synced.user(101, "Анна")
    synced.lead(1, 101, at("2026-11-17 10:00"), status=WON, closed=at("2026-11-18 10:00"), price=100, csat=5)
    synced.write(home / "data")
    done = make(home, "report")
    assert done.returncode == 0, done.stderr
    assert "several account stores" not in done.stdout + done.stderr
    assert sorted(p.name for p in (home / "data").iterdir()) == ["test.duckdb"]  # nothing added to data/
    assert (home / "demo" / "data" / "demo.duckdb").is_file()
    weeks = [p.name for p in (home / "demo" / "reports").iterdir() if re.fullmatch(r"\d{4}-W\d\d", p.name)]
    assert len(weeks) == 1 and (home / "demo" / "reports" / weeks[0] / "index.html").is_file()
    assert not (home / "reports").exists()  # your account's reports folder stays yours
    assert "open demo/reports/index.html" in done.stdout
    noise = [line for line in (done.stdout + done.stderr).splitlines() if re.search(r"warn", line, re.I)]
    assert noise == []
    # the scheduled run on data/ still finds its one store
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KPI_", "AMOCRM_"))}
    kpis = subprocess.run([str(home / ".venv" / "bin" / "kpi-report"), "kpis", "--week", "2026-W47", "--json"],
                          cwd=home, env={**env, "PYTHONPATH": str(home)}, capture_output=True, text=True, timeout=300)
    assert kpis.returncode == 0, kpis.stderr


def test_the_demo_command_defaults_to_its_own_folder(tmp_path):
    home = project_copy(tmp_path)
    shown = make(home, "demo", "report", dry=True).stdout
    assert "kpi-report demo --data-dir demo/data" in shown
    assert "kpi-report run --week last --data-dir demo/data" in shown
    from kpi_lib.cli import build_parser

    demo_help = " ".join(build_parser()._subparsers._group_actions[0].choices["demo"].format_help().split())
    assert "default: demo/data" in demo_help


def test_make_lab_starts_jupyterlab_on_the_demo_even_as_root(tmp_path):
    home = project_copy(tmp_path)
    shown = make(home, "lab", dry=True).stdout.splitlines()
    command = next(line for line in shown if "jupyter lab" in line)
    assert f"KPI_DATA_DIR={home}/demo/data" in command
    assert ("--allow-root" in command) == (os.geteuid() == 0)
    # start it as make would, headless on a free port, and wait for the server to say it is up
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KPI_", "AMOCRM_"))}
    env.update(JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    lab = subprocess.Popen(f"{command} --no-browser --ServerApp.port=0 --ServerApp.ip=127.0.0.1", shell=True,
                           cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    lines = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = lab.stdout.readline()
            if not line:
                break
            lines.append(line)
            if re.search(r"http://127\.0\.0\.1:\d+/lab", line):
                break
    finally:
        os.killpg(lab.pid, 15)
        lab.wait(timeout=60)
        lab.stdout.close()
    output = "".join(lines)
    assert re.search(r"http://127\.0\.0\.1:\d+/lab", output), output
    assert "Running as root is not recommended" not in output
