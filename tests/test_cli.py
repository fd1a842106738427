"""The command line: help everywhere, documented commands, errors that name the fix."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kpi_lib.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["demo", "sync", "auth", "kpis", "detail", "drivers", "run", "send"]


def test_every_subcommand_has_help():
    for command in COMMANDS:
        out = subprocess.run([sys.executable, "-m", "kpi_lib.cli", command, "--help"], capture_output=True,
                             text=True, cwd=ROOT, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"usage: kpi-report {command}" in out.stdout


def test_every_subcommand_is_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    parser_commands = set(build_parser()._subparsers._group_actions[0].choices)
    assert parser_commands == set(COMMANDS)
    for command in COMMANDS:
        assert re.search(rf"kpi-report {command}\b", readme), f"'kpi-report {command}' is not documented"


def test_a_missing_store_names_the_fix(tmp_path, capsys):
    code = main(["kpis", "--data-dir", str(tmp_path), "--week", "2026-W47", "--json"])
    err = capsys.readouterr().err
    assert code != 0
    assert "kpi-report demo" in err and "kpi-report sync" in err


@pytest.mark.parametrize("args, fix", [
    (["kpis", "--week", "2026-47"], "use YYYY-Www"),
    (["kpis", "--week", "2025-W53"], "has no week 53"),
    (["kpis", "--as-of", "yesterday"], "ISO 8601"),
])
def test_bad_flags_name_the_fix(tmp_path, capsys, args, fix):
    from kpi_lib.store import Store

    Store.open(tmp_path, "acme", read_only=False, create=True).close()
    code = main(args + ["--data-dir", str(tmp_path)])
    assert code != 0
    assert fix in capsys.readouterr().err


def test_bad_params_file_names_the_key(tmp_path, capsys):
    params = tmp_path / "p.yaml"
    params.write_text("kpi:\n  supervisor: [1]\n", encoding="utf-8")
    code = main(["kpis", "--params", str(params), "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "kpi.supervisor" in err and "supervisors" in err


def test_auth_saves_the_first_token_pair_and_says_where(tmp_path, monkeypatch, capsys):
    from tests.fake_amocrm import FakeAmoCRM, make_account

    with FakeAmoCRM(make_account(5)) as amo:
        c = amo.client
        path = tmp_path / "tokens.json"
        for name, value in (("AMOCRM_BASE_URL", amo.url), ("AMOCRM_CLIENT_ID", c["client_id"]),
                            ("AMOCRM_CLIENT_SECRET", c["client_secret"]), ("AMOCRM_REDIRECT_URI", c["redirect_uri"]),
                            ("AMOCRM_TOKEN_FILE", str(path))):
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AMOCRM_TOKEN", raising=False)
        assert main(["auth", "--code", amo.issue_code(), "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert out.out == f"OAuth tokens saved to {path} (mode 0600); run 'kpi-report sync' next\n"
    assert json.loads(path.read_text())["refresh_token"] and c["client_secret"] not in out.out + out.err


def test_the_log_follows_stderr_when_it_is_swapped(monkeypatch):
    """A run configured while stderr was one stream logs to the stderr of the moment (a closed
    earlier stream would print a logging traceback into the error output instead)."""
    import io
    import sys

    from kpi_lib.log import configure_logging, logger

    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging()
    first.close()
    monkeypatch.setattr(sys, "stderr", second)
    logger.info("after the swap")
    assert second.getvalue().endswith(" INFO after the swap\n") and "Logging error" not in second.getvalue()
