"""The command line's options: what --help shows is what the README says, and bad values stop the parser."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kpi_lib.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
#: Options every command takes, documented once under the synopsis.
COMMON = {"--help", "--verbose", "--data-dir", "--account"}


def subparsers() -> dict:
    return build_parser()._subparsers._group_actions[0].choices


def readme_synopsis() -> dict[str, set[str]]:
    """Per command, the options of its line(s) in the README's synopsis."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## The command line", 1)[1].split("```", 2)[1]
    options: dict[str, set[str]] = {}
    command = None
    for line in block.splitlines():
        match = re.match(r"kpi-report (\w+)", line)
        command = match.group(1) if match else command
        if command:
            options.setdefault(command, set()).update(re.findall(r"--[a-z][a-z-]*", line))
    return options


def test_the_readme_synopsis_lists_every_option_of_every_command():
    synopsis = readme_synopsis()
    assert set(synopsis) == set(subparsers())
    for command, parser in subparsers().items():
        flags = {flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")}
        assert synopsis[command] == flags - COMMON, command


def test_help_and_readme_agree_on_weeks_and_defaults():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    for command in ("kpis", "run", "send"):
        text = " ".join(subparsers()[command].format_help().split())
        assert "'current'" in text and "'last'" in text, command
    for command in ("run", "send"):
        text = " ".join(subparsers()[command].format_help().split())
        assert "default: reports/ beside the data dir" in text
        assert "--lang {en,ru}" in text
    assert "`--out` defaults to `reports/` beside the data dir" in readme
    assert "`--week current`" in readme and "`--timeout` to 600 seconds" in readme
    run_help = " ".join(subparsers()["run"].format_help().split())
    assert "default 600" in run_help and "default: the core count" in run_help
    assert "--today YYYY-MM-DD" in " ".join(subparsers()["demo"].format_help().split())


def test_auth_help_names_its_environment_variables():
    out = subprocess.run([sys.executable, "-m", "kpi_lib.cli", "auth", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0
    for name in ("AMOCRM_SUBDOMAIN", "AMOCRM_DOMAIN", "AMOCRM_BASE_URL", "AMOCRM_CLIENT_ID", "AMOCRM_CLIENT_SECRET",
                 "AMOCRM_REDIRECT_URI", "AMOCRM_TOKEN_FILE"):
        assert name in out.stdout, name


@pytest.mark.parametrize("args, shown", [
    (["run", "--timeout", "0"], "argument --timeout: 0 is not at least 1"),
    (["run", "--timeout", "-5"], "argument --timeout: -5 is not at least 1"),
    (["run", "--jobs", "0"], "argument --jobs: 0 is not at least 1"),
    (["run", "--jobs", "two"], "argument --jobs: 'two' is not a whole number"),
])
def test_run_options_must_be_positive(capsys, args, shown):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and shown in err and "usage: kpi-report run" in err


@pytest.mark.parametrize("command", ["kpis", "run", "send", "sync"])
def test_an_unknown_argument_prints_the_subcommands_usage(command):
    out = subprocess.run([sys.executable, "-m", "kpi_lib.cli", command, "--wek", "last"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith(f"usage: kpi-report {command} ")
    assert f"kpi-report {command}: error: unrecognized arguments: --wek last" in out.stderr
