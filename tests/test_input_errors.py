"""Bad input stops at once with exit 2 and names the fix: score fields, people, weeks, amoCRM's address."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kpi_builders import WON, Account, at
from kpi_lib.amocrm.auth import StaticToken
from kpi_lib.amocrm.client import AmoClient
from kpi_lib.cli import main
from kpi_lib.errors import ApiError
from tests.fake_amocrm import FakeAmoCRM, make_account

ROOT = Path(__file__).resolve().parents[1]


def account() -> Account:
    acc = Account()
    acc.user(1, "Руководитель", admin=True)
    acc.user(101, "Анна Петрова")
    acc.user(102, "Борис Иванов")
    acc.lead(1, 101, at("2026-11-17 10:00"), status=WON, closed=at("2026-11-18 10:00"), price=100, csat=5)
    return acc


def run_kpis(tmp_path, capsys, *args: str, params: str | None = None) -> tuple[int, str, str]:
    data = tmp_path / "data"
    account().write(data)
    extra = []
    if params is not None:
        (tmp_path / "p.yaml").write_text(params, encoding="utf-8")
        extra = ["--params", str(tmp_path / "p.yaml")]
    code = main(["kpis", "--data-dir", str(data), "--as-of", "2026-11-25T12:00:00+03:00", *extra, *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("key", ["csat_field", "nps_field"])
def test_a_score_field_the_account_lacks_lists_its_lead_fields(tmp_path, capsys, key):
    code, out, err = run_kpis(tmp_path, capsys, "--week", "2026-W47", params=f"kpi:\n  {key}: Satisfaction\n")
    assert code == 2 and out == ""
    assert f"kpi.{key}" in err and "'Satisfaction'" in err
    assert "500 'CSAT'" in err and "501 'NPS'" in err  # the account's lead fields, by id and name


@pytest.mark.parametrize("ref", ["csat", "500", "NPS"])
def test_a_score_field_by_name_in_any_case_or_by_id_is_accepted(tmp_path, capsys, ref):
    code, out, err = run_kpis(tmp_path, capsys, "--week", "2026-W47", params=f"kpi:\n  csat_field: '{ref}'\n")
    assert code == 0, err


def test_an_unknown_manager_lists_the_managers_with_their_names(tmp_path, capsys):
    code, out, err = run_kpis(tmp_path, capsys, "--week", "2026-W47", params="kpi:\n  managers: [101, 103]\n")
    assert code == 2 and "kpi.managers: user id 103" in err
    assert "101 Анна Петрова" in err and "102 Борис Иванов" in err and "1 Руководитель" in err


def test_a_week_that_has_not_started_exits_2(tmp_path, capsys):
    code, out, err = run_kpis(tmp_path, capsys, "--week", "2026-W49")
    assert code == 2 and out == ""
    assert "2026-W49 has not started yet" in err and "'current'" in err
    assert run_kpis(tmp_path, capsys, "--week", "current")[0] == 0  # W48 so far
    assert run_kpis(tmp_path, capsys, "--week", "2026-W48")[0] == 0


def test_a_week_that_has_not_started_is_not_built(tmp_path, capsys):
    data = tmp_path / "data"
    account().write(data)
    code = main(["run", "--data-dir", str(data), "--out", str(tmp_path / "reports"), "--week", "2099-W01"])
    assert code == 2 and "has not started yet" in capsys.readouterr().err
    assert not (tmp_path / "reports" / "2099-W01").exists()


AUDIT = """
import sys
def hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo"):
        print("NETWORK", event, args[1] if event == "socket.connect" else args[0], file=sys.stderr)
sys.addaudithook(hook)
from kpi_lib.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("subdomain", ["bad/sub", "acme.amocrm.ru", "https://acme", "a b", "-acme"])
def test_a_subdomain_that_is_not_plain_stops_before_any_request(tmp_path, subdomain):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMOCRM_", "KPI_"))}
    env.update(PYTHONPATH=str(ROOT), AMOCRM_SUBDOMAIN=subdomain, AMOCRM_TOKEN="secret-token-value-1234")
    out = subprocess.run([sys.executable, "-c", AUDIT, "sync", "--data-dir", str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "NETWORK" not in out.stderr  # no name lookup, no connection
    assert f"AMOCRM_SUBDOMAIN={subdomain!r} is not a plain subdomain" in out.stderr
    assert "AMOCRM_SUBDOMAIN=yourcompany" in out.stderr and "secret-token" not in out.stderr


def test_a_plain_subdomain_is_accepted():
    from kpi_lib.config import amocrm_env

    assert amocrm_env({"AMOCRM_SUBDOMAIN": "my-company2"}).base_url == "https://my-company2.amocrm.ru"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_server_names_host_port_and_refused():
    port = closed_port()
    client = AmoClient(f"http://127.0.0.1:{port}", StaticToken("t" * 20), max_rps=50, backoff_factor=0.01,
                       max_retries=2)
    with pytest.raises(ApiError) as err:
        client.get("/api/v4/account")
    text = str(err.value)
    assert f"127.0.0.1:{port} is unreachable (connection refused)" in text and "after 3 attempts" in text
    assert "resumes" not in text and "AMOCRM_SUBDOMAIN" in text


def test_a_server_that_never_answers_is_named_as_timed_out():
    with socket.socket() as sock:  # accepts connections (the backlog) and never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        port = sock.getsockname()[1]
        client = AmoClient(f"http://127.0.0.1:{port}", StaticToken("t" * 20), max_rps=50, backoff_factor=0.01,
                           max_retries=1, timeout=(2.0, 0.2))
        with pytest.raises(ApiError) as err:
            client.get("/api/v4/account")
    assert f"127.0.0.1:{port} is unreachable (no answer in time)" in str(err.value)


def test_a_server_lost_mid_sync_says_the_sync_resumes():
    with FakeAmoCRM(make_account(5)) as amo:
        client = AmoClient(amo.url, StaticToken(amo.token), max_rps=50, backoff_factor=0.01, max_retries=1)
        client.get("/api/v4/account")
        port = amo.url.rsplit(":", 1)[1].split("/")[0]
    client.session.close()  # drop the kept-alive connection: the next request dials the stopped server
    with pytest.raises(ApiError) as err:
        client.get("/api/v4/leads")
    text = str(err.value)
    assert f"127.0.0.1:{port} failed (connection refused)" in text and "resumes where it stopped" in text
