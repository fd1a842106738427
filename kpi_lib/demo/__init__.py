"""The demo account: a realistic amoCRM sales department, from a seed, in API v4 shapes.

:func:`generate_account` yields ``(entity, page)`` pairs exactly as a live full sync receives
them (HAL pages of 250 items, events 100, ``_page``, ``_links.self/next``,
``_embedded.<collection>``), in dependency order; :func:`build_demo` feeds them through
:meth:`kpi_lib.store.Store.ingest_page` — the same code path as ``kpi-report sync`` — into
``<data_dir>/<account>.duckdb``, atomically.

The account: a supervisor (admin) and eight managers with distinct styles — the seed's two
archetypes (a high average check at few calls a day; a lower check at many calls), a fast
responder, one who escalates a lot, one with vague tasks, one who leaves tasks overdue, a
solid all-rounder and one who left partway (inactive) — over two pipelines and 26 ISO weeks
ending with the last complete week before ``today`` (Moscow time), plus the current week up
to ``today`` 00:00.

Modules: :mod:`~kpi_lib.demo.plan` (people, styles and every lead's skeleton),
:mod:`~kpi_lib.demo.story` (one lead's calls and events), :mod:`~kpi_lib.demo.tasks` (its
tasks), :mod:`~kpi_lib.demo.items` (API v4 pages and items) and :mod:`~kpi_lib.demo.texts`
(Russian names and task texts).

Same seed and same ``today`` give byte-identical pages.  Generation streams: each lead's story
is told once from its own seeded random stream; its tasks, calls and events wait for their
pass in memory for the demo, or in temporary files at large ``scale`` (a million leads).
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import tempfile
from datetime import date, datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

from ..errors import ConfigError, StoreError
from ..log import progress
from ..store import Store, store_path
from ..amocrm.endpoints import ENDPOINTS as API_ENDPOINTS
from .items import (ENDPOINTS, list_companies, list_contacts, make_account, make_company, make_contact,
                    make_custom_fields, make_event, make_event_id, make_lead, make_note, make_pipelines_page, make_task,
                    make_user, paginate)
from .plan import NOTE_SLOTS, TZ_NAME, Plan, make_plan
from .story import Story, tell_story

__all__ = ["build_demo", "generate_account", "ENDPOINTS"]

#: Story parts are kept in memory up to this many leads, and spooled to temporary files above it.
CACHE_LEADS = 20000


def resolve_today(today: date | str | None) -> date:
    """``today`` as a date (or ``YYYY-MM-DD``), else today's date in Moscow; anything else is a ConfigError."""
    if today is None:
        return datetime.now(ZoneInfo(TZ_NAME)).date()
    if isinstance(today, str):
        try:
            today = date.fromisoformat(today)
        except ValueError:
            raise ConfigError(f"demo today={today!r} is not a date: use YYYY-MM-DD, e.g. --today 2026-11-25") from None
    if isinstance(today, datetime) or not isinstance(today, date):
        raise ConfigError(f"demo today={today!r} is not a date: pass a datetime.date such as date(2026, 11, 25)"
                          " (on the command line: --today 2026-11-25)")
    if today.year < 2000 or today.year > 2100:
        raise ConfigError(f"demo today={today.isoformat()} is out of range: use a date between 2000 and 2100")
    return today


def generate_account(seed: int = 7, today: date | str | None = None, scale: float = 1.0
                     ) -> Iterator[tuple[str, dict | None]]:
    """Yield ``(entity, page)`` pairs of the demo account in the order a full sync fetches them.

    Parameters
    ----------
    seed : int
        Random seed; the same seed and ``today`` give identical pages.
    today : date or str, optional
        Build the history as if today were this date (``YYYY-MM-DD`` accepted; default: today
        in Moscow).  The 26
        reported weeks end with the last complete ISO week before it.
    scale : float
        Volume multiplier: 1 is about 8 managers × 15 new leads a week; larger scales add
        managers (up to 120) and then leads per manager.

    Returns
    -------
    iterator of (str, dict or None)
        ``("account", account)`` first, then pages of users, pipelines, lead_custom_fields,
        leads, contacts, companies, tasks, lead_notes, contact_notes and events (``None``
        stands for an empty 204 answer).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"demo seed={seed!r} is not an integer: pass e.g. --seed 7")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1000:
        raise ConfigError(f"demo scale={scale!r} is out of range: use a number above 0 and at most 1000")
    return _generate(seed, resolve_today(today), float(scale))


def _generate(seed: int, today: date, scale: float) -> Iterator[tuple[str, dict | None]]:
    """The pages in dependency order (see :func:`generate_account`)."""
    plan = make_plan(seed, today, scale)
    stories = _Stories(plan)
    yield "account", make_account(plan)
    yield from paginate("users", [make_user(plan, u) for u in plan.users], total=True)
    yield "pipelines", make_pipelines_page()
    yield from paginate("lead_custom_fields", make_custom_fields(), total=True)
    yield from paginate("leads", (s for s in stories.tell() if s.lead), lambda s, q: make_lead(plan, s, q))
    yield from paginate("contacts", list_contacts(plan), lambda c, q: make_contact(plan, c, q))
    yield from paginate("companies", list_companies(plan), lambda c, q: make_company(plan, c, q))
    yield from paginate("tasks", stories.read_part("tasks"), make_task)
    yield from paginate("lead_notes", stories.read_part("lead_calls"), make_note)
    yield from paginate("contact_notes", stories.read_part("contact_calls"), make_note)
    yield from paginate("events", stories.read_part("events"), make_event)


class _Stories:
    """Every lead's story told once; its tasks, calls and events kept for the later passes.

    Small plans keep them in memory; big ones spool them to temporary files in chunks, so
    memory stays flat however many leads there are.  Events are put in time order on the
    way, through a heap that only holds the events of leads still alive.
    """

    PARTS = ("tasks", "lead_calls", "contact_calls", "events")

    def __init__(self, plan: Plan):
        self.plan = plan
        self.keep = len(plan) <= CACHE_LEADS
        self.parts: dict[str, list] = {name: [] for name in self.PARTS}
        self.spools: dict[str, Any] = {}
        self.pending: list[tuple] = []  # events not yet due: a later lead may still have earlier ones

    def tell(self) -> Iterator[Story]:
        """Yield each story in lead order while keeping its parts."""
        if not self.keep:
            self.spools = {name: tempfile.TemporaryFile(prefix="kpi-demo-") for name in self.PARTS}
        for i in range(len(self.plan)):
            story = tell_story(self.plan, i)
            self.parts["tasks"].extend(story.tasks)
            self.parts["lead_calls"].extend(c for c in story.calls if c[1] == "lead")
            self.parts["contact_calls"].extend(sorted(c for c in story.calls if c[1] == "contact"))
            for k, event in enumerate(_number_events(self.plan, story)):
                heapq.heappush(self.pending, (event[-1], i, k, event))
            # events come in time order, as the API lists them; no later lead has any before it was made
            horizon = self.plan.created[i + 1] if i + 1 < len(self.plan) else None
            while self.pending and (horizon is None or self.pending[0][0] < horizon):
                self.parts["events"].append(heapq.heappop(self.pending)[3])
            if not self.keep and i % 1000 == 999:
                self._flush()
            yield story
        if not self.keep:
            self._flush()

    def _flush(self) -> None:
        """Append the kept parts to their spools and forget them."""
        for name, items in self.parts.items():
            self.spools[name].write(json.dumps(items, ensure_ascii=False).encode("utf-8") + b"\n")
            items.clear()

    def read_part(self, name: str) -> Iterator[tuple]:
        """The kept items of one kind, in lead order (each spool is read once, then closed)."""
        if self.keep:
            yield from self.parts.pop(name)
            return
        with self.spools.pop(name) as spool:
            spool.seek(0)
            for line in spool:  # one JSON list of items per chunk
                yield from (tuple(item) for item in json.loads(line))


def _number_events(plan: Plan, story: Story) -> Iterator[tuple]:
    """The story's events in time order, with their ids."""
    for k, event in enumerate(sorted(story.events, key=lambda e: e[:2])):
        yield (make_event_id(plan.seed, story.i * NOTE_SLOTS + k),) + event[2:] + event[:1]


def build_demo(data_dir: str | Path, account: str = "demo", seed: int = 7, today: date | str | None = None,
               scale: float = 1.0) -> Path:
    """Build the demo account's store at ``<data_dir>/<account>.duckdb`` and return its path.

    The pages of :func:`generate_account` go through :meth:`Store.ingest_page` into a new file
    in a private folder of ``data_dir``, which then replaces the old store in one rename: a
    build that fails or is killed leaves the previous store as it was.  The store is marked
    synced at ``today`` 00:00 (Moscow), with the sync cursors a full sync leaves.
    """
    data_dir = Path(data_dir)
    target = store_path(data_dir, account)
    today = resolve_today(today)
    answers = iter(progress(generate_account(seed, today, scale), desc="demo account", unit=" pages"))
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(data_dir, account)
        work = Path(tempfile.mkdtemp(prefix=f".{account}.build-{os.getpid()}-", dir=data_dir))
    except OSError as exc:
        raise StoreError(f"cannot write the demo store into {data_dir}: {exc.strerror or exc}; "
                         "choose a writable folder with --data-dir (or KPI_DATA_DIR)") from exc
    try:
        with Store.open(work, account, read_only=False, create=True) as store:
            while chunk := list(islice(answers, 50)):  # one transaction per 50 pages: fewer commits
                with store.transaction():
                    for entity, page in chunk:
                        store.ingest_page(entity, page)
            synced = compute_cutoff(today)
            for endpoint in API_ENDPOINTS:
                store.set_state(endpoint.name, None if endpoint.mode == "full" else synced)
            store.set_meta("demo", {"seed": seed, "today": today.isoformat(), "scale": scale})
            store.mark_synced(datetime.fromtimestamp(synced, timezone.utc))
            store.con.execute("CHECKPOINT")
        wal = target.with_name(target.name + ".wal")
        if wal.exists():
            wal.unlink()
        os.replace(work / target.name, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def compute_cutoff(today: date) -> int:
    """``today`` 00:00 in Moscow as Unix seconds: the end of the demo's data."""
    return int(datetime.combine(today, datetime.min.time(), ZoneInfo(TZ_NAME)).timestamp())


def _remove_stale_builds(data_dir: Path, account: str) -> None:
    """Delete build folders of ``account`` left by builds whose process is gone."""
    for folder in data_dir.glob(f".{account}.build-*"):
        try:
            pid = int(folder.name[len(f".{account}.build-"):].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            continue
