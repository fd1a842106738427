"""The schedule in deploy/: systemd units, the cron line, the Airflow DAG and the env example.

The units are checked by ``systemd-analyze`` when it is installed and parsed with
configparser always; their command lines are run for real (flock, sh) with a recording
``kpi-report`` on PATH, so the lock and the ``&&`` chain are exercised, and every
``kpi-report`` invocation is parsed by the real CLI parser.
"""

from __future__ import annotations

import ast
import configparser
import re
import shlex
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import pytest

from kpi_lib.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
LOCK = "/run/lock/kpi-report.lock"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / name).read_text(encoding="utf-8"))
    return parser


def kpi_commands(command: str) -> list[list[str]]:
    """Every ``kpi-report …`` invocation inside a shell command line."""
    return [shlex.split(m) for m in re.findall(r"kpi-report ((?:sync|run|send)[^&'|;>]*)", command)]


def cron_command() -> str:
    lines = [ln for ln in (DEPLOY / "crontab.example").read_text().splitlines() if ln and not ln.startswith("#")]
    (entry,) = [ln for ln in lines if not re.match(r"^[A-Z_]+=", ln)]
    fields = entry.split(None, 6)
    assert fields[:5] == ["0", "7", "*", "*", "1"] and fields[5] == "kpi-report"  # Mondays 07:00, as user kpi-report
    return fields[6]


@pytest.fixture
def fake_kpi_report(tmp_path):
    """A ``kpi-report`` that records its arguments and SMTP_FROM (and fails ``sync`` when FAIL_SYNC is set)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "kpi-report"
    script.write_text('#!/bin/sh\necho "$*${SMTP_FROM:+ | $SMTP_FROM}" >> "$CALLS"\n[ "$1" = sync ] && [ -n "$FAIL_SYNC" ] && exit 1\nexit 0\n')
    script.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls.txt")}
    return env, tmp_path / "calls.txt"


def run_line(argv: list[str], env: dict, **extra) -> int:
    return subprocess.run(argv, env={**env, **extra}, timeout=30).returncode


def test_service_runs_sync_then_the_weekly_run_under_a_lock():
    service = unit("kpi-report.service")["Service"]
    assert service["Type"] == "oneshot"
    assert service["EnvironmentFile"] == "/etc/kpi-report.env"
    assert service["StandardOutput"] == service["StandardError"] == "journal"
    assert service["WorkingDirectory"].startswith("/")
    argv = shlex.split(service["ExecStart"])
    assert argv[:5] == ["/usr/bin/flock", "--nonblock", "--conflict-exit-code", "75", LOCK]
    assert argv[5:7] == ["/bin/sh", "-c"]
    assert argv[7].startswith("kpi-report sync && kpi-report run --week last ") and argv[7].endswith(" --email")


def test_timer_fires_on_monday_mornings_and_catches_up():
    timer = unit("kpi-report.timer")
    assert timer["Timer"]["OnCalendar"] == "Mon *-*-* 07:00:00 Europe/Moscow"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["Unit"] == "kpi-report.service"
    assert timer["Install"]["WantedBy"] == "timers.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_pass_systemd_analyze(tmp_path):
    for name in ("kpi-report.service", "kpi-report.timer"):
        shutil.copy(DEPLOY / name, tmp_path / name)
    done = subprocess.run(["systemd-analyze", "verify", "kpi-report.service", "kpi-report.timer"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr  # warnings count as failures
    calendar = subprocess.run(["systemd-analyze", "calendar", unit("kpi-report.timer")["Timer"]["OnCalendar"]],
                              capture_output=True, text=True, timeout=60)
    assert calendar.returncode == 0 and "Next elapse: Mon " in calendar.stdout


def test_every_scheduled_command_is_a_valid_kpi_report_call():
    service_line = shlex.split(unit("kpi-report.service")["Service"]["ExecStart"])[-1]
    dag = (DEPLOY / "airflow_dag.py").read_text(encoding="utf-8")
    commands = kpi_commands(service_line) + kpi_commands(cron_command()) + [
        shlex.split(re.sub(r"\{[A-Z_]+\}", "X", m)) for m in re.findall(r'f"\{KPI\} ([^"]+)"', dag)]
    assert [c[0] for c in commands] == ["sync", "run", "sync", "run", "sync", "run"]
    for argv in commands:
        args = build_parser().parse_args(argv)  # exits (fails the test) on an unknown flag
        if argv[0] == "run":
            assert args.email is True


def test_service_command_chain_and_lock(tmp_path, fake_kpi_report):
    env, calls = fake_kpi_report
    lock = str(tmp_path / "kpi.lock")
    argv = [lock if a == LOCK else a for a in shlex.split(unit("kpi-report.service")["Service"]["ExecStart"])]
    argv[0] = shutil.which("flock") or pytest.skip("flock is not installed")

    assert run_line(argv, env) == 0
    assert calls.read_text().splitlines() == ["sync", "run --week last --params /etc/kpi-report/params.yaml --email"]
    calls.unlink()
    assert run_line(argv, env, FAIL_SYNC="1") == 1  # a failed sync: no reports, no email
    assert calls.read_text().splitlines() == ["sync"]
    calls.unlink()
    holder = subprocess.Popen(["flock", lock, "sleep", "30"])
    try:
        for _ in range(100):  # wait until the holder has the lock
            if subprocess.run(["flock", "-n", lock, "true"]).returncode:
                break
        assert run_line(argv, env) == 75  # a second run exits at once
    finally:
        holder.kill()
        holder.wait()
    assert not calls.exists()


def test_cron_line_reads_the_env_file_then_syncs_and_runs(tmp_path, fake_kpi_report):
    env, calls = fake_kpi_report
    env_file = tmp_path / "kpi-report.env"
    shutil.copy(DEPLOY / "kpi-report.env.example", env_file)
    command = cron_command().replace("/etc/kpi-report.env", str(env_file)).replace(LOCK, str(tmp_path / "kpi.lock"))
    command = command.replace("cd /opt/kpi-report", f"cd {tmp_path}").split(" >>")[0]
    assert run_line(["/bin/sh", "-c", command], env) == 0
    secrets_seen = " | Sales KPI reports <kpi@example.com>"
    assert calls.read_text().splitlines() == [
        "sync" + secrets_seen, "run --week last --params /etc/kpi-report/params.yaml --email" + secrets_seen]


def test_env_example_names_only_variables_the_settings_read():
    config = (ROOT / "kpi_lib" / "config.py").read_text(encoding="utf-8")
    names = re.findall(r"^([A-Z_]+)=", (DEPLOY / "kpi-report.env.example").read_text(), flags=re.M)
    assert {"SMTP_HOST", "SMTP_PASSWORD", "SMTP_FROM", "AMOCRM_TOKEN"} <= set(names)
    for name in names:
        assert f'"{name}"' in config, f"{name} is not read by kpi_lib/config.py"


def test_airflow_dag_is_valid_python_covering_every_notebook():
    source = (DEPLOY / "airflow_dag.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    compile(tree, "airflow_dag.py", "exec")
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("airflow.providers.papermill.operators.papermill", "PapermillOperator") in imports
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("TIMEZONE", "NOTEBOOKS", "WEEK", "AS_OF"):
                exec(compile(ast.Module([node], []), "airflow_dag.py", "exec"), {}, constants)
    # the card notebook runs once per manager inside 'kpi-report run', the DAG's last task
    assert list(constants["NOTEBOOKS"]) == sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
                                                  if p.stem != "07_manager_card")


class _Moment:
    """What Airflow passes as data_interval_start/end: a datetime with ``in_timezone``."""

    def __init__(self, value: datetime) -> None:
        self.value = value

    def in_timezone(self, name: str) -> datetime:
        return self.value.astimezone(ZoneInfo(name))


def test_airflow_run_covers_the_week_before_its_logical_date():
    tree = ast.parse((DEPLOY / "airflow_dag.py").read_text(encoding="utf-8"))
    constants: dict = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") in ("TIMEZONE", "WEEK", "AS_OF"):
            exec(compile(ast.Module([node], []), "airflow_dag.py", "exec"), {}, constants)
    moscow = ZoneInfo("Europe/Moscow")
    context = {"data_interval_start": _Moment(datetime(2026, 11, 16, 7, tzinfo=moscow)),
               "data_interval_end": _Moment(datetime(2026, 11, 23, 7, tzinfo=moscow))}  # run on Monday 23 Nov
    render = jinja2.Environment().from_string
    assert render(constants["WEEK"]).render(context) == "2026-W47"
    assert render(constants["AS_OF"]).render(context) == "2026-11-23T07:00:00+03:00"
    year_end = {"data_interval_start": _Moment(datetime(2024, 12, 30, 7, tzinfo=moscow))}
    assert render(constants["WEEK"]).render(year_end) == "2025-W01"  # ISO week-year, not calendar year


def test_readme_documents_the_schedule_and_the_rerun():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Weekly schedule", 1)[1].split("\n## ", 1)[0]
    for needle in ("deploy/kpi-report.timer", "deploy/crontab.example", "deploy/airflow_dag.py",
                   "journalctl -u kpi-report", "kpi-report run --week 2026-W47",
                   "kpi-report send --week 2026-W47 --force", "--dry-run", "FAILED"):
        assert needle in section, needle
