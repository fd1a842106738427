"""The amoCRM API v4 client: one polite HTTP session.

Every request, retries and token refreshes included, passes a sliding-window
:class:`RateLimiter` (at most ``max_rps`` requests in any 1-second window).  A slot is
counted from the moment a request is sent until one second after its answer arrived, so
the server can never see more than ``max_rps`` arrivals in a second, whatever the latency.

Faults are handled in one bounded loop that uses urllib3's :class:`~urllib3.util.retry.Retry`
for the counting and the backoff:

====================================  =====================================================
answer                                reaction
====================================  =====================================================
429, 500, 502, 503, 504               retry with backoff (429 waits at least a second)
connection error, timeout,            retry with backoff
truncated or non-JSON body
401                                   refresh the token once and retry; again 401: AuthError
402                                   PaymentError (subscription), with the server's detail
403                                   BlockedError at once, never retried
other 4xx                             ApiError with the problem+json ``detail``
204                                   no content: ``None``
====================================  =====================================================

No message built here contains a token: the Authorization header is never formatted, and
every message passes :func:`kpi_lib.log.redact`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from email.utils import parsedate_to_datetime
from typing import Any, Iterator, Mapping
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ProtocolError
from urllib3.util.retry import Retry

from .. import __version__
from ..errors import ApiError, AuthError, BlockedError, PaymentError
from ..log import logger, redact

RETRY_STATUSES = (429, 500, 502, 503, 504)
_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
              requests.exceptions.ContentDecodingError)


class RateLimiter:
    """At most ``rate`` requests in any window of ``window`` seconds (thread-safe).

    Use :meth:`acquire` before sending and :meth:`release` once the answer (or the error)
    has arrived; the slot stays taken until ``window`` seconds after the release.
    """

    def __init__(self, rate: float, window: float = 1.0):
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        # a fractional rate rounds down: 5.5/s allows 5 per second, 0.5/s one per 2 seconds
        self.slots = max(1, int(rate))
        self.window = window * max(1.0, self.slots / rate)
        self._ends: deque[float] = deque()
        self._in_flight = 0
        self._cond = threading.Condition()

    def acquire(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._ends and self._ends[0] <= now - self.window:
                    self._ends.popleft()
                if len(self._ends) + self._in_flight < self.slots:
                    self._in_flight += 1
                    return
                wait = self._ends[0] + self.window - now if self._ends else None
                self._cond.wait(timeout=wait)

    def release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._ends.append(time.monotonic())
            self._cond.notify_all()


def read_problem_detail(response: requests.Response) -> str | None:
    """The ``detail`` (or ``title``) of a problem+json body, if the body is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    detail = body.get("detail") or body.get("title") or body.get("hint")
    errors = body.get("validation-errors")
    if errors:
        detail = f"{detail}: {errors}"
    return redact(str(detail)) if detail else None


def read_server_time(response: requests.Response) -> int:
    """The server's clock from the ``Date`` header (Unix seconds), else ours."""
    try:
        return int(parsedate_to_datetime(response.headers["Date"]).timestamp())
    except (KeyError, TypeError, ValueError):
        return int(time.time())


class AmoClient:
    """A session against one amoCRM account.

    Parameters
    ----------
    base_url : str
        ``https://{subdomain}.amocrm.ru`` (or a test server's ``http://127.0.0.1:PORT``).
    tokens : object
        A token source from :mod:`kpi_lib.amocrm.auth` (``access_token()``, ``refresh(stale)``,
        ``can_refresh``); may be None for token requests only.
    max_rps : float
        Requests per second at most (amoCRM allows 7).
    backoff_factor, max_retries, timeout
        Retry backoff (seconds, doubled per consecutive failure), attempts per request, and
        the (connect, read) timeout.
    """

    def __init__(self, base_url: str, tokens: Any = None, *, max_rps: float = 7.0, backoff_factor: float = 0.5,
                 max_retries: int = 6, timeout: tuple[float, float] = (10.0, 60.0)):
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.limiter = RateLimiter(max_rps)
        self.timeout = timeout
        self.retry = Retry(total=max_retries, connect=max_retries, read=max_retries, status=max_retries, other=0,
                           redirect=0, allowed_methods=None, status_forcelist=RETRY_STATUSES,
                           backoff_factor=backoff_factor, backoff_max=60, raise_on_status=False)
        self.session = requests.Session()
        # retries happen in request() so that each attempt passes the rate limiter
        adapter = HTTPAdapter(max_retries=Retry(total=0, read=False, redirect=False), pool_maxsize=4)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = f"kpi-report/{__version__}"
        self.requests = 0
        self.answers = 0  # requests that got any HTTP answer: 0 means the server was never reached
        self._count_lock = threading.Lock()

    def close(self) -> None:
        self.session.close()

    def url(self, path_or_url: str, params: Mapping[str, Any] | None = None) -> str:
        """An absolute URL on the configured host (a foreign host in ``_links`` is rewritten)."""
        parts = urlsplit(path_or_url)
        base = urlsplit(self.base_url)
        query = parts.query
        if params:
            query = "&".join(q for q in (query, urlencode(list(params.items()))) if q)
        return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, query, ""))

    # -- one request with retries -------------------------------------------------------------
    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json_body: Any = None, auth: bool = True) -> tuple[Any, requests.Response]:
        """Send one request; returns (parsed JSON or None for 204, response)."""
        url = self.url(path, params)
        where = f"{method} {urlsplit(url).path}"
        retry = self.retry
        refreshed = False
        while True:
            headers = {"Accept": "application/hal+json, application/json"}
            token = None
            if auth:
                token = self.tokens.access_token()
                headers["Authorization"] = f"Bearer {token}"
            response, error = self._send(method, url, headers, json_body)
            if response is not None:
                status = response.status_code
                if status == 401 and auth:
                    if refreshed or not getattr(self.tokens, "can_refresh", False):
                        raise AuthError(self._unauthorized_message(where, refreshed, response), 401,
                                        read_problem_detail(response))
                    logger.info("amoCRM answered 401 for %s: refreshing the access token", where)
                    self.tokens.refresh(token)
                    refreshed = True
                    continue
                if status == 403:
                    raise BlockedError(self._blocked_message(where, response), 403, read_problem_detail(response))
                if status == 402:
                    detail = read_problem_detail(response)
                    raise PaymentError(
                        f"amoCRM answered 402 Payment Required for {where}: the account's subscription has "
                        f"expired ({detail or 'no detail given'}); renew it in amoCRM › Settings › Billing, "
                        "then sync again", 402, detail)
                if status == 204:
                    return None, response
                if status in RETRY_STATUSES:
                    retry = self._next_retry(retry, method, url, where, response=response)
                    wait = max(retry.get_retry_after(response.raw) or retry.get_backoff_time(),
                               1.0 if status == 429 else 0.0)
                    logger.info("amoCRM answered %s for %s: retrying in %.1f s", status, where, wait)
                    time.sleep(wait)
                    continue
                if 300 <= status < 400 or status == 404:
                    moved = response.headers.get("Location")
                    raise ApiError(
                        f"amoCRM answered {status} for {where} at {self.base_url}"
                        f"{f' (redirect to {redact(moved)})' if moved else ''}: the address does not lead to an "
                        "amoCRM account's API; check AMOCRM_SUBDOMAIN and AMOCRM_DOMAIN (amocrm.ru, amocrm.com or "
                        "kommo.com)", status, read_problem_detail(response))
                if status >= 300:
                    detail = read_problem_detail(response)
                    raise ApiError(f"amoCRM answered {status} for {where}: {detail or response.reason}; "
                                   "check the request and the integration's rights", status, detail)
                try:
                    return response.json(), response
                except ValueError as exc:
                    error = exc
            retry = self._next_retry(retry, method, url, where, error=error)
            logger.info("amoCRM request %s failed (%s): retrying", where, redact(type(error).__name__))
            retry.sleep()

    def _send(self, method: str, url: str, headers: dict, json_body: Any):
        self.limiter.acquire()
        try:
            response = self.session.request(method, url, headers=headers, json=json_body, timeout=self.timeout,
                                            allow_redirects=False)
            response.content  # read the whole body inside the slot
            with self._count_lock:
                self.answers += 1
            return response, None
        except _TRANSIENT as exc:
            return None, exc
        finally:
            self.limiter.release()
            with self._count_lock:
                self.requests += 1

    def _next_retry(self, retry: Retry, method: str, url: str, where: str, *, response=None, error=None) -> Retry:
        try:
            if response is not None:
                return retry.increment(method, url, response=response.raw)
            return retry.increment(method, url, error=ProtocolError(redact(str(error))[:200]))
        except MaxRetryError:
            parts = urlsplit(url)
            host = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
            attempts = len(retry.history) + 1
            if response is None and not self.answers:
                raise ApiError(
                    f"amoCRM at {host} is unreachable ({describe_failure(error)}) for {where} after {attempts} "
                    "attempts: check AMOCRM_SUBDOMAIN and AMOCRM_DOMAIN (or AMOCRM_BASE_URL) and the network, "
                    "then run the sync again") from None
            what = f"answered {response.status_code}" if response is not None else f"failed ({describe_failure(error)})"
            detail = read_problem_detail(response) if response is not None else None
            raise ApiError(
                f"amoCRM at {host} {what} for {where} after {attempts} attempts; the server or the "
                "network is unwell: run the sync again later (it resumes where it stopped)",
                response.status_code if response is not None else None, detail) from None

    @staticmethod
    def _unauthorized_message(where: str, refreshed: bool, response: requests.Response) -> str:
        detail = read_problem_detail(response)
        if refreshed:
            return (f"amoCRM answered 401 Unauthorized for {where} even after refreshing the token "
                    f"({detail or 'no detail'}): the integration was disabled or lost access; "
                    "authorize again with 'kpi-report auth --code CODE'")
        return (f"amoCRM answered 401 Unauthorized for {where} ({detail or 'no detail'}): the token in AMOCRM_TOKEN "
                "expired or was revoked; create a new long-lived token in amoCRM › Settings › Integrations › "
                "your integration › Keys and scopes, then export AMOCRM_TOKEN=…")

    @staticmethod
    def _blocked_message(where: str, response: requests.Response) -> str:
        detail = read_problem_detail(response)
        return (f"amoCRM answered 403 Forbidden for {where}{f' ({detail})' if detail else ''}: the account is "
                "blocked from the API (amoCRM blocks accounts, or IP addresses, that repeatedly exceed 7 requests "
                "per second), or this token lacks the rights (the user list needs an administrator). The sync "
                "stopped without retrying. Stop every other integration polling this account, wait for the "
                "block to lift (contact amoCRM support if it persists), check the token belongs to an "
                "administrator, then run 'kpi-report sync' again: it resumes where it stopped")

    # -- conveniences -------------------------------------------------------------------------
    def get(self, path: str, params: Mapping[str, Any] | None = None) -> tuple[Any, int]:
        """GET a path (or a ``_links`` URL); returns (payload or None, server time)."""
        payload, response = self.request("GET", path, params=params)
        return payload, read_server_time(response)

    def post_token(self, body: Mapping[str, Any]) -> dict:
        """POST ``/oauth2/access_token`` (no bearer token)."""
        payload, _ = self.request("POST", "/oauth2/access_token", json_body=dict(body), auth=False)
        if not isinstance(payload, dict) or "access_token" not in payload:
            raise AuthError("amoCRM's /oauth2/access_token answered without an access_token: "
                            "check AMOCRM_CLIENT_ID, AMOCRM_CLIENT_SECRET and AMOCRM_REDIRECT_URI")
        return payload

    def iter_pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict]:
        """Every page of a list, following ``_links.next`` until it is absent or a 204."""
        url = self.url(path, params)
        while url:
            payload, _ = self.get(url)
            if not payload:
                return
            yield payload
            url = find_next_link(payload)


def describe_failure(error: BaseException | None) -> str:
    """A request's failure in plain words: refused, timed out, host not found, cut off."""
    text = redact(str(error)).lower()
    if isinstance(error, requests.ConnectTimeout):
        return "connection timed out"
    if isinstance(error, requests.Timeout):
        return "no answer in time"
    if "refused" in text:
        return "connection refused"
    if any(word in text for word in ("name or service not known", "nodename nor servname", "name resolution",
                                     "failed to resolve", "getaddrinfo")):
        return "host name not found"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "the answer was cut off"
    if isinstance(error, ValueError):
        return "the answer was not JSON"
    return type(error).__name__ if error is not None else "no answer"


def find_next_link(payload: Mapping[str, Any] | None) -> str | None:
    """``_links.next.href`` of a HAL page, reduced to path and query (host dropped)."""
    href = (((payload or {}).get("_links") or {}).get("next") or {}).get("href")
    if not href:
        return None
    parts = urlsplit(href)
    return urlunsplit(("", "", parts.path, parts.query, ""))
