"""Sync throughput at amoCRM's rate limit, and the cost of an incremental sync.

    python -m benchmarks.bench_sync [--scale 2] [--rps 7]

Serves the demo account (:func:`kpi_lib.demo.generate_account` at ``--scale``) from the fake
amoCRM of the tests (``tests/fake_amocrm.py``, real HTTP on 127.0.0.1, in a process of its
own like a real server) with the server's rate limit at ``--rps``, then measures:

* **full**: a first sync at ``--rps``; entities per second against the ceiling of
  ``rps`` × page size (250, events 100) per second, as a ratio (target ≥ 0.90);
* **incremental**: after 1 % of leads, contacts and tasks changed, a fifth of it deletions
  (plus a deleted company, a deleted contact restored, new calls and events), the requests of
  an incremental sync against those of the full sync (target ≤ 0.03), and the share of them
  spent on deletions: the pages their events add, and the requests fetching the restored
  contact again (deleted leads are listed on first and full syncs only).

The client's CPU time per request of the full sync (parsing, typing and writing a page, in
all its threads) is printed against the ``1 / rps`` seconds a request may take: well below 1,
the rate limit sets the pace, and a lower throughput ratio means the machine was busy.  The
server counts 429 answers and the most requests it saw in any 1-second window; both show the
client stayed polite.  Nothing here asserts a time: the machine is shared.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kpi_lib.amocrm.auth import StaticToken  # noqa: E402
from kpi_lib.amocrm.client import AmoClient  # noqa: E402
from kpi_lib.amocrm.sync import EVENT_TYPES, STREAMS, sync_account  # noqa: E402
from kpi_lib.store import DELETIONS, RESTORES  # noqa: E402
from kpi_lib.demo import generate_account  # noqa: E402
from kpi_lib.store import Store  # noqa: E402
from tests.fake_amocrm import FakeAccount, FakeAmoCRM  # noqa: E402


def change_one_percent(account: FakeAccount, seed: int = 1) -> dict[str, int]:
    """Change 1 % of leads, contacts and tasks — a fifth of it deletions (and a company) — and add
    calls on 1 % of leads; returns the changes and the deletions."""
    rng = random.Random(seed)
    changed = deleted = 0
    for name in ("leads", "contacts", "tasks"):
        ids = sorted(account.data[name])
        picked = rng.sample(ids, max(1, len(ids) // 100))
        for k, item_id in enumerate(picked):
            if k % 5 == 4:  # every fifth change deletes
                {"leads": account.delete_lead, "contacts": account.delete_contact,
                 "tasks": account.delete_task}[name](item_id)
                deleted += 1
            elif name == "leads":
                account.update(name, item_id, price=rng.randrange(1000, 99000))
            elif name == "contacts":
                account.update(name, item_id, name=f"Changed {item_id}")
            else:
                account.update(name, item_id, is_completed=True)
                account.add_event("task_completed", "task", item_id)
            changed += 1
    account.delete_company(rng.choice(sorted(account.data["companies"])))
    account.restore_contact(min(i for c, i in account.parties_trash if c == "contacts"))  # deleted, then restored
    changed, deleted = changed + 2, deleted + 2
    leads = [i for i in account.data["leads"] if i not in account.deleted]
    for lead_id in rng.sample(sorted(leads), max(1, len(leads) // 100)):
        account.add_call("lead_notes", lead_id, "call_out", 0, 4, 90)
        changed += 1
    return {"changed": changed, "deleted": deleted}


def ceiling_seconds(account: FakeAccount, rps: float) -> float:
    """Seconds a sync of every entity would take at ``rps`` full pages per second."""
    sizes = {"events": 100}
    total = 0.0
    for stream in STREAMS:
        items = account.listing("deleted_leads" if stream.mode == "deleted" else stream.entity)
        if stream.entity == "events":
            items = [e for e in items if e["type"] in EVENT_TYPES]
        elif stream.entity.endswith("_notes"):
            items = [n for n in items if n["note_type"] in ("call_in", "call_out")]
        total += len(items) / (rps * sizes.get(stream.entity, 250))
    return total


def serve(conn: Connection, scale: float, rps: float) -> None:
    """Run the fake amoCRM in its own process (as a real server would be) and obey ``conn``."""
    account = FakeAccount.from_pages(generate_account(seed=7, scale=scale))
    with FakeAmoCRM(account, rate_limit=rps) as amo:
        counts = {name: len(account.listing(name)) for name in account.data}
        conn.send((amo.url, amo.token, counts, ceiling_seconds(account, rps)))
        while (command := conn.recv()) != "stop":
            if command == "change":
                conn.send(change_one_percent(account))
            elif command == "stats":
                conn.send((sum(1 for r in amo.requests if r[3] == 429), amo.max_in_window(1.0)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=2.0, help="demo account scale (default 2: ~6,700 leads)")
    parser.add_argument("--rps", type=float, default=7.0, help="rate limit, client and server (default 7)")
    args = parser.parse_args(argv)

    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(target=serve, args=(theirs, args.scale, args.rps),
                                                         daemon=True)
    server.start()
    try:
        url, token, counts, ideal = ours.recv()
        client = AmoClient(url, StaticToken(token), max_rps=args.rps)
        with tempfile.TemporaryDirectory() as tmp, Store.open(tmp, "bench", read_only=False, create=True) as store:
            began, cpu = time.monotonic(), time.process_time()
            full = sync_account(store, client)
            full_seconds, full_cpu = time.monotonic() - began, time.process_time() - cpu
            entities = sum(store.counts()[t] for t in ("leads", "contacts", "companies", "tasks", "calls", "events"))
            ours.send("change")
            change = ours.recv()
            marks = store.con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            incremental = sync_account(store, client)
            new_events, deletion_events = store.con.execute(
                "SELECT count(*), count(*) FILTER (WHERE type IN (SELECT unnest(?))) FROM events WHERE seq > ?",
                [list(DELETIONS + RESTORES), marks]).fetchone()
        ours.send("stats")
        too_many, busiest = ours.recv()
        ours.send("stop")
    finally:
        server.join(timeout=10)
        if server.is_alive():
            server.kill()

    leads = counts["leads"]
    throughput = ideal / full_seconds
    cost = incremental.requests / full.requests
    print(f"account: {leads} leads, {counts['contacts']} contacts, {counts['tasks']} tasks, "
          f"{counts['lead_notes'] + counts['contact_notes']} notes, {counts['events']} events")
    print(f"{'figure':<44}{'measured':>12}{'target':>10}{'ratio':>9}")
    print(f"{'full sync: seconds at the ceiling / seconds':<44}{full_seconds:>11.1f}s{ideal:>9.1f}s"
          f"{throughput:>9.3f}   (target >= 0.90)")
    print(f"{'full sync: entities per second':<44}{entities / full_seconds:>12.0f}{entities / ideal:>10.0f}"
          f"{throughput:>9.3f}")
    budget = 1 / args.rps
    per_request = full_cpu / full.requests
    print(f"{'full sync: client CPU per request (budget)':<44}{per_request * 1000:>10.1f}ms{budget * 1000:>8.0f}ms"
          f"{per_request / budget:>9.3f}   (parsing, typing, writing; above 1.0 the code, not the limit, sets the pace)")
    print(f"{'incremental after 1% changed: requests':<44}{incremental.requests:>12}{full.requests:>10}"
          f"{cost:>9.3f}   (target <= 0.03; {change['changed']} changes, {change['deleted']} deletions)")
    events_read, event_pages = incremental.items.get("events", 0), incremental.pages.get("events", 0)
    restores = incremental.requests - 1 - sum(incremental.pages.values())  # the restore fetch, beyond the streams
    spent = max(0, event_pages - -(-(events_read - deletion_events) // 100)) + restores
    print(f"{'incremental: requests spent on deletions':<44}{spent:>12}{incremental.requests:>10}"
          f"{spent / incremental.requests:>9.3f}   ({deletion_events} deletion and restore events among "
          f"{new_events} new; {restores} requests fetching {incremental.items.get('restored', 0)} restored "
          f"again; with=only_deleted: {incremental.pages.get('deleted_leads', 0)} requests, first and full syncs only)")
    print(f"{'most requests in any 1 s (server clock)':<44}{busiest:>12}{int(args.rps):>10}"
          f"{busiest / args.rps:>9.3f}   (429 answers: {too_many})")
    print(f"first sync: {full.requests} requests, {full.requests / leads * 1000:.0f} per 1,000 leads, "
          f"{full_seconds / leads * 1000:.0f} s per 1,000 leads of this mix at {args.rps:g} requests/s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
