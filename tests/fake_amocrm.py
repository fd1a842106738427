"""A fake amoCRM API v4 server speaking real HTTP on 127.0.0.1, for tests and benchmarks.

It serves an in-memory account with the shapes of ``shared/docs/amocrm-api.md``: HAL pages
with absolute ``_links.next`` on a public host (``https://test.amocrm.ru`` by default, so a
client must rewrite it), 204 on empty, filters ``filter[updated_at|created_at][from|to]``,
``filter[note_type]``, ``filter[type]`` and ``order[...]`` as documented per endpoint (tasks
cannot be ordered by ``updated_at``), problem+json errors, OAuth with single-use refresh
tokens, a rate limit (429, then a 403 nginx page after repeated abuse) and injected faults.

Typical use::

    with FakeAmoCRM(make_account(n_leads=300)) as amo:
        amo.fail("status:503", times=2, path="/api/v4/leads")
        ... client against amo.url with token amo.token ...
        amo.requests            # [(monotonic time, method, path, status), ...]
"""

from __future__ import annotations

import json
import random
import secrets
import socket
import struct
import threading
import time
from bisect import bisect_left
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import islice
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

NGINX_403 = (b"<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n<center><h1>403 Forbidden</h1>"
             b"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
CALL_EVENTS = {"call_in": "incoming_call", "call_out": "outgoing_call"}
LISTS = {  # path -> (collection in the account, _embedded key, orderable fields)
    "/api/v4/leads": ("leads", "leads", ("created_at", "updated_at", "id")),
    "/api/v4/contacts": ("contacts", "contacts", ("updated_at", "id")),
    "/api/v4/companies": ("companies", "companies", ("updated_at", "id")),
    "/api/v4/tasks": ("tasks", "tasks", ("created_at", "complete_till", "id")),
    "/api/v4/leads/notes": ("lead_notes", "notes", ("updated_at", "id")),
    "/api/v4/contacts/notes": ("contact_notes", "notes", ("updated_at", "id")),
    "/api/v4/users": ("users", "users", ("id",)),
    "/api/v4/leads/custom_fields": ("lead_custom_fields", "custom_fields", ("id",)),
    "/api/v4/leads/pipelines": ("pipelines", "pipelines", ("id",)),
    "/api/v4/events": ("events", "events", ()),
}


class FakeAccount:
    """An amoCRM account in memory: collections of API-shaped dicts by id, plus events in order."""

    def __init__(self, account: dict):
        self.account = account
        self.data: dict[str, dict[Any, dict]] = {name: {} for name, _, _ in LISTS.values()}
        self.deleted: set[int] = set()  # leads gone from the lists
        self.trash: dict[int, dict] = {}  # what with=only_deleted lists of them
        #: deleted contacts and companies, by (collection, id): (item, its call notes, {lead: (position, link)})
        self.parties_trash: dict[tuple[str, int], tuple[dict, dict, dict]] = {}
        self.lock = threading.RLock()
        self._event_no = 0
        self._ids = 10_000_000
        self.version = 0  # bumped by every change, invalidating the sorted views
        self._views: dict[tuple, list[dict]] = {}

    @classmethod
    def from_pages(cls, pages: Any) -> "FakeAccount":
        """An account from ``(entity, page)`` pairs such as :func:`kpi_lib.demo.generate_account` yields."""
        account = None
        for entity, page in pages:
            if entity == "account":
                account = cls({k: v for k, v in page.items() if k != "_links"})
            elif page:
                for item in next(iter(page["_embedded"].values())):
                    account.put(entity, {k: v for k, v in item.items() if k != "_links"})
        return account

    def put(self, collection: str, item: dict) -> dict:
        with self.lock:
            self.data[collection][item["id"]] = item
            self.version += 1
            return item

    def new_id(self) -> int:
        self._ids += 1
        return self._ids

    def add_event(self, type_: str, entity_type: str, entity_id: int, created_at: int | None = None,
                  before: list | None = None, after: list | None = None, created_by: int = 0) -> dict:
        with self.lock:
            self._event_no += 1
            event = {"id": f"ev{self._event_no:010d}", "type": type_, "entity_id": entity_id,
                     "entity_type": entity_type, "created_by": created_by,
                     "created_at": int(created_at if created_at is not None else time.time()),
                     "value_after": after or [], "value_before": before or [], "account_id": self.account["id"],
                     "_embedded": {"entity": {"id": entity_id}}}
            return self.put("events", event)

    def update(self, collection: str, item_id: int, **changes: Any) -> dict:
        """Change an item as a user would: ``updated_at`` becomes now."""
        with self.lock:
            item = self.data[collection][item_id]
            if "status_id" in changes and collection == "leads" and changes["status_id"] != item["status_id"]:
                self.add_event("lead_status_changed", "lead", item_id,
                               before=[{"lead_status": {"id": item["status_id"], "pipeline_id": item["pipeline_id"]}}],
                               after=[{"lead_status": {"id": changes["status_id"], "pipeline_id": item["pipeline_id"]}}])
            item.update(changes, updated_at=int(time.time()))
            self.version += 1
            return item

    def delete_lead(self, lead_id: int, user: int = 0) -> None:
        """Move a lead to the trash: gone from the lists, listed by ``with=only_deleted`` with
        just its id, modification time, modifier and ``is_deleted``; a ``lead_deleted`` event."""
        with self.lock:
            now = int(time.time())
            self.deleted.add(lead_id)
            self.trash[lead_id] = {"id": lead_id, "updated_at": now, "updated_by": user, "is_deleted": True}
            self.version += 1
            self.add_event("lead_deleted", "lead", lead_id, created_at=now, created_by=user)

    def restore_lead(self, lead_id: int, user: int = 0) -> None:
        """Take a lead out of the trash: listed again with a new ``updated_at``; a ``lead_restored`` event."""
        with self.lock:
            self.deleted.discard(lead_id)
            self.trash.pop(lead_id)
            self.update("leads", lead_id)
            self.add_event("lead_restored", "lead", lead_id, created_by=user)

    def empty_trash(self) -> None:
        """Delete the leads in the trash for good: only their events are left."""
        with self.lock:
            self.trash.clear()
            self.version += 1

    def delete_task(self, task_id: int, user: int = 0) -> None:
        with self.lock:
            del self.data["tasks"][task_id]
            self.version += 1
            self.add_event("task_deleted", "task", task_id, created_by=user)

    def delete_contact(self, contact_id: int, user: int = 0, event: str = "contact_deleted") -> None:
        """Delete a contact: its call notes and its links from leads go (the leads' ``updated_at`` stays)."""
        self._delete_party("contacts", "contact", contact_id, event, user)

    def merge_contact(self, contact_id: int, into: int, user: int = 0) -> None:
        """Merge a contact into another: the merged one goes for good, with an ``entity_merged`` event."""
        with self.lock:
            self._delete_party("contacts", "contact", contact_id, "entity_merged", user)
            self.parties_trash.pop(("contacts", contact_id))
            self.update("contacts", into)

    def delete_company(self, company_id: int, user: int = 0) -> None:
        self._delete_party("companies", "company", company_id, "company_deleted", user)

    def restore_contact(self, contact_id: int, user: int = 0) -> None:
        """Bring a deleted contact back with its call notes and its links to leads that still exist,
        none of them with a new ``updated_at`` (amoCRM does not document that a restore moves
        it: the fake takes the harder case); a ``contact_restored`` event."""
        self._restore_party("contacts", "contact", contact_id, user)

    def restore_company(self, company_id: int, user: int = 0) -> None:
        """Bring a deleted company back with its links to leads; a ``company_restored`` event."""
        self._restore_party("companies", "company", company_id, user)

    def _delete_party(self, collection: str, kind: str, item_id: int, event: str, user: int) -> None:
        with self.lock:
            item = self.data[collection].pop(item_id)
            notes = {}
            if kind == "contact":
                notes = {k: n for k, n in self.data["contact_notes"].items() if n["entity_id"] == item_id}
                self.data["contact_notes"] = {k: n for k, n in self.data["contact_notes"].items() if k not in notes}
            links = {}
            for lead in self.data["leads"].values():
                found = (lead.get("_embedded") or {}).get(collection)
                if found and any(link["id"] == item_id for link in found):
                    links[lead["id"]] = next((pos, link) for pos, link in enumerate(found) if link["id"] == item_id)
                    lead["_embedded"][collection] = [link for link in found if link["id"] != item_id]
            self.parties_trash[(collection, item_id)] = (item, notes, links)
            self.version += 1
            self.add_event(event, kind, item_id, created_by=user)

    def _restore_party(self, collection: str, kind: str, item_id: int, user: int) -> None:
        with self.lock:
            item, notes, links = self.parties_trash.pop((collection, item_id))
            self.data[collection][item_id] = item
            if kind == "contact":
                self.data["contact_notes"].update(notes)
            for lead_id, (pos, link) in links.items():
                lead = self.data["leads"].get(lead_id)
                if lead is not None:
                    found = lead.setdefault("_embedded", {}).setdefault(collection, [])
                    found.insert(min(pos, len(found)), link)
            self.version += 1
            self.add_event(f"{kind}_restored", kind, item_id, created_by=user)

    def vanish(self, collection: str, item_id: int) -> None:
        """Take an item out of the account without any event (nor a place in the trash), as when
        it is purged behind the API's back: only a full listing can notice it is gone."""
        with self.lock:
            self.data[collection].pop(item_id, None)
            if collection == "leads":
                self.deleted.discard(item_id)
                self.trash.pop(item_id, None)
            self.version += 1

    def add_call(self, collection: str, entity_id: int, note_type: str = "call_in", user: int = 0,
                 status: int = 4, duration: int = 60, at: int | None = None) -> dict:
        at = int(at if at is not None else time.time())
        note = self.put(collection, {
            "id": self.new_id(), "entity_id": entity_id, "created_by": user, "updated_by": user, "created_at": at,
            "updated_at": at, "responsible_user_id": user, "group_id": 0, "note_type": note_type,
            "params": {"uniq": secrets.token_hex(8), "duration": duration, "source": "fake-pbx",
                       "link": None, "phone": "+79990000000", "call_status": status},
            "account_id": self.account["id"]})
        self.add_event(CALL_EVENTS[note_type], "lead" if collection == "lead_notes" else "contact", entity_id,
                       created_at=at, after=[{"note": {"id": note["id"]}}], created_by=user)
        return note

    def sorted_view(self, collection: str, field_name: str, descending: bool = False) -> list[dict]:
        """The listing sorted by ``field_name`` then id (stable for events), cached until a change."""
        with self.lock:
            stamp = (collection, field_name, descending, self.version, len(self.deleted))
            if stamp not in self._views:
                items = self.listing(collection)
                if collection == "events":
                    items.sort(key=lambda it: it.get(field_name) or 0, reverse=descending)
                else:
                    items.sort(key=lambda it: (it.get(field_name) or 0, it["id"]), reverse=descending)
                self._views = {k: v for k, v in self._views.items() if k[3] == self.version}
                self._views[stamp] = items
            return self._views[stamp]

    def linked_leads(self, collection: str, ids: set[int]) -> dict[int, list[int]]:
        """Listed leads linked to each of contacts or companies ``ids`` (for ``with=leads``)."""
        out: dict[int, list[int]] = {}
        for lead in self.listing("leads"):
            for link in (lead.get("_embedded") or {}).get(collection) or []:
                if link["id"] in ids:
                    out.setdefault(link["id"], []).append(lead["id"])
        return out

    def listing(self, collection: str) -> list[dict]:
        with self.lock:
            if collection == "deleted_leads":
                return list(self.trash.values())
            items = list(self.data[collection].values())
        if collection == "leads":
            items = [it for it in items if it["id"] not in self.deleted]
        return items

    def counts(self) -> dict[str, int]:
        return {name: len(self.listing(name)) for name in self.data}


def make_account(n_leads: int = 200, seed: int = 1, now: int | None = None, tie_group: int = 0) -> FakeAccount:
    """A seeded account of ``n_leads`` leads with contacts, companies, tasks, calls and events.

    ``tie_group`` leads share one ``updated_at`` (as after a bulk import).
    """
    rng = random.Random(seed)
    now = int(now if now is not None else time.time()) - 3600
    acc = FakeAccount({"id": 30000001, "name": "Fake Sales", "subdomain": "fakesales", "country": "RU",
                       "currency": "RUB", "current_user_id": 501})
    users = [501, 502, 503, 504, 505, 506]
    for uid in users:
        acc.put("users", {"id": uid, "name": f"Manager {uid}", "email": f"m{uid}@example.ru", "lang": "ru",
                          "rights": {"is_admin": uid == 501, "is_free": False, "is_active": True,
                                     "group_id": None, "role_id": None}})
    statuses = [(7001, "Неразобранное", 10, 1), (7002, "Первичный контакт", 20, 0), (7003, "Переговоры", 30, 0),
                (7004, "Решение", 40, 0), (142, "Успешно реализовано", 10000, 0),
                (143, "Закрыто и не реализовано", 11000, 0)]
    acc.put("pipelines", {"id": 9001, "name": "Воронка", "sort": 1, "is_main": True, "is_archive": False,
                          "_embedded": {"statuses": [{"id": i, "name": n, "sort": s, "type": t, "pipeline_id": 9001,
                                                      "color": "#99ccff", "is_editable": t == 0}
                                                     for i, n, s, t in statuses]}})
    for fid, name, kind in ((8001, "CSAT", "numeric"), (8002, "Source", "select"), (8003, "Comment", "text")):
        acc.put("lead_custom_fields", {"id": fid, "name": name, "code": None, "type": kind, "sort": fid})
    t0 = now - 180 * 86400
    companies = [acc.put("companies", {"id": 600000 + i, "name": f"Company {i}", "responsible_user_id": rng.choice(users),
                                       "created_by": 0, "created_at": t0, "updated_at": t0 + rng.randrange(86400 * 170),
                                       "custom_fields_values": None, "_embedded": {"tags": []}})
                 for i in range(max(1, n_leads // 5))]
    tie_at = t0 + 86400 * 90
    for i in range(n_leads):
        lid, cid = 300000 + i, 400000 + i
        created = t0 + rng.randrange(86400 * 170)
        updated = tie_at if i < tie_group else created + rng.randrange(7 * 86400)
        owner = rng.choice(users)
        status = rng.choice([7002, 7003, 7004, 142, 143])
        acc.put("contacts", {"id": cid, "name": f"Client {i}", "first_name": "Client", "last_name": str(i),
                             "responsible_user_id": owner, "created_by": owner, "created_at": created,
                             "updated_at": updated, "custom_fields_values": [
                                 {"field_id": 1, "field_name": "Телефон", "field_code": "PHONE",
                                  "field_type": "multitext",
                                  "values": [{"value": f"+7999{i:07d}", "enum_id": 1, "enum_code": "WORK"}]}],
                             "_embedded": {"tags": []}})
        company = rng.choice(companies)["id"] if rng.random() < 0.3 else None
        acc.put("leads", {
            "id": lid, "name": f"Deal {i}", "price": rng.choice([0, 15000, 42000, 99000]),
            "responsible_user_id": owner, "group_id": 0, "status_id": status, "pipeline_id": 9001,
            "loss_reason_id": None, "created_by": owner, "updated_by": owner, "created_at": created,
            "updated_at": updated, "closed_at": updated if status in (142, 143) else None, "closest_task_at": None,
            "is_deleted": False, "score": None, "account_id": acc.account["id"], "labor_cost": None,
            "custom_fields_values": [{"field_id": 8001, "field_name": "CSAT", "field_code": None,
                                      "field_type": "numeric", "values": [{"value": str(rng.randint(1, 5))}]}]
            if status == 142 else None,
            "_embedded": {"tags": [], "companies": [{"id": company}] if company else [],
                          "contacts": [{"id": cid, "is_main": True}]}})
        acc.add_event("lead_status_changed", "lead", lid, created_at=created + 60, created_by=owner,
                      before=[{"lead_status": {"id": 7001, "pipeline_id": 9001}}],
                      after=[{"lead_status": {"id": status, "pipeline_id": 9001}}])
        if rng.random() < 0.2:
            acc.add_event("entity_responsible_changed", "lead", lid, created_at=created + 120,
                          before=[{"responsible_user": {"id": rng.choice(users)}}],
                          after=[{"responsible_user": {"id": owner}}])
        for k in range(2):
            done = rng.random() < 0.6
            tid = 500000 + 2 * i + k
            acc.put("tasks", {"id": tid, "created_by": owner, "updated_by": owner, "created_at": created,
                              "updated_at": created + 3600 * (k + 1), "responsible_user_id": owner, "group_id": 0,
                              "entity_id": lid, "entity_type": "leads", "duration": 0, "is_completed": done,
                              "task_type_id": 1, "text": f"Call the client about offer {k}",
                              "result": {"text": "Agreed on a meeting"} if done else [],
                              "complete_till": created + 86400, "account_id": acc.account["id"]})
            if done:
                acc.add_event("task_completed", "task", tid, created_at=created + 3600 * (k + 1), created_by=owner)
        for _ in range(rng.choice([0, 1, 2])):
            acc.add_call("lead_notes", lid, rng.choice(["call_in", "call_out"]), owner, rng.choice([4, 6, 8]),
                         rng.randrange(5, 600), at=created + rng.randrange(1, 86400))
        if rng.random() < 0.3:
            acc.add_call("contact_notes", cid, "call_in", owner, 4, 120, at=created + rng.randrange(1, 86400))
    acc._ids = 20_000_000
    return acc


@dataclass
class Fault:
    kind: str  # status:NNN | reset | truncate | bad_json | slow
    times: int = 1
    path: str | None = None
    after: int = 0  # let this many matching requests through first
    delay: float = 2.0


def _values(query: list[tuple[str, str]], name: str) -> list[str]:
    """Values of ``name``, ``name[]`` and ``name[N]`` (comma lists split)."""
    out = []
    for key, value in query:
        tail = key[len(name):] if key.startswith(name) else None
        if tail == "" or tail == "[]" or (tail and tail[0] == "[" and tail[-1] == "]" and tail[1:-1].isdigit()):
            out.extend(v for v in value.split(",") if v != "")
    return out


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # injected resets and truncations break connections on purpose


class FakeAmoCRM:
    """The server.  Use as a context manager; ``url`` is its base URL.

    Parameters
    ----------
    account : FakeAccount
        The data served.
    rate_limit : float or None
        Requests per 1-second window before answering 429 (None: no limit).
    block_after : int
        429 answers after which the account is blocked (403 nginx page to everything).
    page_cap : int
        Largest page the server returns whatever ``limit`` asks (amoCRM: 250, events 100).
    public_host : str
        Host used in ``_links`` (the client must rewrite it to its base URL).
    """

    def __init__(self, account: FakeAccount, *, rate_limit: float | None = None, block_after: int = 5,
                 page_cap: int = 250, public_host: str = "https://fakesales.amocrm.ru", delay: float = 0.0):
        self.account = account
        self.rate_limit, self.block_after, self.page_cap = rate_limit, block_after, page_cap
        self.public_host, self.delay = public_host, delay
        self.token = "llt-" + secrets.token_hex(24)
        self.static_tokens = {self.token}
        self.access: dict[str, float] = {}
        self.refresh_valid: set[str] = set()
        self.refresh_used: set[str] = set()
        self.codes: set[str] = set()
        self.client = {"client_id": "cid-123", "client_secret": "secret-" + secrets.token_hex(8),
                       "redirect_uri": "https://example.com/callback"}
        self.requests: list[tuple[float, str, str, int]] = []
        self.faults: list[Fault] = []
        self.chaos: tuple[float, random.Random, tuple[str, ...]] | None = None
        self.before_request: Callable[[int, str], None] | None = None
        self.strikes = 0
        self.blocked = False
        self.refresh_reuse = 0
        self.refresh_count = 0
        self._lock = threading.Lock()
        self._arrivals: list[float] = []
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeAmoCRM":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- test controls ------------------------------------------------------------------------
    def fail(self, kind: str, times: int = 1, path: str | None = None, after: int = 0, delay: float = 2.0) -> None:
        """Inject ``kind`` into the next ``times`` requests whose path contains ``path``."""
        self.faults.append(Fault(kind, times, path, after, delay))

    def set_chaos(self, probability: float, seed: int = 0,
                  kinds: tuple[str, ...] = ("status:500", "status:503", "status:429", "reset", "truncate",
                                            "bad_json")) -> None:
        """Inject a random fault of ``kinds`` into API requests with ``probability``."""
        self.chaos = (probability, random.Random(seed), kinds)

    def issue_code(self) -> str:
        code = "code-" + secrets.token_hex(8)
        self.codes.add(code)
        return code

    def expire_access_tokens(self) -> None:
        """Every OAuth access token issued so far now answers 401."""
        self.access = {token: 0.0 for token in self.access}

    def api_requests(self) -> list[tuple[float, str, str, int]]:
        return [r for r in self.requests if r[2].startswith("/api/")]

    def max_in_window(self, window: float = 1.0) -> int:
        """The most requests that arrived within any ``window`` seconds."""
        times = sorted(r[0] for r in self.requests)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    # -- serving ------------------------------------------------------------------------------
    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._serve(self, "GET")

            def do_POST(self) -> None:
                server._serve(self, "POST")

        return Handler

    def _pick_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and (fault.path is None or fault.path in path):
                    if fault.after > 0:
                        fault.after -= 1
                        continue
                    fault.times -= 1
                    return fault
            if self.chaos and path.startswith("/api/"):
                probability, rng, kinds = self.chaos
                if rng.random() < probability:
                    return Fault(rng.choice(kinds), delay=0.3)
        return None

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        arrived = time.monotonic()
        path_qs = h.path
        path = urlsplit(path_qs).path.rstrip("/")
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        with self._lock:
            index = len(self.requests)
            self.requests.append((arrived, method, path_qs, 0))
            self._arrivals = [t for t in self._arrivals if t > arrived - 1.0] + [arrived]
            over = self.rate_limit is not None and len(self._arrivals) > self.rate_limit
            if over:
                self.strikes += 1
                self.blocked = self.blocked or self.strikes > self.block_after

        def reply(status: int, payload: Any = None, ctype: str = "application/hal+json", raw: bytes | None = None,
                  fault: Fault | None = None) -> None:
            data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
            with self._lock:
                self.requests[index] = (arrived, method, path_qs, status)
            if fault and fault.kind == "slow":
                time.sleep(fault.delay)
            if self.delay:
                time.sleep(self.delay)
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if fault and fault.kind == "truncate":
                h.wfile.write(data[: len(data) // 2])
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            h.wfile.write(data)

        if self.blocked:
            return reply(403, raw=NGINX_403, ctype="text/html")
        if over:
            return reply(429, raw=b"", ctype="text/html")
        if self.before_request:
            self.before_request(index, path_qs)
        fault = self._pick_fault(path)
        if fault and fault.kind == "reset":
            with self._lock:
                self.requests[index] = (arrived, method, path_qs, -1)
            h.close_connection = True
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            return
        if fault and fault.kind.startswith("status:"):
            status = int(fault.kind.split(":")[1])
            if status == 403:
                return reply(403, raw=NGINX_403, ctype="text/html")
            if status == 429:
                return reply(429, raw=b"", ctype="text/html")
            return reply(status, self._problem(status, "Subscription expired" if status == 402 else "Injected fault"),
                         "application/problem+json")
        if method == "POST" and path == "/oauth2/access_token":
            return reply(*self._oauth(body), "application/json", fault=fault)
        if not self._authorized(h.headers.get("Authorization", "")):
            return reply(401, self._problem(401, "Unauthorized"), "application/problem+json")
        status, payload = self._api(path, parse_qsl(urlsplit(path_qs).query, keep_blank_values=True))
        if fault and fault.kind == "bad_json" and payload is not None:
            text = json.dumps(payload).encode()
            return reply(status, raw=text[: len(text) // 2])
        reply(status, payload, "application/hal+json" if status < 400 else "application/problem+json", fault=fault)

    @staticmethod
    def _problem(status: int, detail: str) -> dict:
        return {"title": detail, "type": f"https://httpstatus.es/{status}", "status": status, "detail": detail}

    def _authorized(self, header: str) -> bool:
        token = header[7:] if header.startswith("Bearer ") else ""
        return token in self.static_tokens or self.access.get(token, 0) > time.time()

    def _issue(self) -> dict:
        access, refresh = "at-" + secrets.token_hex(24), "rt-" + secrets.token_hex(24)
        self.access[access] = time.time() + 86400
        self.refresh_valid.add(refresh)
        return {"token_type": "Bearer", "expires_in": 86400, "access_token": access, "refresh_token": refresh}

    def _oauth(self, body: bytes) -> tuple[int, dict]:
        try:
            data = json.loads(body)
        except ValueError:
            return 400, self._problem(400, "Body is not JSON")
        if any(data.get(k) != v for k, v in self.client.items()):
            return 400, self._problem(400, "Client authentication failed")
        with self._lock:
            if data.get("grant_type") == "authorization_code" and data.get("code") in self.codes:
                self.codes.discard(data["code"])
                return 200, self._issue()
            if data.get("grant_type") == "refresh_token":
                token = data.get("refresh_token")
                if token in self.refresh_valid:
                    self.refresh_valid.discard(token)
                    self.refresh_used.add(token)
                    self.refresh_count += 1
                    return 200, self._issue()
                if token in self.refresh_used:
                    self.refresh_reuse += 1
                    return 400, self._problem(400, "Token has been revoked")
        return 400, self._problem(400, "Authorization code or refresh token is invalid")

    def _api(self, path: str, query: list[tuple[str, str]]) -> tuple[int, Any]:
        acc = self.account
        if path == "/api/v4/account":
            body = {k: v for k, v in acc.account.items() if k != "_embedded"}
            if "datetime_settings" in _values(query, "with"):
                settings = (acc.account.get("_embedded") or {}).get("datetime_settings")
                body["_embedded"] = {"datetime_settings": settings or {"timezone": "Europe/Moscow",
                                                                       "timezone_offset": "+03:00"}}
            return 200, body
        if path not in LISTS:
            return 404, self._problem(404, f"No route for {path}")
        collection, key, orderable = LISTS[path]
        if collection == "leads" and "only_deleted" in _values(query, "with"):
            collection = "deleted_leads"
        order = [(k[6:-1], v) for k, v in query if k.startswith("order[")]
        if order and order[0][0] not in orderable:
            return 400, self._problem(400, f"order[{order[0][0]}] is not supported here")
        field_name, direction = order[0] if order else ("created_at" if collection == "events" else "id", "asc")
        items = acc.sorted_view(collection, field_name, direction == "desc")
        checks = []
        for name in ("updated_at", "created_at"):
            low, high = _values(query, f"filter[{name}][from]"), _values(query, f"filter[{name}][to]")
            if low:
                if name == field_name and direction != "desc":  # sorted on it: skip ahead
                    items = items[bisect_left(items, int(low[0]), key=lambda it: it.get(name) or 0):]
                checks.append(lambda it, n=name, v=int(low[0]): (it.get(n) or 0) >= v)
            if high:
                checks.append(lambda it, n=name, v=int(high[0]): (it.get(n) or 0) <= v)
        note_types = _values(query, "filter[note_type]")
        if note_types:
            checks.append(lambda it: it["note_type"] in note_types)
        ids = {int(v) for v in _values(query, "filter[id]")}
        if ids and collection != "events":
            checks.append(lambda it: it["id"] in ids)
        owners = {int(v) for v in _values(query, "filter[entity_id]")}
        if owners and collection.endswith("_notes"):
            checks.append(lambda it: it["entity_id"] in owners)
        types = _values(query, "filter[type]")
        if types and collection == "events":
            checks.append(lambda it: it["type"] in types)
        cap = 100 if collection == "events" else self.page_cap
        limit = min(int((_values(query, "limit") or ["50"])[0]), cap)
        page = int((_values(query, "page") or ["1"])[0])
        wanted = [it for it in islice((it for it in items if all(c(it) for c in checks)), page * limit + 1)]
        chunk = wanted[(page - 1) * limit: page * limit]
        if not chunk:
            return 204, None
        base = [(k, v) for k, v in query if k != "page"]
        link = lambda p: {"href": f"{self.public_host}{path}?{urlencode(base + [('page', str(p))])}"}
        links = {"self": link(page)}
        if len(wanted) > page * limit:
            links["next"] = link(page + 1)
        with_contacts = "contacts" in _values(query, "with")
        linked = None
        if collection in ("contacts", "companies") and "leads" in _values(query, "with"):
            linked = acc.linked_leads(collection, {it["id"] for it in chunk})
        out = []
        for it in chunk:
            it = dict(it)
            if linked is not None:
                it["_embedded"] = {**(it.get("_embedded") or {}), "leads": [{"id": i} for i in linked.get(it["id"], [])]}
            if collection == "leads" and not with_contacts and "_embedded" in it:
                it["_embedded"] = {k: v for k, v in it["_embedded"].items() if k != "contacts"}
            it["_links"] = {"self": {"href": f"{self.public_host}{path}/{it['id']}?{urlencode(query)}"}}
            out.append(it)
        return 200, {"_page": page, "_links": links, "_embedded": {key: out}}


def snapshot(store: Any, drop_leads: set[int] | None = None, strip_links: bool = False,
             raw: bool = True) -> dict[str, list]:
    """Every typed table and the raw table of a store as sorted rows, for equality checks.

    Events are compared by their order (created_at, seq), not by seq values.  ``drop_leads``
    removes leads (and their links) that a clean sync cannot see, e.g. deleted ones;
    ``strip_links`` drops the ``_links`` of raw bodies (they echo each request's query);
    ``raw=False`` leaves the raw table out (only the typed tables must equal a fresh sync's).
    """
    from kpi_lib.store import TABLES

    drop = drop_leads or set()
    out: dict[str, list] = {}
    for table in TABLES:
        frame = store.con.execute(f"SELECT * FROM {table}").df()
        if table == "events":
            frame = frame.sort_values(["created_at", "seq"]).drop(columns="seq")
            out[table] = [tuple(map(str, row)) for row in frame.itertuples(index=False)]
            continue
        key = {"leads": "id", "lead_contacts": "lead_id", "lead_companies": "lead_id"}.get(table)
        if key and drop:
            frame = frame[~frame[key].isin(drop)]
        if table == "custom_field_values" and drop:
            frame = frame[~((frame.entity_type == "lead") & frame.entity_id.isin(drop))]
        out[table] = sorted(tuple(map(str, row)) for row in frame.itertuples(index=False))
    if not raw:
        return out
    bodies = []
    for entity, item_id, body in store.con.execute("SELECT entity, id, body FROM raw").fetchall():
        if entity == "leads" and int(item_id) in drop:
            continue
        item = json.loads(body)
        if strip_links:
            item.pop("_links", None)
            for links in (item.get("_embedded") or {}).values():
                for link in links if isinstance(links, list) else []:
                    if isinstance(link, dict):
                        link.pop("_links", None)
        bodies.append((entity, item_id, json.dumps(item, sort_keys=True)))
    out["raw"] = sorted(bodies)
    return out
