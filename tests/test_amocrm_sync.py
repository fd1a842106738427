"""Incremental, resumable sync against a fake amoCRM: changes, faults, kill -9, the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kpi_lib.amocrm.auth import StaticToken
from kpi_lib.amocrm.client import AmoClient
from kpi_lib.amocrm.sync import (EVENT_TYPES, OVERLAP, STREAMS, build_first_request, build_next_request,
                                  guess_account_name, sync_account)
from kpi_lib.kpis.history import stored_history
from kpi_lib.store import Store
from tests.fake_amocrm import FakeAccount, FakeAmoCRM, make_account, snapshot

ROOT = Path(__file__).resolve().parents[1]


def client_for(amo: FakeAmoCRM, **kw) -> AmoClient:
    kw.setdefault("max_rps", 50)
    kw.setdefault("backoff_factor", 0.01)
    return AmoClient(amo.url, StaticToken(amo.token), **kw)


def clean_sync(amo: FakeAmoCRM, folder: Path, **snap) -> dict:
    with Store.open(folder, "clean", read_only=False, create=True) as store:
        sync_account(store, client_for(amo))
        return snapshot(store, **snap)


def test_full_sync_holds_every_entity_of_the_account(tmp_path):
    account = make_account(260, seed=2, tie_group=120)  # 120 leads share one updated_at: longer than a page
    with FakeAmoCRM(account, page_cap=50) as amo, Store.open(tmp_path, "a", read_only=False, create=True) as store:
        report = sync_account(store, client_for(amo))
        assert sorted(store.frame("leads")["id"]) == sorted(it["id"] for it in account.listing("leads"))
        assert sorted(store.frame("contacts")["id"]) == sorted(account.data["contacts"])
        assert sorted(store.frame("tasks")["id"]) == sorted(account.data["tasks"])
        assert len(store.frame("calls")) == len(account.data["lead_notes"]) + len(account.data["contact_notes"])
        wanted = [e["id"] for e in sorted(account.listing("events"), key=lambda e: (e["created_at"], e["id"]))
                  if e["type"] in EVENT_TYPES]
        assert list(store.frame("events")["id"]) == wanted  # API order kept
        assert len(store.frame("lead_contacts")) == 260 and store.frame("account").loc[0, "timezone"]
        assert report.items["leads"] >= 260 and report.requests == len(amo.requests)
        assert store.last_sync_at() is not None
        assert all(store.get_state(s.entity).get("pending") is None for s in STREAMS)


def test_the_demo_account_served_over_http_syncs_to_the_demo_build(tmp_path):
    """The demo generator's pages, served by the fake, sync to the store the demo ingests directly."""
    demo = pytest.importorskip("kpi_lib.demo")
    from datetime import date

    pages = lambda: demo.generate_account(seed=3, today=date(2026, 11, 25), scale=0.1)  # noqa: E731
    with Store.open(tmp_path, "built", read_only=False, create=True) as built:
        for entity, page in pages():
            built.ingest_page(entity, page)
        expected = snapshot(built, strip_links=True)
    # the demo's account carries every with= extra; the sync asks for datetime_settings only
    expected["raw"] = [row for row in expected["raw"] if row[0] != "account"]
    with FakeAmoCRM(FakeAccount.from_pages(pages())) as amo, \
            Store.open(tmp_path, "synced", read_only=False, create=True) as store:
        report = sync_account(store, client_for(amo))
        assert report.items["leads"] > 250 and report.pages["leads"] >= 2
        got = snapshot(store, strip_links=True)
        got["raw"] = [row for row in got["raw"] if row[0] != "account"]
        assert got == expected


def test_an_unchanged_account_costs_a_handful_of_requests(tmp_path):
    with FakeAmoCRM(make_account(200), page_cap=50) as amo, \
            Store.open(tmp_path, "a", read_only=False, create=True) as store:
        client = client_for(amo)
        first = sync_account(store, client)
        before = snapshot(store)
        second = sync_account(store, client)
        # the account, then one request per stream (deleted leads are listed on full syncs only)
        assert second.requests == 1 + sum(1 for s in STREAMS if s.mode != "deleted")
        assert first.requests > 3 * second.requests
        assert snapshot(store) == before


def test_incremental_sync_picks_up_exactly_the_changes(tmp_path):
    account = make_account(200, seed=4)
    with FakeAmoCRM(account, page_cap=50) as amo, \
            Store.open(tmp_path, "a", read_only=False, create=True) as store:
        client = client_for(amo)
        sync_account(store, client)
        account.update("leads", 300005, price=777, status_id=142)
        account.update("contacts", 400007, name="Renamed Client")
        account.update("tasks", 500011, is_completed=True, result={"text": "Done and dusted"})
        account.delete_lead(300009)
        new = account.put("leads", {**account.data["leads"][300001], "id": 399999, "name": "Brand new",
                                    "created_at": int(time.time()), "updated_at": int(time.time())})
        account.add_call("contact_notes", 400007, "call_out", 502, 4, 300)
        report = sync_account(store, client)
        assert report.requests <= 1 + len(STREAMS) + 1
        leads = store.frame("leads").set_index("id")
        assert leads.loc[300005, "price"] == 777 and leads.loc[300005, "status_id"] == 142
        assert leads.loc[300009, "is_deleted"] and not leads.loc[300005, "is_deleted"]
        assert leads.loc[new["id"], "name"] == "Brand new"
        assert store.frame("contacts").set_index("id").loc[400007, "name"] == "Renamed Client"
        assert store.frame("tasks").set_index("id").loc[500011, "result_text"] == "Done and dusted"
        assert 300 in set(store.frame("calls", where="entity_id = 400007")["duration"])
        assert snapshot(store, raw=False) == clean_sync(amo, tmp_path, raw=False)


def test_changes_during_a_sync_are_not_missed(tmp_path):
    """Items updated while pages are read move to the end of updated_at order; none is skipped."""
    account = make_account(220, seed=5)
    first_leads = [it["id"] for it in sorted(account.listing("leads"), key=lambda i: (i["updated_at"], i["id"]))][:50]
    first_tasks = sorted(account.data["tasks"])[:50]
    calls = {"leads": 0, "tasks": 0}

    def change_underneath(index: int, path: str) -> None:
        for name in calls:
            if path.startswith(f"/api/v4/{name}?"):
                calls[name] += 1
                if calls[name] == 2:  # while the second page is being read
                    if name == "leads":
                        for lead_id in first_leads[:6]:
                            account.update("leads", lead_id, price=1234)
                        account.delete_lead(first_leads[10])
                        account.put("leads", {**account.data["leads"][first_leads[20]], "id": 398000,
                                              "updated_at": int(time.time())})
                        account.add_call("lead_notes", first_leads[7], "call_in", 503, 4, 90)
                    else:
                        for task_id in first_tasks[:6]:
                            account.update("tasks", task_id, is_completed=True)

    with FakeAmoCRM(account, page_cap=50) as amo, \
            Store.open(tmp_path, "a", read_only=False, create=True) as store:
        amo.before_request = change_underneath
        sync_account(store, client_for(amo))
        amo.before_request = None
        assert calls["leads"] >= 2 and calls["tasks"] >= 2
        assert snapshot(store, raw=False) == clean_sync(amo, tmp_path, raw=False)
        assert store.frame("leads").set_index("id").loc[first_leads[10], "is_deleted"]


def test_a_sync_through_faults_equals_a_clean_sync(tmp_path):
    account = make_account(200, seed=6, tie_group=70)
    with FakeAmoCRM(account, page_cap=50) as amo:
        amo.set_chaos(0.3, seed=8, kinds=("status:500", "status:502", "status:503", "status:504", "status:429",
                                          "reset", "truncate", "bad_json", "slow"))
        with Store.open(tmp_path, "faulty", read_only=False, create=True) as store:
            sync_account(store, client_for(amo, max_retries=10, timeout=(2, 0.25)))
            got = snapshot(store)
        faults = sum(1 for r in amo.requests if r[3] != 200)
        amo.chaos = None
        assert faults >= 10
        assert got == clean_sync(amo, tmp_path)


def test_full_resync_after_incremental_changes_nothing(tmp_path):
    account = make_account(120, seed=9)
    with FakeAmoCRM(account, page_cap=50) as amo, \
            Store.open(tmp_path, "a", read_only=False, create=True) as store:
        client = client_for(amo)
        sync_account(store, client)
        before = snapshot(store, strip_links=True)
        report = sync_account(store, client, full=True)
        assert report.items["leads"] >= 120 and snapshot(store, strip_links=True) == before


def cli_env(amo: FakeAmoCRM, data_dir: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMOCRM_", "KPI_"))}
    env.update(PYTHONPATH=str(ROOT), KPI_DATA_DIR=str(data_dir), AMOCRM_BASE_URL=amo.url, AMOCRM_TOKEN=amo.token)
    env.update(extra)
    return env


@pytest.mark.parametrize("kill_at, settle", [(9, 0.0), (23, 0.4)])
def test_kill_9_mid_sync_then_resume_equals_a_clean_sync(tmp_path, kill_at, settle):
    """Killed at a request (right away, or once the pages received are written), then resumed."""
    account = make_account(150, seed=10)
    with FakeAmoCRM(account, page_cap=50) as amo:
        proc = None

        def kill(index: int, path: str) -> None:
            if index == kill_at:
                time.sleep(settle)
                os.kill(proc.pid, signal.SIGKILL)
                time.sleep(0.2)

        amo.before_request = kill
        data = tmp_path / "data"
        proc = subprocess.Popen([sys.executable, "-m", "kpi_lib.cli", "sync"], env=cli_env(amo, data),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL
        amo.before_request = None
        done = subprocess.run([sys.executable, "-m", "kpi_lib.cli", "sync"], env=cli_env(amo, data),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "synced fakesales" in done.stdout and amo.token not in done.stdout + done.stderr
        if settle:
            assert "resuming an interrupted pass" in done.stderr
        with Store.open(data, "fakesales") as store:
            assert snapshot(store) == clean_sync(amo, tmp_path)
            assert stored_history(store.con) is not None  # the sync command keeps the history facts current


def test_cli_help_and_a_missing_token_name_the_fix(tmp_path):
    run = lambda *args, **env: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "kpi_lib.cli", *args], capture_output=True, text=True, timeout=60,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("AMOCRM_")}, "PYTHONPATH": str(ROOT), **env})
    shown = run("sync", "--help")
    assert shown.returncode == 0 and "AMOCRM_TOKEN" in shown.stdout and "--full" in shown.stdout
    missing = run("sync", "--data-dir", str(tmp_path), AMOCRM_BASE_URL="http://127.0.0.1:9")
    assert missing.returncode == 2
    assert "AMOCRM_TOKEN is not set" in missing.stderr and "long-lived token" in missing.stderr
    nowhere = run("sync", "--data-dir", str(tmp_path), AMOCRM_TOKEN="x" * 20)
    assert nowhere.returncode == 2 and "AMOCRM_SUBDOMAIN" in nowhere.stderr
    too_fast = run("sync", "--max-rps", "10", "--data-dir", str(tmp_path), AMOCRM_TOKEN="x" * 20,
                   AMOCRM_SUBDOMAIN="acme")
    assert too_fast.returncode == 2 and "at most 7" in too_fast.stderr
    assert not list(tmp_path.iterdir())


def test_oauth_from_the_command_line(tmp_path):
    with FakeAmoCRM(make_account(30)) as amo:
        env = cli_env(amo, tmp_path / "data", AMOCRM_CLIENT_ID=amo.client["client_id"],
                      AMOCRM_CLIENT_SECRET=amo.client["client_secret"], AMOCRM_REDIRECT_URI=amo.client["redirect_uri"])
        del env["AMOCRM_TOKEN"]
        cli = lambda *args: subprocess.run([sys.executable, "-m", "kpi_lib.cli", *args], env=env,  # noqa: E731
                                           capture_output=True, text=True, timeout=60)
        first = cli("sync")
        assert first.returncode == 2 and "kpi-report auth --code" in first.stderr
        code = amo.issue_code()
        auth = cli("auth", "--code", code)
        assert auth.returncode == 0 and "amocrm_token.json" in auth.stdout
        assert (tmp_path / "data" / "amocrm_token.json").stat().st_mode & 0o777 == 0o600
        amo.expire_access_tokens()
        synced = cli("sync")
        assert synced.returncode == 0, synced.stderr
        assert amo.refresh_count == 1 and amo.refresh_reuse == 0
        again = cli("auth", "--code", code)  # codes are single-use
        assert again.returncode == 2 and "20 minutes" in again.stderr
        secret = amo.client["client_secret"]
        assert all(secret not in out.stdout + out.stderr for out in (first, auth, synced, again))


def test_two_sync_processes_refresh_the_token_only_once(tmp_path):
    with FakeAmoCRM(make_account(20)) as amo:
        env = cli_env(amo, tmp_path / "data", AMOCRM_CLIENT_ID=amo.client["client_id"],
                      AMOCRM_CLIENT_SECRET=amo.client["client_secret"], AMOCRM_REDIRECT_URI=amo.client["redirect_uri"])
        del env["AMOCRM_TOKEN"]
        command = [sys.executable, "-m", "kpi_lib.cli", "sync"]
        assert subprocess.run([*command[:-1], "auth", "--code", amo.issue_code()], env=env, timeout=60).returncode == 0
        amo.expire_access_tokens()
        amo.fail("slow", path="/oauth2/", delay=4.0)  # the first refresh holds the lock while the other waits
        runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        outcomes = [(run.wait(timeout=120), run.stderr.read()) for run in runs]
        for run in runs:
            run.stdout.close()
            run.stderr.close()
        assert sum(1 for r in amo.requests if r[3] == 401) == 2  # both were turned away...
        assert amo.refresh_count == 1 and amo.refresh_reuse == 0  # ...and only one refreshed
        assert any(code == 0 for code, _ in outcomes)
        # the loser of the store's write lock, if they overlapped, is told to wait
        assert all(code == 0 or "another process" in err for code, err in outcomes)


def test_a_second_sync_stops_before_sending_a_request(tmp_path):
    with FakeAmoCRM(make_account(10)) as amo:
        data = tmp_path / "data"
        with Store.open(data, "fakesales", read_only=False, create=True):  # a sync in progress
            second = subprocess.run([sys.executable, "-m", "kpi_lib.cli", "sync", "--account", "fakesales"],
                                    env=cli_env(amo, data), capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and "another process" in second.stderr
        assert amo.requests == []


def test_seeking_and_its_fallbacks():
    leads = next(s for s in STREAMS if s.entity == "leads")
    page = lambda *stamps: {"_links": {"next": {"href": "https://x.amocrm.ru/api/v4/leads?limit=2&page=2"}},  # noqa: E731
                            "_embedded": {"leads": [{"id": i, "updated_at": t} for i, t in enumerate(stamps)]}}
    first = build_first_request(leads, None, full=True)
    assert "filter" not in first and "order%5Bupdated_at%5D=asc" in first
    seek = build_next_request(leads, first, page(5, 9))
    assert "filter%5Bupdated_at%5D%5Bfrom%5D=9" in seek and "page" not in seek
    # a page of equal stamps (a bulk import longer than a page): follow _links.next
    assert build_next_request(leads, seek, page(9, 9)) == "/api/v4/leads?limit=2&page=2"
    # the server ignored the order or the filter: page on rather than skip anything
    assert build_next_request(leads, first, page(9, 5)) == "/api/v4/leads?limit=2&page=2"
    assert build_next_request(leads, seek, page(3, 12)) == "/api/v4/leads?limit=2&page=2"
    assert build_next_request(leads, seek, {"_embedded": {"leads": []}, "_links": {}}) is None
    since = build_first_request(leads, 10_000, full=False)
    assert f"filter%5Bupdated_at%5D%5Bfrom%5D={10_000 - OVERLAP}" in since
    events = next(s for s in STREAMS if s.entity == "events")
    assert "filter%5Bcreated_at%5D%5Bfrom%5D" in build_first_request(events, 10_000, full=False)


def test_the_store_is_named_after_the_subdomain():
    assert guess_account_name("https://acme.amocrm.ru") == "acme"
    assert guess_account_name("https://acme.kommo.com") == "acme"
    assert guess_account_name("http://127.0.0.1:8080") is None
    assert guess_account_name("https://a.b.amocrm.ru") is None
