"""Deliver a message over SMTP once, with a ledger that survives a kill or a full disk.

The ledger is ``reports/sent.json``: ``{week: [send, …]}``, one entry per delivery of one
message to one recipient (``"management"`` for the head's email).  An entry's ``state`` is

- ``started``: the message went out with DATA and the server's reply was never recorded (the
  connection dropped, the process was killed): the outcome is unknown, the send is
  *unconfirmed*;
- ``sent``: the server accepted it (``sent_at``);
- ``failed``: the server refused it.

:func:`send_once` records ``started`` before DATA and ``sent`` after the reply.  The ledger
that says ``sent`` is written to disk *before* DATA too, and put in place with one rename
after the reply, so a disk that fills during delivery cannot lose the fact.  The Message-ID
depends only on (week, run id, recipient): a retry after an unclear outcome sends the same
message again, and mail clients show one copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from .config import SmtpEnv
from .errors import MailError
from .files import fsync_dir, hold_lock, write_atomic
from .log import logger, redact, register_secret

LEDGER = "sent.json"
#: The ledger's recipient of the head's email (the managers' cards file under their own).
MANAGEMENT = "management"


@dataclass(frozen=True)
class RetryPolicy:
    """How often a temporary SMTP fault is retried: ``attempts`` tries, waits ``base_delay * 2**n``."""

    attempts: int = 4
    base_delay: float = 1.0


@dataclass
class SendReport:
    """What one send did: the addresses the server accepted, and the lines ``kpi-report send``
    prints (in order)."""

    week: str
    sent: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def address_list(values: tuple[str, ...] | list[str]) -> list[str]:
    """The bare addresses of header-style values (``"Name <a@b>"`` → ``a@b``)."""
    return [addr for _, addr in getaddresses(list(values)) if addr]


def message_id(week: str, run_id: str, recipient: str, sender: str | None) -> str:
    """The Message-ID of the week's message to ``recipient`` from the run ``run_id``: always the same."""
    digest = hashlib.sha256(f"{week}\0{run_id}\0{recipient}".encode()).hexdigest()[:24]
    domain = (address_list((sender,)) if sender else [""])[0].rpartition("@")[2] or "localhost"
    return f"<kpi-{week}-{digest}@{domain}>"


# --- the ledger -----------------------------------------------------------------------------

def read_ledger(out_dir: Path) -> dict[str, list[dict]]:
    """Every send by week, from ``reports/sent.json`` (entries before states are ``sent``)."""
    path = Path(out_dir) / LEDGER
    if not path.is_file():
        return {}
    try:
        ledger = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise MailError(f"{path} is not valid JSON ({exc}): repair or remove it (it records sent weeks)") from exc
    for entries in ledger.values():
        for entry in entries:
            entry.setdefault("state", "sent")
            entry.setdefault("recipient", "management")
    return ledger


def last_send(ledger: dict[str, list[dict]], week: str, recipient: str) -> dict | None:
    """The latest entry for the week and recipient, or None."""
    entries = [e for e in ledger.get(week, []) if e.get("recipient") == recipient]
    return entries[-1] if entries else None


def ledger_lock(out_dir: Path):
    """The ledger's lock (``reports/.sent.lock``, removed when released)."""
    return hold_lock(Path(out_dir) / ".sent.lock", "ledger update", timeout=900)


def _write(out_dir: Path, ledger: dict) -> None:
    write_atomic(Path(out_dir) / LEDGER, json.dumps(ledger, ensure_ascii=False, indent=2))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- the SMTP conversation ------------------------------------------------------------------

def _temporary(exc: BaseException) -> bool:
    """True for faults worth another try: lost connections and 4xx replies."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    if isinstance(exc, (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError, ssl.SSLError, socket.gaierror)):
        return False
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    return isinstance(exc, OSError)  # refused, reset, timed out; SMTPServerDisconnected is one too


def explain(exc: BaseException, smtp: SmtpEnv) -> str:
    """One line on an SMTP fault that names the setting to check."""
    where = f"SMTP server {smtp.host}:{smtp.port}"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return (f"{where} refused the login of SMTP_USER={smtp.user!r} ({exc.smtp_code}): "
                "check SMTP_USER and SMTP_PASSWORD (many providers want an app password)")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"{where} does not support what was asked ({exc}): check SMTP_STARTTLS/SMTP_SSL and SMTP_PORT"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = ", ".join(f"{addr} ({code})" for addr, (code, _) in exc.recipients.items())
        return f"{where} refused every recipient: {refused}; check email.to and email.cc in the params file"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return f"{where} refused the sender {exc.sender!r} ({exc.smtp_code}): check SMTP_FROM"
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        return f"{where} answered {exc.smtp_code} {text}"
    if isinstance(exc, socket.gaierror):
        return f"SMTP_HOST={smtp.host!r} cannot be resolved ({exc}): check the host name"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed ({exc}): check SMTP_SSL (port 465) or SMTP_STARTTLS (port 587)"
    return f"{where}: {type(exc).__name__}: {exc}"


class _Unclear(Exception):
    """DATA was sent and no reply came back: the server may or may not have the message."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _converse(msg: EmailMessage, smtp: SmtpEnv, recipients: list[str], before_data) -> dict:
    """One SMTP session: MAIL, RCPT, ``before_data(refused)``, DATA. Returns the refused recipients."""
    context = ssl.create_default_context()
    client = (smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=30, context=context) if smtp.ssl
              else smtplib.SMTP(smtp.host, smtp.port, timeout=30))
    with client:
        if smtp.starttls:
            client.starttls(context=context)
        if smtp.user:
            client.login(smtp.user, smtp.password or "")
        client.ehlo_or_helo_if_needed()
        sender = address_list((smtp.sender,))[0]
        code, reply = client.mail(sender)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        refused = {}
        for addr in recipients:
            code, reply = client.rcpt(addr)
            if code not in (250, 251):
                refused[addr] = (code, reply)
        if len(refused) == len(recipients):
            raise smtplib.SMTPRecipientsRefused(refused)
        before_data(refused)
        try:
            code, reply = client.data(msg.as_bytes())
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Unclear(exc) from exc
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
        return refused


def send_once(out_dir: Path, msg: EmailMessage, smtp: SmtpEnv, recipients: list[str], *, week: str,
              recipient: str, entry: dict[str, Any], retry: RetryPolicy = RetryPolicy()) -> dict:
    """Deliver ``msg`` to ``recipients`` and record it in the ledger (see the module docstring).

    Parameters
    ----------
    out_dir : Path
        The reports folder that holds the ledger.
    msg : EmailMessage
        With its Message-ID from :func:`message_id`.
    recipients : list of str
        The envelope addresses.
    week, recipient : str
        What the ledger files the send under (``recipient``: "management", or a manager's key).
    entry : dict
        What else the ledger keeps about this send (to, cc, subject, run_id, generated_at, ok).

    Returns the recipients the server refused while accepting the others.  Temporary faults are
    retried with backoff; when they persist, or a fault is permanent, raises :class:`MailError`.
    """
    register_secret(smtp.password)
    out_dir = Path(out_dir)
    record = {"recipient": recipient, "message_id": str(msg["Message-ID"]), **entry, "state": "started"}
    with ledger_lock(out_dir):
        pending = out_dir / f".{LEDGER}.{hashlib.sha256(record['message_id'].encode()).hexdigest()[:16]}.sent"
        earlier = last_send(read_ledger(out_dir), week, recipient) or {}
        seen = {"data": 0, "unclear": earlier.get("message_id") == record["message_id"]
                and earlier.get("state") == "started"}  # an earlier try of this very message may have arrived

        def before_data(refused: dict) -> None:
            ledger = read_ledger(out_dir)
            entries = ledger.setdefault(week, [])
            last = entries[-1] if entries else {}
            if last.get("message_id") == record["message_id"] and last.get("state") == "started":
                entries.pop()  # this very send, tried again: it stays one entry
                record["attempts"] = last.get("attempts", 1) + 1
            record.update(started_at=_now(), refused={a: c for a, (c, _) in refused.items()})
            entries.append(dict(record))
            _write(out_dir, ledger)  # "started", before DATA
            entries[-1] |= {"state": "sent", "sent_at": _now()}
            write_atomic(pending, json.dumps(ledger, ensure_ascii=False, indent=2))  # "sent", ready to rename
            seen["data"] += 1

        try:
            refused = _deliver(msg, smtp, recipients, retry, before_data)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                pending.unlink()
            if seen["data"] and isinstance(exc, MailError) and not exc.unclear and not seen["unclear"]:
                _mark_failed(out_dir, week, record["message_id"])  # the server said no: nothing went out
            raise
        pending.replace(out_dir / LEDGER)  # needs no free space: a full disk cannot lose the fact
        with contextlib.suppress(OSError):
            fsync_dir(out_dir)
    return refused


def _mark_failed(out_dir: Path, week: str, mid: str) -> None:
    """Turn this send's ``started`` entry into ``failed`` (the server refused the message)."""
    try:
        ledger = read_ledger(out_dir)
        entries = ledger.get(week, [])
        if entries and entries[-1].get("message_id") == mid and entries[-1]["state"] == "started":
            entries[-1] |= {"state": "failed", "failed_at": _now()}
            _write(out_dir, ledger)
    except (OSError, MailError) as exc:
        logger.warning("could not record the failed send in the ledger: %s", exc)


def _deliver(msg: EmailMessage, smtp: SmtpEnv, recipients: list[str], retry: RetryPolicy, before_data) -> dict:
    """Retry temporary faults, then raise MailError (``unclear`` when the last try's outcome is unknown)."""
    any_unclear = False
    for attempt in range(1, retry.attempts + 1):
        unclear = False
        try:
            return _converse(msg, smtp, recipients, before_data)
        except _Unclear as exc:
            unclear, cause = True, exc.cause
        except OSError as exc:  # smtplib's errors are OSErrors
            cause = exc
        any_unclear = any_unclear or unclear
        reason = redact(explain(cause, smtp))
        if unclear:
            reason += " (after the message was sent, before the server confirmed it: unconfirmed)"
        if not _temporary(cause) and not unclear:
            raise MailError(f"email not sent: {reason}; the reports stay on disk", unclear=any_unclear,
                            refused=isinstance(cause, smtplib.SMTPRecipientsRefused)) from None
        if attempt == retry.attempts:
            again = f"kpi-report send --week {msg['X-KPI-Week']}"
            raise MailError(f"email not sent after {attempt} attempts: {reason}; the reports stay on disk; rerun "
                            f"'{again}' when the server is reachable" + (" (it resends with the same Message-ID)"
                                                                        if any_unclear else ""),
                            unclear=any_unclear) from None
        delay = retry.base_delay * 2 ** (attempt - 1)
        logger.warning("attempt %d of %d failed (%s); retrying in %.2f s", attempt, retry.attempts, reason, delay)
        time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
