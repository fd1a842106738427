"""The amoCRM client against a fake amoCRM over real HTTP: pages, limits, faults, tokens."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from pathlib import Path

import pytest
import requests

from kpi_lib.amocrm.auth import OAuthTokens, StaticToken
from kpi_lib.amocrm.client import AmoClient, RateLimiter, find_next_link
from kpi_lib.amocrm.sync import sync_account
from kpi_lib.errors import ApiError, AuthError, BlockedError, PaymentError
from kpi_lib.store import Store
from tests.fake_amocrm import FakeAccount, FakeAmoCRM, make_account
from tests.samples import load_sample



def client_for(amo: FakeAmoCRM, **kw) -> AmoClient:
    kw.setdefault("max_rps", 50)
    kw.setdefault("backoff_factor", 0.01)
    return AmoClient(amo.url, StaticToken(amo.token), **kw)


@pytest.fixture()
def amo():
    with FakeAmoCRM(make_account(120), page_cap=50) as server:
        yield server


def oauth_for(amo: FakeAmoCRM, path: Path, client: AmoClient) -> OAuthTokens:
    c = amo.client
    return OAuthTokens(path, c["client_id"], c["client_secret"], c["redirect_uri"], client.post_token)


# -- pagination -------------------------------------------------------------------------------

def test_pages_follow_next_on_the_configured_host_and_stop_at_204(amo):
    client = client_for(amo)
    pages = list(client.iter_pages("/api/v4/leads", {"limit": 250}))
    assert [p["_page"] for p in pages] == [1, 2, 3]
    assert "fakesales.amocrm.ru" in pages[0]["_links"]["next"]["href"]  # foreign host in the links
    assert sum(len(p["_embedded"]["leads"]) for p in pages) == 120
    assert all(path.startswith("/api/v4/leads") for _, _, path, _ in amo.requests)
    assert client.get("/api/v4/leads", {"page": 9})[0] is None  # past the end: 204
    assert list(client.iter_pages("/api/v4/leads", {"filter[updated_at][from]": 4_000_000_000})) == []


def test_real_samples_parse_into_the_store(tmp_path):
    load = load_sample
    account = FakeAccount(load("account.docs.json"))
    for collection, name, key in (("leads", "leads_list.real_capture.json", "leads"),
                                  ("users", "users_list.docs.json", "users"),
                                  ("pipelines", "leads_pipelines_list.docs.json", "pipelines"),
                                  ("events", "events_list.docs.json", "events")):
        for item in load(name)["_embedded"][key]:
            account.put(collection, item)
            if collection == "events":  # the sample is a lead_added event, which the KPIs do not read
                account.put(collection, {**item, "id": item["id"] + "c", "type": "incoming_call"})
    for note in load("notes_list.docs.json")["_embedded"]["notes"]:
        account.put("lead_notes", note)
        account.put("lead_notes", {**note, "id": note["id"] + 1, "note_type": "call_in",
                                   "params": {"uniq": "u1", "duration": 42, "call_status": 4, "phone": "+7999"}})
    assert find_next_link(load("events_list.docs.json")) == "/api/v4/events?limit=1&page=2"
    with FakeAmoCRM(account) as amo, Store.open(tmp_path, "sample", read_only=False, create=True) as store:
        sync_account(store, client_for(amo))
        leads = store.frame("leads").set_index("id")
        real = load("leads_list.real_capture.json")["_embedded"]["leads"]
        assert sorted(leads.index) == sorted(lead["id"] for lead in real)
        assert {lead["id"]: lead["price"] for lead in real} == leads["price"].astype(int).to_dict()
        assert store.frame("account").loc[0, "timezone"] == "Europe/Moscow"
        assert set(store.frame("statuses")["id"]) >= {142, 143}
        users = store.frame("users").set_index("id")
        assert users.loc[123123, "name"] == "Пользователь для примера 2"
        events = store.frame("events")
        assert list(events["id"]) == ["01pz58t6p04ymgsgfbmfyfy1mfc"] and list(events["note_id"]) == [42743871]
        calls = store.frame("calls")
        assert list(calls["duration"]) == [42, 42] and set(calls["note_type"]) == {"call_in"}


# -- politeness -------------------------------------------------------------------------------

def test_rate_limiter_allows_n_per_window():
    limiter = RateLimiter(3, window=0.2)
    import time
    began = time.monotonic()
    for _ in range(7):
        limiter.acquire()
        limiter.release()
    assert time.monotonic() - began >= 0.4  # 3 + 3 + 1 needs two full windows


def test_never_more_than_seven_in_any_second_retries_included(tmp_path):
    account = make_account(150, seed=3)
    with FakeAmoCRM(account, rate_limit=7, page_cap=50) as amo:
        amo.set_chaos(0.2, seed=5, kinds=("status:500", "status:503", "reset", "truncate", "bad_json"))
        with Store.open(tmp_path, "a", read_only=False, create=True) as store:
            report = sync_account(store, client_for(amo, max_rps=7, backoff_factor=0))
        statuses = [r[3] for r in amo.requests]
        assert statuses.count(429) == 0 and amo.max_in_window(1.0) <= 7
        assert len(amo.requests) >= 30 and report.requests == len(amo.requests)
        assert any(s in (500, 503, -1) for s in statuses)  # the faults happened and were retried


def test_429_is_retried_then_403_block_stops_at_once(tmp_path):
    with FakeAmoCRM(make_account(100), rate_limit=2, block_after=2, page_cap=10) as amo:
        with Store.open(tmp_path, "a", read_only=False, create=True) as store:
            with pytest.raises(BlockedError) as err:
                sync_account(store, client_for(amo, max_rps=7))
        statuses = [r[3] for r in amo.requests]
        assert 429 in statuses
        assert statuses[-1] == 403 and statuses.count(403) == 1  # never retried into the block
        message = str(err.value)
        assert "blocked" in message and "7 requests per second" in message and "wait" in message


def test_402_names_the_subscription_with_the_servers_detail(amo):
    amo.fail("status:402")
    with pytest.raises(PaymentError) as err:
        client_for(amo).get("/api/v4/leads")
    assert "subscription" in str(err.value) and "Subscription expired" in str(err.value)
    assert err.value.detail == "Subscription expired" and len(amo.requests) == 1


def test_other_errors_carry_the_problem_detail(amo):
    with pytest.raises(ApiError) as err:
        client_for(amo).get("/api/v4/tasks", {"order[updated_at]": "asc"})
    assert err.value.status == 400 and "order[updated_at] is not supported" in str(err.value)


@pytest.mark.parametrize("kind", ["status:500", "status:502", "status:503", "status:504", "status:429", "reset",
                                  "truncate", "bad_json", "slow"])
def test_each_fault_is_retried(amo, kind):
    amo.fail(kind, times=2, path="/api/v4/leads", delay=1.0)
    client = client_for(amo, timeout=(2, 0.5))
    payload, _ = client.get("/api/v4/leads", {"limit": 10})
    assert len(payload["_embedded"]["leads"]) == 10
    assert len(amo.requests) == 3 and client.requests == 3


def test_retries_are_bounded(amo):
    amo.fail("status:503", times=50)
    with pytest.raises(ApiError) as err:
        client_for(amo, max_retries=3).get("/api/v4/leads")
    assert len(amo.requests) == 4 and "after 4 attempts" in str(err.value) and "503" in str(err.value)


# -- tokens -----------------------------------------------------------------------------------

def test_401_with_a_long_lived_token_says_how_to_make_a_new_one(amo):
    client = AmoClient(amo.url, StaticToken("not-the-token"), max_rps=50)
    with pytest.raises(AuthError) as err:
        client.get("/api/v4/account")
    assert "AMOCRM_TOKEN" in str(err.value) and "long-lived" in str(err.value) and len(amo.requests) == 1


def test_oauth_code_exchange_refresh_on_401_and_rotation(amo, tmp_path):
    path = tmp_path / "tokens.json"
    client = client_for(amo)
    tokens = oauth_for(amo, path, client)
    client.tokens = tokens
    tokens.exchange_code(amo.issue_code())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first = json.loads(path.read_text())
    client.get("/api/v4/account")
    amo.expire_access_tokens()
    payload, _ = client.get("/api/v4/account")  # 401 -> refresh -> retry
    assert payload["subdomain"] == "fakesales" and amo.refresh_count == 1
    second = json.loads(path.read_text())
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert [r[3] for r in amo.requests[-3:]] == [401, 200, 200]
    # the fake rejects an old refresh token; the client never sent one
    stale = requests.post(f"{amo.url}/oauth2/access_token", json={**amo.client, "grant_type": "refresh_token",
                                                                  "refresh_token": first["refresh_token"]})
    assert stale.status_code == 400 and amo.refresh_reuse == 1
    amo.refresh_reuse = 0
    amo.fail("status:401", times=2, path="/api/")
    with pytest.raises(AuthError) as err:
        client.get("/api/v4/account")
    assert "even after refreshing" in str(err.value) and "kpi-report auth --code" in str(err.value)
    assert amo.refresh_reuse == 0 and not list(tmp_path.glob(".tokens.json.*"))


def test_a_reused_refresh_token_is_a_clear_error(amo, tmp_path):
    path = tmp_path / "tokens.json"
    client = client_for(amo)
    client.tokens = oauth_for(amo, path, client)
    client.tokens.exchange_code(amo.issue_code())
    saved = json.loads(path.read_text())
    amo.refresh_valid.discard(saved["refresh_token"])  # someone else spent it
    amo.refresh_used.add(saved["refresh_token"])
    amo.expire_access_tokens()
    with pytest.raises(AuthError) as err:
        client.get("/api/v4/account")
    assert "already used" in str(err.value) and "kpi-report auth --code" in str(err.value)


def test_two_concurrent_syncs_refresh_only_once(amo, tmp_path):
    path = tmp_path / "tokens.json"
    first = client_for(amo)
    oauth_for(amo, path, first).exchange_code(amo.issue_code())
    clients = [client_for(amo) for _ in range(2)]
    for c in clients:
        c.tokens = oauth_for(amo, path, c)  # separate token objects and locks sharing one file
        c.get("/api/v4/account")
    amo.expire_access_tokens()
    barrier, results = threading.Barrier(2), []

    def work(c):
        barrier.wait()
        results.append(c.get("/api/v4/users")[0]["_embedded"]["users"][0]["id"])

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert results == [501, 501] and amo.refresh_count == 1 and amo.refresh_reuse == 0


def test_no_token_in_logs_errors_or_store(tmp_path, caplog):
    account = make_account(60)
    with FakeAmoCRM(account, page_cap=20) as amo:
        secret = amo.token
        amo.set_chaos(0.5, seed=11, kinds=("status:500", "status:429", "reset", "truncate", "bad_json"))
        client = client_for(amo, max_retries=12)
        errors = []
        caplog.set_level(logging.DEBUG)
        with Store.open(tmp_path, "a", read_only=False, create=True) as store:
            sync_account(store, client)
            for kind in ("status:402", "status:403", "status:400", "status:401"):
                amo.chaos = None
                amo.fail(kind)
                try:
                    sync_account(store, client)
                except ApiError as exc:
                    errors.append(f"{exc!s} {exc!r} {exc.detail}")
        with pytest.raises(ApiError) as err:
            AmoClient("http://127.0.0.1:9", StaticToken(secret), max_rps=50, max_retries=1,
                      timeout=(1, 1)).get("/api/v4/account")
        errors.append(str(err.value))
    assert len(errors) == 5
    text = caplog.text + "\n".join(errors)
    assert "retrying" in caplog.text and secret not in text
    assert secret.encode() not in (tmp_path / "a.duckdb").read_bytes()


def test_a_fractional_rate_rounds_down():
    limiter = RateLimiter(0.5, window=0.1)
    assert (limiter.slots, limiter.window) == (1, 0.2)
    limiter = RateLimiter(6.5)
    assert (limiter.slots, limiter.window) == (6, 1.0)


def test_a_wrong_address_names_the_variables_to_check(amo):
    with pytest.raises(ApiError) as err:
        client_for(amo).get("/api/v4/nowhere")
    assert err.value.status == 404 and "AMOCRM_SUBDOMAIN" in str(err.value)
