"""Incremental, resumable sync of an amoCRM account into the store.

What is fetched (:data:`STREAMS`): the account (with its time zone), users, pipelines with
statuses and lead custom fields in full every time (a few requests); leads (with their
contact links), contacts, companies, tasks, call notes on leads and on contacts, and the
events the KPIs read, incrementally.

How nothing is lost:

* **Cursor.** Each incremental stream keeps a cursor: the server's clock (``Date`` header)
  when the stream's last complete pass began.  The next pass asks for what changed since
  the cursor minus :data:`OVERLAP` (10 minutes), which covers late-visible writes; upserts
  make re-reading the overlap harmless.
* **Moving data.** Page-based pagination over data that changes underneath skips items
  (an update moves an item from an early page to the end, shifting the rest forward).  Streams
  sorted by ``updated_at`` therefore seek instead of paging: after each page the next query
  starts at the page's greatest ``updated_at`` (inclusive) from page 1, so an update can only
  move an item forward, into a page still to come.  ``_links.next`` says whether more data
  exists, and is followed within a run of equal ``updated_at`` longer than a page, or when
  the server ignores the order.  Tasks (sortable by id only) and events (immutable) follow
  ``_links.next``: an update does not move a task out of its id position, and a task pass
  longer than a page ends with a catch-up pass over what changed since it began.
* **Resume.** Pages are applied whole, in one transaction together with the request that
  comes next (several pages at once when the writer falls behind the fetcher), so a sync
  killed at any moment (``kill -9``) resumes at the first page not applied.

Deletions and restores (:mod:`kpi_lib.deletions`): deleted items disappear from the lists.
The first sync and every full sync also list deleted leads (``with=only_deleted``); every sync
reads the deletion and restore events (``lead_deleted``/``lead_restored``, ``task_deleted``,
``contact_deleted``/``contact_restored``, ``company_deleted``/``company_restored``,
``entity_merged``), which the store applies as it writes them.  A restored contact or company
comes back without a new ``updated_at`` on its notes and links, so it is fetched again by id
with its leads and call notes (:func:`restore_parties`).  Items gone without any event are
found by listing whole: users, pipelines and lead fields every sync, everything else on a full
sync (``--full``), which drops what none of its listings brought.  A full sync cut short is
finished by the next sync, whether ``--full`` or not (:data:`ROUND`), and only then drops.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..config import Settings, amocrm_env, check_max_rps
from ..errors import ConfigError
from ..log import logger, progress
from ..store import Store, page_items, store_path
from .auth import require_base_url, make_token_source
from .client import AmoClient, find_next_link
from .endpoints import ENDPOINTS, EVENT_TYPES  # noqa: F401  (EVENT_TYPES: what the events stream asks for)
from .endpoints import Endpoint as Stream

#: Seconds re-read before a stream's cursor on every incremental pass.
OVERLAP = 600

#: The streams a sync walks, in order (one table with the demo account).
STREAMS: tuple[Stream, ...] = ENDPOINTS
#: Sync state of a full sync under way: the sync number it began in and the streams still to list whole.
ROUND = "full_round"


@dataclass
class SyncReport:
    """What one sync did."""

    account: str
    full: bool
    items: dict[str, int] = field(default_factory=dict)
    pages: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        counts = ", ".join(f"{n} {entity}" for entity, n in self.items.items() if n)
        kind = "full" if self.full else "incremental"
        return (f"synced {self.account} ({kind}): {counts or 'nothing changed'}; "
                f"{self.requests} requests in {self.seconds:.1f} s")


def build_first_request(stream: Stream, cursor: int | None, full: bool) -> str:
    """The first request of a pass: everything, or what changed since ``cursor`` minus the overlap."""
    params = [*stream.params, ("limit", str(stream.limit))]
    if stream.mode == "seek":
        params.append(("order[updated_at]", "asc"))
    if stream.mode != "full" and not full and cursor is not None:
        params.append((stream.since_key, str(max(0, int(cursor) - OVERLAP))))
    return f"{stream.path}?{urlencode(params)}"


def build_next_request(stream: Stream, request: str, payload: dict | None) -> str | None:
    """The request after ``request`` answered ``payload`` (None when the pass is over)."""
    link = find_next_link(payload)
    if link is None or stream.mode != "seek":
        return link
    stamps = [int(it.get("updated_at") or 0) for it in page_items(stream.entity, payload)]
    query = [(k, v) for k, v in parse_qsl(urlsplit(request).query, keep_blank_values=True) if k != "page"]
    since = next((int(v) for k, v in query if k == stream.since_key), None)
    top = max(stamps, default=0)
    ordered = stamps == sorted(stamps) and (since is None or min(stamps, default=since) >= since)
    if not ordered or (since is not None and top <= since):
        return link  # a run of equal updated_at longer than a page, or no server-side order: page on
    query = [(k, v) for k, v in query if k != stream.since_key] + [(stream.since_key, str(top))]
    return f"{urlsplit(request).path}?{urlencode(query)}"


def fetch_pages(client: AmoClient, stream: Stream, request: str, start: int | None = None,
                catch_up: str | None = None) -> Iterator[tuple[dict | None, int, str | None, str | None]]:
    """(payload, start, next request, catch-up phase) for each page from ``request`` on.

    A ``pages`` stream (sorted by id) does not see an item changed on a page already read, so
    a pass longer than one page owes a catch-up pass over what changed since it began.
    """
    while request:
        payload, now = client.get(request)
        start = now if start is None else start
        following = build_next_request(stream, request, payload) if payload else None
        if following and stream.mode == "pages" and catch_up is None:
            catch_up = "owed"
        elif following is None and catch_up == "owed":
            following, catch_up = build_first_request(stream, start, False), "running"
        yield payload, start, following, catch_up
        request = following


def prefetch(items: Iterator[Any], depth: int = 16) -> Iterator[list[Any]]:
    """Run ``items`` in a thread, up to ``depth`` ahead, so fetching overlaps writing the store.

    Yields lists: everything fetched since the last yield (at least one item), so that a
    writer falling behind catches up by writing several pages in one transaction.
    """
    box: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                box.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the consumer
            put(("error", exc))

    worker = threading.Thread(target=run, name="amocrm-fetch", daemon=True)
    worker.start()
    try:
        finished = False
        while not finished:
            batch, entry = [], box.get()
            while True:
                kind, value = entry
                if kind == "error":
                    raise value
                if kind == "done":
                    finished = True
                    break
                batch.append(value)
                try:
                    entry = box.get_nowait()
                except queue.Empty:
                    break
            if batch:
                yield batch
    finally:
        stop.set()
        worker.join()


def merge_pages(entity: str, pages: list[dict | None]) -> list[dict]:
    """The items of several pages of one list, in order."""
    return [it for page in pages for it in page_items(entity, page)]


def sync_stream(store: Store, client: AmoClient, stream: Stream, full: bool, report: SyncReport,
                round_: dict | None = None) -> None:
    """Bring one stream up to date, whole pages per transaction.

    ``full`` lists everything; ``round_`` is the full sync this pass belongs to (its ``from``
    sync number and the streams that still ``owe`` a full pass), updated as the pass ends.
    """
    state = store.get_state(stream.name) or {}
    cursor, pending = state.get("cursor"), state.get("pending")
    if stream.mode == "deleted" and not full and cursor is not None and not pending:
        return  # deleted leads are listed on the first and every full sync; events bring the rest
    mark = round_["from"] if full and round_ else None
    if pending and stream.mode != "full" and (not full or pending.get("round") == mark):
        request, start, phase = pending["next"], pending["start"], pending.get("catch_up")
        logger.info("%s: resuming an interrupted pass", stream.name)
    else:
        request, start, phase = build_first_request(stream, cursor, full), None, None
    bar = progress(desc=stream.name, unit=" items")
    pages = items = 0
    try:
        for batch in prefetch(fetch_pages(client, stream, request, start, phase)):
            _, start, following, catch_up = batch[-1]
            with store.transaction():  # whole pages only: the batch and the request after it
                count = store.ingest(stream.entity, merge_pages(stream.entity, [payload for payload, *_ in batch]))
                if following:
                    store.set_state(stream.name, cursor, pending={"next": following, "start": start, "full": full,
                                                                  "catch_up": catch_up, "round": mark})
                else:
                    store.set_state(stream.name, None if stream.mode == "full" else start)
                    if stream.mode == "full":  # listed whole every time: what it no longer lists is gone
                        report.items["gone"] = report.items.get("gone", 0) + store.drop_unseen(
                            stream.entity, store.sync_no)
                    elif round_ and stream.name in round_["owed"]:
                        round_["owed"].remove(stream.name)
                        store.set_state(ROUND, None, **round_)
            pages, items = pages + len(batch), items + count
            bar.update(count)
    finally:
        bar.close()
    report.items[stream.name] = items
    report.pages[stream.name] = pages
    logger.info("%s: %d items in %d pages", stream.name, items, pages)


def fetch_by_id(client: AmoClient, stream: Stream, ids: list[int], key: str = "filter[id]",
                params: tuple[tuple[str, str], ...] = ()) -> list[dict]:
    """The items of ``stream`` with ``ids`` (or whose ``key`` is among them), 50 ids a request."""
    out: list[dict] = []
    for at in range(0, len(ids), 50):
        query = dict((*stream.params, *params, ("limit", str(stream.limit)),
                      *((f"{key}[{n}]", str(i)) for n, i in enumerate(ids[at:at + 50]))))
        for page in client.iter_pages(stream.path, query):
            out.extend(page_items(stream.entity, page))
    return out


def restore_parties(store: Store, client: AmoClient, report: SyncReport) -> None:
    """Fetch again the contacts and companies restored since the last sync, with their links and notes.

    amoCRM brings a restored contact's call notes and links to leads back without moving their
    ``updated_at``, so an incremental pass would not see them: the restored entities are fetched
    by id ``with=leads``, their leads by id ``with=contacts``, and the contacts' call notes by
    ``filter[entity_id]``, then written together with the queue cleared (a killed sync fetches again).
    """
    queued = store.queued_restores()
    if not queued:
        return
    by_name = {s.name: s for s in STREAMS}
    parties = {kind: fetch_by_id(client, by_name[entity], queued.get(kind, []), params=(("with", "leads"),))
               for kind, entity in (("contact", "contacts"), ("company", "companies"))}
    leads = sorted({link["id"] for found in parties.values() for it in found
                    for link in (it.get("_embedded") or {}).get("leads") or []})
    for found in parties.values():
        for it in found:
            (it.get("_embedded") or {}).pop("leads", None)  # as the lists give it
    lead_items = fetch_by_id(client, by_name["leads"], leads)
    notes = fetch_by_id(client, by_name["contact_notes"], queued.get("contact", []), key="filter[entity_id]")
    with store.transaction():
        count = sum(store.ingest(entity, found) for entity, found in (
            ("contacts", parties["contact"]), ("companies", parties["company"]), ("leads", lead_items),
            ("contact_notes", notes)))
        store.clear_restores(queued)
    report.items["restored"] = sum(len(ids) for ids in queued.values())
    logger.info("restores: %d items fetched again for %s", count, queued)


def sync_account(store: Store, client: AmoClient, full: bool = False, account: dict | None = None,
                 streams: tuple[Stream, ...] = STREAMS) -> SyncReport:
    """Sync every stream of the account behind ``client`` into ``store``.

    Parameters
    ----------
    store : Store
        Opened for writing.
    client : AmoClient
        Connected to the account.
    full : bool
        List everything again instead of what changed since the last sync, and drop what no
        listing brought (gone from the account without an event).
    account : dict, optional
        The ``/api/v4/account?with=datetime_settings`` answer, if already fetched.
    """
    began, sent = time.monotonic(), client.requests
    if account is None:
        account, _ = client.get("/api/v4/account", {"with": "datetime_settings"})
    first = all((store.get_state(s.name) or {}).get("cursor") is None for s in streams if s.mode != "full")
    report = SyncReport(account=str(account.get("subdomain") or account.get("name") or ""), full=full or first)
    with store.transaction():
        number = store.begin_sync()
        store.ingest_page("account", account)
        report.items["account"] = 1
        round_ = {k: v for k, v in (store.get_state(ROUND) or {}).items() if k in ("from", "owed")} or None
        if full:  # a new full sync: every listing whole again, whatever an interrupted one had done
            round_ = {"from": number, "owed": [s.name for s in streams if s.mode != "full"]}
            store.set_state(ROUND, None, **round_)
        report.full = report.full or bool(round_ and round_.get("owed"))
    for stream in streams:
        owed = bool(round_) and stream.name in round_.get("owed", ())
        sync_stream(store, client, stream, owed, report, round_)
    restore_parties(store, client, report)
    if round_ and "owed" in round_ and not round_["owed"]:
        with store.transaction():  # every listing came whole: what none of them brought is gone
            gone = sum(store.drop_unseen(entity, round_["from"]) for entity in
                       dict.fromkeys(s.entity for s in streams if s.mode in ("seek", "pages", "deleted")))
            store.set_state(ROUND, None)
        report.items["gone"] = report.items.get("gone", 0) + gone
    store.mark_synced()
    report.requests = client.requests - sent
    report.seconds = time.monotonic() - began
    return report


def guess_account_name(base_url: str) -> str | None:
    """The subdomain of an amoCRM/Kommo base URL (None for other hosts)."""
    host = urlsplit(base_url).hostname or ""
    for domain in (".amocrm.ru", ".amocrm.com", ".kommo.com"):
        sub = host[: -len(domain)] if host.endswith(domain) else ""
        if sub and "." not in sub:
            return sub
    return None


def pull_account(settings: Settings, full: bool = False, max_rps: float | None = None) -> SyncReport:
    """Pull the amoCRM account into its store under ``settings.data_dir`` (``kpi-report sync``).

    Returns
    -------
    SyncReport
        What was fetched, with the account's store name, requests and seconds.
    """
    env = amocrm_env(data_dir=settings.data_dir)
    base_url = require_base_url(env)
    rps = env.max_rps if max_rps is None else check_max_rps(max_rps, "--max-rps ")
    client = AmoClient(base_url, max_rps=rps)
    try:
        client.tokens = make_token_source(env, client.post_token)
        began = time.monotonic()
        name, account = settings.account or guess_account_name(base_url), None
        if not (name and store_path(settings.data_dir, name).exists()):
            # a first sync (or AMOCRM_BASE_URL without --account): the account names its store
            account, _ = client.get("/api/v4/account", {"with": "datetime_settings"})
            name = name or str(account.get("subdomain") or "")
            if not name:
                raise ConfigError("the account has no subdomain to name its store: pass --account NAME")
        # otherwise the store's write lock comes first: a second sync stops before any request
        with Store.open(settings.data_dir, name, read_only=False, create=True) as store:
            report = sync_account(store, client, full=full, account=account)
        report.account, report.requests = name, client.requests
        report.seconds = time.monotonic() - began
    finally:
        client.close()
    return report
