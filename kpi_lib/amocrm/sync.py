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

Deletions: deleted items disappear from the lists.  The first sync and every full sync also
list deleted leads (``with=only_deleted``); every sync reads the deletion events
(``lead_deleted``/``lead_restored``, ``task_deleted``, ``contact_deleted``,
``company_deleted``, ``entity_merged``), which the store applies as it writes them (see
:meth:`kpi_lib.store.Store.ingest`), so the typed tables hold what a fresh full sync would.
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


def sync_stream(store: Store, client: AmoClient, stream: Stream, full: bool, report: SyncReport) -> None:
    """Bring one stream up to date, whole pages per transaction."""
    state = store.get_state(stream.name) or {}
    cursor, pending = state.get("cursor"), state.get("pending")
    if stream.mode == "deleted" and not full and cursor is not None and not pending:
        return  # deleted leads are listed on the first and every full sync; events bring the rest
    if pending and (pending.get("full") or not full) and stream.mode != "full":
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
                    store.set_state(stream.name, cursor, pending={"next": following, "start": start,
                                                                  "full": full, "catch_up": catch_up})
                else:
                    store.set_state(stream.name, None if stream.mode == "full" else start)
            pages, items = pages + len(batch), items + count
            bar.update(count)
    finally:
        bar.close()
    report.items[stream.name] = items
    report.pages[stream.name] = pages
    logger.info("%s: %d items in %d pages", stream.name, items, pages)


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
        Refetch everything instead of what changed since the last sync.
    account : dict, optional
        The ``/api/v4/account?with=datetime_settings`` answer, if already fetched.
    """
    began, sent = time.monotonic(), client.requests
    if account is None:
        account, _ = client.get("/api/v4/account", {"with": "datetime_settings"})
    first = all((store.get_state(s.name) or {}).get("cursor") is None for s in streams if s.mode != "full")
    report = SyncReport(account=str(account.get("subdomain") or account.get("name") or ""), full=full or first)
    with store.transaction():
        store.ingest_page("account", account)
        report.items["account"] = 1
    for stream in streams:
        sync_stream(store, client, stream, full, report)
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
