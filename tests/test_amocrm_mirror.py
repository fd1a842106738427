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


def sync_in_process(amo: FakeAmoCRM, data: Path, faults: int | None = None) -> dict:
    if faults is not None:
        amo.set_chaos(0.3, seed=faults, kinds=FAULTS)
    try:
        with Store.open(data, "fakesales", read_only=False, create=True) as store:
            sync_account(store, client_for(amo, max_retries=12, timeout=(2, 2)))
            return snapshot(store, raw=False)
    finally:
        amo.chaos = None


def sync_killed(amo: FakeAmoCRM, data: Path, at: int) -> None:
    """A ``kpi-report sync`` process killed with SIGKILL as the server receives its ``at``-th request."""
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
        proc = subprocess.Popen([sys.executable, "-m", "kpi_lib.cli", "sync", "--account", "fakesales"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc.wait(timeout=120)
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
    elif kind == "call_lead" and leads:
        acc.add_call("lead_notes", pick(leads, k), ("call_in", "call_out")[j % 2], 502 + j % 3, 4, 30 + j)
    elif kind == "call_contact" and acc.data["contacts"]:
        acc.add_call("contact_notes", pick(acc.data["contacts"], k), "call_out", 503, 4, 60 + j)


CHANGES = ("add_lead", "update_lead", "link_contact", "delete_lead", "restore_lead", "empty_trash", "add_task",
           "complete_task", "delete_task", "update_contact", "delete_contact", "merge_contact", "delete_company",
           "call_lead", "call_contact")
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
        killed = 0
        for kind, k, j in steps + [("sync", 0, 0)]:
            if kind == "sync_killed" and killed < 1:  # a process per kill: at most one per example
                killed += 1
                sync_killed(amo, data, at=k)
            elif kind in ("sync", "sync_faults", "sync_killed"):
                got = sync_in_process(amo, data, faults=j if kind == "sync_faults" else None)
                want = fresh_full_sync(amo, folder)
                for table in want:
                    assert got[table] == want[table], (table, kind, steps)
            else:
                apply(account, (kind, k, j))


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
