"""The weekly email: build it from a week's reports and deliver it over SMTP.

:func:`build_message` reads ``reports/<week>/summary.json``, the key charts and the report
pages, and returns one :class:`~email.message.EmailMessage`::

    multipart/mixed
    ├── multipart/alternative
    │   ├── text/plain               the scorecard as text
    │   └── multipart/related
    │       ├── text/html            table layout, inline styles, <img src="cid:…">
    │       └── image/png …          the key charts, one Content-ID each
    └── text/html …  or  application/zip   the report pages (a zip when smaller)

A week whose notebooks failed, or whose data was last synced before the week ended, says
so in its subject and body.  :func:`send_command` (``kpi-report send``) delivers it once:
each send is recorded in ``reports/sent.json`` and a second send of the same week needs
``--force``.  Temporary SMTP faults are retried with exponential backoff
(:class:`RetryPolicy`); permanent ones stop at once with a :class:`~kpi_lib.errors.MailError`.
"""

from __future__ import annotations

import io
import json
import os
import smtplib
import socket
import ssl
import struct
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime as rfc2822_date, getaddresses, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from .config import Settings, SmtpEnv, smtp_env
from .errors import ConfigError, KpiError, MailError
from .files import hold_lock, write_atomic
from .i18n import KINDS, format_datetime, format_number, format_value, format_week
from .log import logger, redact, register_secret
from .periods import parse_week, report_timezone, resolve_week
from .publish import current_generation, week_lock
from .store import Store
from .templating import TEMPLATES, render

#: Attachments above this many bytes are left out (mail servers refuse ~25 MB messages).
MAX_ATTACHMENTS = 15_000_000
#: Widest chart in the body, in CSS pixels (the body table is 640 wide, padded 24 each side).
CHART_WIDTH = 592

#: The email's sentences by language.
TEXTS: dict[str, dict[str, str]] = yaml.safe_load((TEMPLATES / "email_strings.yaml").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class RetryPolicy:
    """How often a temporary SMTP fault is retried: ``attempts`` tries, waits ``base_delay * 2**n``."""

    attempts: int = 4
    base_delay: float = 1.0


def targets_headline(met: int, total: int, lang: str) -> str:
    """"4 of 6 targets met" / "выполнено 4 из 6 целей" ("1 of 1 target", "из 21 цели")."""
    t = TEXTS[lang]
    if not total:
        return t["no_targets"]
    one = total == 1 if lang == "en" else total % 10 == 1 and total % 100 != 11
    goals = t["goals_one"] if one else t["goals_many"]
    return t["headline"].format(met=met, total=total, goals=goals)


def target_phrase(key: str, direction: str | None, target: float | None, lang: str) -> str:
    """"target ≥ 80%" for a scorecard column head ("" without a target)."""
    if target is None:
        return ""
    sign = {">=": "≥", "<=": "≤"}.get(direction or "", direction or "")
    shown = format_number(target, lang) if KINDS.get(key) == "money" else format_value(key, target, lang)
    return f"{TEXTS[lang]['target']} {sign} {shown}"


# --- reading a week's reports ---------------------------------------------------------------

def read_summary(week_dir: Path) -> dict[str, Any]:
    """The week's ``summary.json``, checked for the keys the email uses."""
    path = Path(week_dir) / "summary.json"
    week = Path(week_dir).name
    if not path.is_file():
        raise MailError(f"no reports for {week}: {path} is missing; run 'kpi-report run --week {week}' first")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MailError(f"{path} cannot be read ({exc}): rerun 'kpi-report run --week {week}'") from exc
    missing = [k for k in ("week", "ok", "notebooks", "scorecard", "targets_met", "targets_total") if k not in summary]
    if missing:
        raise MailError(f"{path} lacks {', '.join(missing)}: rerun 'kpi-report run --week {week}'")
    return summary


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG header ((0, 0) when it is not a PNG)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return 0, 0
    return struct.unpack(">II", data[16:24])


def _charts(week_dir: Path, summary: dict) -> list[dict[str, Any]]:
    charts = []
    for chart in summary.get("charts") or []:
        path = week_dir / chart["file"]
        if not path.is_file():
            logger.warning("chart %s is listed in summary.json but missing; left out of the email", path)
            continue
        data = path.read_bytes()
        width, height = _png_size(data)
        shown = min(CHART_WIDTH, width) if width else CHART_WIDTH
        charts.append({
            "title": chart.get("title") or path.stem, "data": data, "file": path.name,
            "cid": make_msgid(domain="kpi-report.local"),
            "width": shown, "height": round(height * shown / width) if width else None,
        })
    return charts


def _attachments(week_dir: Path, summary: dict, mode: str) -> list[tuple[str, bytes, str]]:
    """(filename, bytes, subtype) to attach: every report page, or one zip ([] when too large)."""
    pages = []
    for nb in summary["notebooks"]:
        path = week_dir / (nb.get("html") or f"{nb['name']}.html")
        if path.is_file():
            pages.append((path.name, path.read_bytes(), "html"))
        else:
            logger.warning("report page %s is missing; not attached", path)
    if not pages:
        return []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, _ in pages:
            archive.writestr(f"{summary['week']}/{name}", data)
    zipped = (f"kpi-reports-{summary['week']}.zip", buffer.getvalue(), "zip")
    chosen = [zipped] if mode == "zip" or (mode == "auto" and len(zipped[1]) < sum(len(p[1]) for p in pages)) else pages
    size = sum(len(data) for _, data, _ in chosen)
    if size > MAX_ATTACHMENTS:
        logger.warning("report pages are %.1f MB together: not attached (links and the server copy remain)", size / 1e6)
        return []
    return chosen


# --- the message ----------------------------------------------------------------------------

def _subject(summary: dict, lang: str, failed: list[str], stale: bool) -> str:
    t = TEXTS[lang]
    subject = t["subject"].format(week=summary["week"], headline=targets_headline(
        summary["targets_met"], summary["targets_total"], lang))
    if failed or not summary["ok"]:
        names = ", ".join(failed) if 0 < len(failed) <= 3 else t["failed_count"].format(count=len(failed) or "?")
        subject += " — " + t["failed"].format(names=names)
    if stale:
        subject += " — " + t["stale"]
    return subject


def _link(base_url: str | None, week: str, page: str) -> str | None:
    return f"{base_url.rstrip('/')}/{quote(week)}/{quote(page)}" if base_url else None


def _context(week_dir: Path, summary: dict, settings: Settings, tz: Any) -> dict[str, Any]:
    lang, week = settings.lang, summary["week"]
    t = TEXTS[lang]
    synced, generated = (datetime.fromisoformat(summary[k]) if summary.get(k) else None
                         for k in ("last_sync_at", "generated_at"))
    period = parse_week(week, tz or (synced.tzinfo if synced else None) or timezone.utc)
    stale = synced is not None and synced < period.end
    failed = [nb for nb in summary["notebooks"] if not nb.get("ok", True)]
    columns = [dict(col, target_text=target_phrase(col.get("key", ""), col.get("direction"), col.get("target"), lang))
               for col in summary["scorecard"].get("columns", [])]
    base = settings.email.base_url
    return {
        "t": t, "lang": lang, "week": week, "summary": summary,
        "account": (summary.get("account") or {}).get("name") or (summary.get("account") or {}).get("subdomain") or "",
        "headline": targets_headline(summary["targets_met"], summary["targets_total"], lang),
        "title": t["title"].format(week=format_week(period, lang)),
        "failed": failed, "stale": stale, "subject": _subject(summary, lang, [nb["name"] for nb in failed], stale),
        "stale_note": t["stale_note"].format(synced=format_datetime(synced, lang), end=format_datetime(period.end, lang)),
        "rerun": f"kpi-report run --week {week} && kpi-report send --week {week} --force",
        "synced": format_datetime(synced, lang), "generated": format_datetime(generated, lang),
        "columns": columns, "rows": summary["scorecard"].get("rows", []),
        "charts": _charts(week_dir, summary),
        "index_url": _link(base, week, "index.html"),
        "links": [{"title": nb.get("title") or nb["name"], "ok": nb.get("ok", True),
                   "url": _link(base, week, nb.get("html") or f"{nb['name']}.html")} for nb in summary["notebooks"]],
    }


def _address_list(values: tuple[str, ...]) -> list[str]:
    return [addr for _, addr in getaddresses(list(values)) if addr]


def build_message(week_dir: str | os.PathLike, settings: Settings, smtp: SmtpEnv | None = None,
                  *, tz: Any = None) -> EmailMessage:
    """Build the week's email from ``week_dir`` (``reports/<week>/``).

    Parameters
    ----------
    week_dir : path
        The week's report folder with ``summary.json``, ``charts/`` and the report pages.
    settings : Settings
        ``lang`` chooses the language; ``email`` the recipients, ``base_url`` and ``attach``.
    smtp : SmtpEnv, optional
        ``sender`` becomes From (default ``kpi-report@localhost``, fine for ``--dry-run``).
    tz : tzinfo, optional
        The report timezone, to tell whether the data was synced after the week ended.
    """
    week_dir = Path(week_dir)
    summary = read_summary(week_dir)
    if summary.get("lang", settings.lang) != settings.lang:
        raise MailError(f"the reports of {summary['week']} are in {summary['lang']!r} but the email is asked in "
                        f"{settings.lang!r}: rebuild them with 'kpi-report run --week {summary['week']}' and the same "
                        "params file (or send with the params they were built with)")
    ctx = _context(week_dir, summary, settings, tz)
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["Subject"] = ctx["subject"]
    sender = (smtp.sender if smtp else None) or "kpi-report@localhost"
    msg["From"] = sender
    if settings.email.to:
        msg["To"] = ", ".join(settings.email.to)
    if settings.email.cc:
        msg["Cc"] = ", ".join(settings.email.cc)
    msg["Date"] = rfc2822_date(datetime.now(timezone.utc))
    msg["Message-ID"] = make_msgid("kpi", domain=(_address_list((sender,)) or ["@localhost"])[0].rpartition("@")[2])
    msg["X-KPI-Week"] = summary["week"]
    if summary.get("run_id"):
        msg["X-KPI-Report-Run"] = summary["run_id"]
    attachments = _attachments(week_dir, summary, settings.email.attach)
    ctx["attached"] = attachments[0][2] if attachments else ("none" if summary["notebooks"] else "")
    ctx["zip_name"] = attachments[0][0] if attachments else ""
    msg.set_content(render("email.txt", **ctx), subtype="plain", cte="quoted-printable")
    msg.add_alternative(render("email.html", **ctx), subtype="html", cte="quoted-printable")
    html_part = msg.get_payload()[1]
    for chart in ctx["charts"]:
        html_part.add_related(chart["data"], "image", "png", cid=chart["cid"], disposition="inline",
                              filename=chart["file"])
    for name, data, subtype in attachments:
        if subtype == "html":
            msg.add_attachment(data.decode("utf-8", "replace"), subtype="html", filename=name, cte="base64")
        else:
            msg.add_attachment(data, "application", subtype, filename=name)
    return msg


# --- delivery -------------------------------------------------------------------------------

def _temporary(exc: BaseException) -> bool:
    """True for faults worth another try: lost connections and 4xx replies."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    if isinstance(exc, (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError, ssl.SSLError, socket.gaierror)):
        return False
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    return isinstance(exc, OSError)  # refused, reset, timed out; SMTPServerDisconnected is one too


def _explain(exc: BaseException, smtp: SmtpEnv) -> str:
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


def _deliver_once(msg: EmailMessage, smtp: SmtpEnv, recipients: list[str]) -> dict:
    context = ssl.create_default_context()
    client = (smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=30, context=context) if smtp.ssl
              else smtplib.SMTP(smtp.host, smtp.port, timeout=30))
    with client:
        if smtp.starttls:
            client.starttls(context=context)
        if smtp.user:
            client.login(smtp.user, smtp.password or "")
        return client.send_message(msg, from_addr=_address_list((smtp.sender,))[0], to_addrs=recipients)


def deliver(msg: EmailMessage, smtp: SmtpEnv, recipients: list[str], retry: RetryPolicy = RetryPolicy()) -> dict:
    """Send ``msg`` to ``recipients``; retry temporary faults, then raise MailError.

    Returns the recipients the server refused (``{address: (code, reply)}``) when others were accepted.
    """
    register_secret(smtp.password)
    for attempt in range(1, retry.attempts + 1):
        try:
            return _deliver_once(msg, smtp, recipients)
        except OSError as exc:  # smtplib's errors are OSErrors
            reason = redact(_explain(exc, smtp))
            if not _temporary(exc):
                raise MailError(f"email not sent: {reason}; the reports stay on disk") from None
            if attempt == retry.attempts:
                raise MailError(f"email not sent after {attempt} attempts: {reason}; the reports stay on disk; "
                                f"rerun 'kpi-report send --week {msg['X-KPI-Week']}' when the server is reachable") from None
            delay = retry.base_delay * 2 ** (attempt - 1)
            logger.warning("attempt %d of %d failed (%s); retrying in %.2f s", attempt, retry.attempts, reason, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


# --- the sent ledger and the command --------------------------------------------------------

def read_ledger(out_dir: Path) -> dict[str, list[dict]]:
    """What was sent for each week: ``{week: [send, …]}`` from ``reports/sent.json``."""
    path = Path(out_dir) / "sent.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise MailError(f"{path} is not valid JSON ({exc}): repair or remove it (it records sent weeks)") from exc


def _report_tz(settings: Settings):
    """The report timezone: params, else the account's (from the store), else UTC."""
    account_tz = None
    if not settings.kpi.timezone:
        try:
            with Store.open(settings.data_dir, settings.account, read_only=True) as store:
                zones = store.frame("account")["timezone"].dropna()
            account_tz = zones.iloc[0] if len(zones) else None
        except KpiError as exc:
            logger.debug("account timezone unknown (%s); using UTC", exc)
    return report_timezone(settings.kpi.timezone, account_tz)


def send_command(settings: Settings, out_dir: str | os.PathLike, dry_run: bool = False, force: bool = False,
                 *, smtp: SmtpEnv | None = None, retry: RetryPolicy = RetryPolicy()) -> int:
    """``kpi-report send``: email one week's reports once; returns the exit code.

    A week already sent is not sent again without ``force`` (exit 0 with a note, so a
    scheduled rerun stays quiet); ``dry_run`` writes ``reports/<week>/email.eml`` instead.
    """
    out_dir = Path(out_dir)
    tz = _report_tz(settings)
    week, _ = resolve_week(settings.week, settings.as_of, tz)
    if current_generation(out_dir, week.label) is None:
        raise MailError(f"{week.label} was never built: no {out_dir / week.label}; run "
                        f"'kpi-report run --week {week.label}' first")
    smtp = smtp or smtp_env()
    register_secret(smtp.password)
    recipients = _address_list(settings.email.to + settings.email.cc)
    if dry_run:
        with week_lock(out_dir, week.label, what="send"):
            week_dir = current_generation(out_dir, week.label)
            msg = build_message(week_dir, settings, smtp, tz=tz)
            path = week_dir / "email.eml"
            write_atomic(path, msg.as_bytes())
        print(f"{week.label}: email written to {out_dir / week.label / path.name} (not sent): {msg['Subject']}")
        return 0
    for wrong, problem in (
        (not recipients, "no recipients: add 'email: {to: [head@example.com]}' to the params file (--params FILE)"),
        (not smtp.host, "SMTP_HOST is not set: export SMTP_HOST, SMTP_PORT, SMTP_USER, SMTP_PASSWORD, "
                        "SMTP_STARTTLS=1 or SMTP_SSL=1 and SMTP_FROM, or use --dry-run"),
        (not smtp.sender, "SMTP_FROM is not set: export SMTP_FROM='KPI reports <kpi@example.com>'"),
        (smtp.user and not smtp.password, f"SMTP_USER={smtp.user!r} is set but SMTP_PASSWORD is not: export it"),
        (smtp.password and not smtp.password.isascii(),
         "SMTP_PASSWORD has non-ASCII characters, which SMTP AUTH cannot carry: use an ASCII (app) password"),
    ):
        if wrong:
            raise ConfigError(problem)
    with week_lock(out_dir, week.label, what="send"), hold_lock(out_dir / ".sent.lock", "ledger update", timeout=600):
        week_dir = current_generation(out_dir, week.label)
        ledger = read_ledger(out_dir)
        summary = read_summary(week_dir)
        previous = ledger.get(week.label) or []
        if previous and not force:
            last = previous[-1]
            note = f"{week.label} was already sent on {last['sent_at']} to {', '.join(last['to'])}"
            if last.get("generated_at") != summary.get("generated_at"):
                note += f"; the reports were regenerated since ({summary.get('generated_at')})"
            print(f"{note}: not sent again; use --force to resend")
            return 0
        msg = build_message(week_dir, settings, smtp, tz=tz)
        refused = deliver(msg, smtp, recipients, retry)
        record = {
            "sent_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "to": list(settings.email.to), "cc": list(settings.email.cc), "subject": str(msg["Subject"]),
            "message_id": str(msg["Message-ID"]), "generated_at": summary.get("generated_at"),
            "ok": bool(summary["ok"]), "refused": {addr: code for addr, (code, _) in refused.items()},
        }
        ledger.setdefault(week.label, []).append(record)
        write_atomic(out_dir / "sent.json", json.dumps(ledger, ensure_ascii=False, indent=2))
    for addr, (code, _) in refused.items():
        logger.warning("the server refused %s (%s); the others received the email", addr, code)
    print(f"{week.label}: sent to {', '.join(recipients)}: {msg['Subject']}")
    return 0
