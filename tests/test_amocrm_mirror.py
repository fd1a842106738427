"""The store mirrors the account: after any sync its typed tables are what a fresh full sync holds.

A fake amoCRM account (real HTTP on 127.0.0.1) is changed by random sequences of adds,
updates, deletions, restores and merges, interleaved with incremental syncs — some through
injected faults, some killed with ``kill -9`` and resumed.  After each completed sync the typed
tables must equal, row for row, those of a fresh full sync of the account at that moment
(kpi-definitions.md §0 "Deleted items").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpi_lib.amocrm.auth import StaticToken
from kpi_lib.amocrm.client import AmoClient
from kpi_lib.amocrm.sync import sync_account
from kpi_lib.config import load_settings
from kpi_lib.kpis import compute_trends, load_context
from kpi_lib.store import Store
from tests.fake_amocrm import FakeAccount, FakeAmoCRM, make_account, snapshot

ROOT = Path(__file__).resolve().parents[1]
#: Examples per run: a few minutes in CI (raise it locally with MIRROR_EXAMPLES=50).
EXAMPLES = int(os.environ.get("MIRROR_EXAMPLES", "8"))
FAULTS = ("status:500", "status:503", "status:429", "reset", "truncate", "bad_json")


def client_for(amo: FakeAmoCRM, **kw) -> AmoClient:
    return AmoClient(amo.url, StaticToken(amo.token), max_rps=kw.pop("max_rps", 100), backoff_factor=0.01, **kw)


def fresh_full_sync(amo: FakeAmoCRM, folder: Path) -> dict:
    """The typed tables a first sync of the account, as it is now, would hold."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp, Store.open(tmp, "fresh", read_only=False,
                                                                    create=True) as store:
        sync_account(store, client_for(amo))
        return snapshot(store, raw=False)


def sync_in_process(amo: FakeAmoCRM, data: Path, faults: int | None = None, full: bool = False) -> dict:
    if faults is not None:
        amo.set_chaos(0.3, seed=faults, kinds=FAULTS)
    try:
        with Store.open(data, "fakesales", read_only=False, create=True) as store:
            sync_account(store, client_for(amo, max_retries=12, timeout=(2, 2)), full=full)
            return snapshot(store, raw=False)
    finally:
        amo.chaos = None


def sync_killed(amo: FakeAmoCRM, data: Path, at: int, full: bool = False) -> bool:
    """A ``kpi-report sync`` process killed with SIGKILL as the server receives its ``at``-th request;
    True if it finished first."""
    first, proc = len(amo.requests), None

    def kill(index: int, path: str) -> None:
        if index - first == at and proc is not None:
            os.kill(proc.pid, signal.SIGKILL)
            time.sleep(0.1)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMOCRM_", "KPI_"))}
    env.update(PYTHONPATH=str(ROOT), KPI_DATA_DIR=str(data), AMOCRM_BASE_URL=amo.url, AMOCRM_TOKEN=amo.token,
               AMOCRM_MAX_RPS="7")
    amo.before_request = kill
    try:
        proc = subprocess.Popen([sys.executable, "-m", "kpi_lib.cli", "sync", "--account", "fakesales",
                                 *(["--full"] if full else [])], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return proc.wait(timeout=120) == 0
    finally:
        amo.before_request = None


def pick(items, k: int):
    items = sorted(items)
    return items[k % len(items)] if items else None


def apply(acc: FakeAccount, op: tuple) -> None:
    """One change a user makes in amoCRM (ids are picked among what exists, by position)."""
    kind, k, j = op
    leads = [i for i in acc.data["leads"] if i not in acc.deleted]
    now = int(time.time())
    if kind == "add_lead" and leads:
        lead_id = acc.new_id()
        acc.put("leads", {**acc.data["leads"][pick(leads, k)], "id": lead_id, "name": f"New {lead_id}",
                          "created_at": now, "updated_at": now, "_embedded": {
                              "tags": [], "companies": [], "contacts": [{"id": pick(acc.data["contacts"], j),
                                                                          "is_main": True}]}})
    elif kind == "update_lead" and leads:
        acc.update("leads", pick(leads, k), price=1000 + j, status_id=(142, 143, 7003)[j % 3])
    elif kind == "link_contact" and leads and acc.data["contacts"]:
        lead = acc.data["leads"][pick(leads, k)]
        contact = pick(acc.data["contacts"], j)
        links = [link for link in lead["_embedded"]["contacts"] if link["id"] != contact]
        acc.update("leads", lead["id"], _embedded={**lead["_embedded"],
                                                   "contacts": links + [{"id": contact, "is_main": False}]})
    elif kind == "delete_lead" and leads:
        acc.delete_lead(pick(leads, k), user=502)
    elif kind == "restore_lead" and acc.trash:
        acc.restore_lead(pick(acc.trash, k), user=502)
    elif kind == "empty_trash":
        acc.empty_trash()
    elif kind == "add_task" and leads:
        task_id = acc.new_id()
        acc.put("tasks", {"id": task_id, "created_by": 502, "updated_by": 502, "created_at": now, "updated_at": now,
                          "responsible_user_id": 502 + j % 3, "group_id": 0, "entity_id": pick(leads, k),
                          "entity_type": "leads", "duration": 0, "is_completed": False, "task_type_id": 1,
                          "text": "Send the offer and agree on a date", "result": [], "complete_till": now + 86400,
                          "account_id": acc.account["id"]})
    elif kind == "complete_task" and acc.data["tasks"]:
        acc.update("tasks", pick(acc.data["tasks"], k), is_completed=True, result={"text": "Offer sent, agreed"})
    elif kind == "delete_task" and acc.data["tasks"]:
        acc.delete_task(pick(acc.data["tasks"], k), user=502)
    elif kind == "update_contact" and acc.data["contacts"]:
        acc.update("contacts", pick(acc.data["contacts"], k), name=f"Renamed {j}")
    elif kind == "delete_contact" and acc.data["contacts"]:
        acc.delete_contact(pick(acc.data["contacts"], k), user=502)
    elif kind == "merge_contact" and len(acc.data["contacts"]) > 1:
        gone = pick(acc.data["contacts"], k)
        acc.merge_contact(gone, into=pick(set(acc.data["contacts"]) - {gone}, j), user=502)
    elif kind == "delete_company" and acc.data["companies"]:
        acc.delete_company(pick(acc.data["companies"], k), user=502)
    elif kind in ("restore_contact", "restore_company"):
        collection = "contacts" if kind == "restore_contact" else "companies"
        gone = [i for c, i in acc.parties_trash if c == collection]
        if gone:
            (acc.restore_contact if kind == "restore_contact" else acc.restore_company)(pick(gone, k), user=502)
    elif kind.startswith("vanish_"):
        collection = {"vanish_lead": "leads", "vanish_contact": "contacts", "vanish_task": "tasks",
                      "vanish_call": "lead_notes"}[kind]
        items = set(acc.data[collection]) | (set(acc.trash) if collection == "leads" else set())
        if items:
            acc.vanish(collection, pick(items, k))
    elif kind == "call_lead" and leads:
        acc.add_call("lead_notes", pick(leads, k), ("call_in", "call_out")[j % 2], 502 + j % 3, 4, 30 + j)
    elif kind == "call_contact" and acc.data["contacts"]:
        acc.add_call("contact_notes", pick(acc.data["contacts"], k), "call_out", 503, 4, 60 + j)


CHANGES = ("add_lead", "update_lead", "link_contact", "delete_lead", "restore_lead", "empty_trash", "add_task",
           "complete_task", "delete_task", "update_contact", "delete_contact", "merge_contact", "delete_company",
           "restore_contact", "restore_company", "call_lead", "call_contact", "vanish_lead", "vanish_contact",
           "vanish_task", "vanish_call")
STEPS = st.lists(st.one_of(
    st.tuples(st.sampled_from(CHANGES), st.integers(0, 99), st.integers(0, 99)),
    st.tuples(st.sampled_from(("sync", "sync_faults", "sync_killed")), st.integers(1, 14), st.integers(0, 99)),
), min_size=1, max_size=14)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=STEPS, before_first=st.lists(st.tuples(st.sampled_from(CHANGES), st.integers(0, 99),
                                                    st.integers(0, 99)), max_size=4),
       seed=st.integers(0, 1000))
def test_after_every_sync_the_typed_tables_equal_a_fresh_full_sync(steps, before_first, seed):
    account = make_account(14, seed=seed)
    for op in before_first:  # deletions before the first sync, as in a new user's account
        apply(account, op)
    with tempfile.TemporaryDirectory() as tmp, FakeAmoCRM(account, page_cap=4) as amo:
        folder, data = Path(tmp), Path(tmp) / "data"
        killed, owed = 0, False  # owed: something vanished without an event, which only --full sees
        for kind, k, j in steps + [("sync", 0, 0)]:
            if kind == "sync_killed" and killed < 1:  # a process per kill: at most one per example
                killed += 1
                finished = sync_killed(amo, data, at=k, full=owed)
                if owed and not finished and (data / "fakesales.duckdb").exists():
                    with Store.open(data, "fakesales") as store:  # begun: the next sync, incremental, finishes it
                        owed = "owed" not in (store.get_state("full_round") or {})
                owed = owed and not finished
            elif kind in ("sync", "sync_faults", "sync_killed"):
                got = sync_in_process(amo, data, faults=j if kind == "sync_faults" else None, full=owed)
                owed = False
                want = fresh_full_sync(amo, folder)
                for table in want:
                    assert got[table] == want[table], (table, kind, steps)
            else:
                apply(account, (kind, k, j))
                owed = owed or kind.startswith("vanish_")


def trends_of(data: Path) -> pd.DataFrame:
    ctx = load_context(load_settings(overrides={"data_dir": str(data), "account": "fakesales", "week": "last"}))
    return compute_trends(ctx, weeks=30).sort_values(["week", "block", "key", "manager"], ignore_index=True)


def test_deleted_leads_tasks_and_contacts_leave_every_figure(tmp_path):
    """A first sync after deletions, and an incremental one across them, give the same figures;
    the deleted leads' tasks leave the SMART audit, a deleted task and a deleted contact's calls too."""
    account = make_account(80, seed=11)
    gone_leads = sorted(account.data["leads"])[:3]
    gone_task = sorted(t for t, task in account.data["tasks"].items() if task["entity_id"] not in gone_leads)[0]
    gone_contact = sorted({note["entity_id"] for note in account.data["contact_notes"].values()})[0]
    gone_tasks = [t for t in account.data["tasks"].values() if t["entity_id"] in gone_leads or t["id"] == gone_task]
    audited = [t for t in gone_tasks if t["responsible_user_id"] != 501]  # 501 is the admin: a supervisor
    with FakeAmoCRM(account, page_cap=50) as amo:
        with Store.open(tmp_path / "before", "fakesales", read_only=False, create=True) as store:
            sync_account(store, client_for(amo))
        with Store.open(tmp_path / "across", "fakesales", read_only=False, create=True) as store:
            sync_account(store, client_for(amo))
            for lead_id in gone_leads:
                account.delete_lead(lead_id, user=502)
            account.delete_task(gone_task, user=502)
            account.delete_contact(gone_contact, user=502)
            sync_account(store, client_for(amo))
        with Store.open(tmp_path / "first", "fakesales", read_only=False, create=True) as store:
            sync_account(store, client_for(amo))
            leads = store.frame("leads").set_index("id")
            assert leads.loc[gone_leads, "is_deleted"].all() and leads.loc[gone_leads, "name"].isna().all()
            assert gone_task not in set(store.frame("tasks")["id"])
            assert gone_contact not in set(store.frame("calls", where="entity_type = 'contact'")["entity_id"])
            assert gone_contact not in set(store.frame("lead_contacts")["contact_id"])
    before, across, first = (trends_of(tmp_path / name) for name in ("before", "across", "first"))
    pd.testing.assert_frame_equal(first, across)
    tasks = lambda t: t.loc[(t.block == "smart_audit") & (t.key == "tasks") & t.manager.isna(), "value"].sum()  # noqa: E731  (NA: the team)
    assert len(audited) >= 3 and tasks(before) - tasks(first) == len(audited)


def test_a_full_sync_drops_what_left_the_account_without_an_event(tmp_path):
    """Items purged without an event stay after an incremental sync (nothing says they went) and
    leave with the next full sync; users and pipelines, listed whole every time, leave at once."""
    account = make_account(60, seed=5)
    with FakeAmoCRM(account, page_cap=20) as amo, \
            Store.open(tmp_path / "data", "fakesales", read_only=False, create=True) as store:
        sync_account(store, client_for(amo))
        account.delete_lead(300003, user=502)
        sync_account(store, client_for(amo), full=True)  # the trashed lead is listed by with=only_deleted
        lead, trashed, contact, task = 300001, 300003, 400002, sorted(account.data["tasks"])[0]
        call, company = sorted(account.data["lead_notes"])[0], sorted(account.data["companies"])[0]
        for collection, item_id in (("leads", lead), ("leads", trashed), ("contacts", contact), ("tasks", task),
                                    ("lead_notes", call), ("companies", company), ("users", 506)):
            account.vanish(collection, item_id)
        incremental = sync_account(store, client_for(amo))
        assert incremental.items["gone"] == 1 and 506 not in set(store.frame("users")["id"])
        assert {lead, trashed} <= set(store.frame("leads")["id"]) and contact in set(store.frame("contacts")["id"])
        full = sync_account(store, client_for(amo), full=True)
        assert full.items["gone"] == 5 and full.full
        assert lead not in set(store.frame("leads")["id"])
        # its lead_deleted event still says the trashed one was deleted: a row marked deleted, as in a fresh sync
        assert store.frame("leads", where=f"id = {trashed}")["is_deleted"].tolist() == [True]
        assert contact not in set(store.frame("contacts")["id"]) and task not in set(store.frame("tasks")["id"])
        assert call not in set(store.frame("calls")["id"]) and company not in set(store.frame("companies")["id"])
        assert not store.frame("custom_field_values", where=f"entity_id = {contact}").shape[0]
        assert store.get_state("full_round")["cursor"] is None and "owed" not in store.get_state("full_round")
        assert snapshot(store, raw=False) == fresh_full_sync(amo, tmp_path)


def test_a_lead_deleted_by_an_event_stays_a_deleted_row_after_a_full_sync(tmp_path):
    """A lead whose trash was emptied is known only from its lead_deleted event: a full sync that
    no longer lists it keeps it as a row marked deleted, as a fresh sync would."""
    account = make_account(30, seed=6)
    with FakeAmoCRM(account, page_cap=10) as amo, \
            Store.open(tmp_path / "data", "fakesales", read_only=False, create=True) as store:
        sync_account(store, client_for(amo))
        account.delete_lead(300004, user=502)
        account.empty_trash()
        sync_account(store, client_for(amo))
        report = sync_account(store, client_for(amo), full=True)
        assert report.items["gone"] == 0
        assert store.frame("leads", where="id = 300004")["is_deleted"].tolist() == [True]
        assert snapshot(store, raw=False) == fresh_full_sync(amo, tmp_path)


def test_an_interrupted_full_sync_is_finished_by_the_next_sync(tmp_path):
    """A full sync cut short (here by a failing endpoint) leaves its round owed: the next plain sync
    lists whole what was not yet listed, resumes the pass cut short, and then drops what vanished."""
    account = make_account(60, seed=7)
    with FakeAmoCRM(account, page_cap=20) as amo, \
            Store.open(tmp_path / "data", "fakesales", read_only=False, create=True) as store:
        sync_account(store, client_for(amo))
        gone_lead, gone_task = 300002, sorted(account.data["tasks"])[-1]
        account.vanish("leads", gone_lead)
        account.vanish("tasks", gone_task)
        amo.fail("status:500", times=10, path="/api/v4/tasks", after=1)
        with pytest.raises(Exception):
            sync_account(store, client_for(amo, max_retries=1), full=True)
        owed = store.get_state("full_round")["owed"]
        assert "leads" not in owed and {"tasks", "events"} <= set(owed)
        assert gone_lead in set(store.frame("leads")["id"])  # nothing dropped before every listing is whole
        amo.faults.clear()
        report = sync_account(store, client_for(amo))
        assert report.full and report.items["gone"] == 2 and report.pages.get("deleted_leads", 0) == 0
        assert gone_lead not in set(store.frame("leads")["id"]) and gone_task not in set(store.frame("tasks")["id"])
        assert snapshot(store, raw=False) == fresh_full_sync(amo, tmp_path)


def test_restored_contacts_and_companies_come_back_with_their_links_and_calls(tmp_path):
    """A restore moves no updated_at: the next incremental sync fetches the restored contact and
    company by id, their leads and the contact's call notes, and the store equals a fresh sync;
    a sync cut short before that fetch leaves it queued for the next one."""
    account = make_account(60, seed=8)
    contact = sorted({n["entity_id"] for n in account.data["contact_notes"].values()})[0]
    company = sorted({link["id"] for lead in account.data["leads"].values()
                      for link in lead["_embedded"]["companies"]})[0]
    with FakeAmoCRM(account, page_cap=20) as amo, \
            Store.open(tmp_path / "data", "fakesales", read_only=False, create=True) as store:
        sync_account(store, client_for(amo))
        links = store.frame("lead_contacts", where=f"contact_id = {contact}")
        calls = store.frame("calls", where=f"entity_type = 'contact' AND entity_id = {contact}")
        companies = store.frame("lead_companies", where=f"company_id = {company}")
        assert len(links) and len(calls) and len(companies)
        account.delete_contact(contact, user=502)
        account.delete_company(company, user=502)
        sync_account(store, client_for(amo))
        assert not len(store.frame("lead_contacts", where=f"contact_id = {contact}"))
        account.restore_contact(contact, user=502)
        account.restore_company(company, user=502)
        amo.fail("status:500", times=10, path="/api/v4/contacts/notes", after=1)  # the restored one's notes
        with pytest.raises(Exception):
            sync_account(store, client_for(amo, max_retries=1))
        assert store.queued_restores() == {"company": [company], "contact": [contact]}
        amo.faults.clear()
        report = sync_account(store, client_for(amo))
        assert report.items["restored"] == 2 and store.queued_restores() == {}
        rows = lambda frame: sorted(map(tuple, frame.astype(str).values))  # noqa: E731
        assert rows(store.frame("lead_contacts", where=f"contact_id = {contact}")) == rows(links)
        assert rows(store.frame("calls", where=f"entity_type = 'contact' AND entity_id = {contact}")) == rows(calls)
        assert rows(store.frame("lead_companies", where=f"company_id = {company}")) == rows(companies)
        assert snapshot(store, raw=False) == fresh_full_sync(amo, tmp_path)
        again = sync_account(store, client_for(amo))  # fetched once: the next sync asks nothing more
        assert again.requests == 1 + 10 and "restored" not in again.items
