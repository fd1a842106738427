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
so in its subject and body.  :func:`send_week` (``kpi-report send``) mails the week's
current generation once, holding the week's lock: :func:`kpi_lib.delivery.send_once` records
it in ``reports/sent.json`` and a second send of the same week needs ``--force``; an
unconfirmed send (DATA went out, no reply) is sent again with the same Message-ID.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from datetime import datetime, timezone
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime as rfc2822_date, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from .config import Settings, SmtpEnv, smtp_env
from .errors import ConfigError, KpiError, MailError
from .delivery import (MANAGEMENT, RetryPolicy, SendReport, address_list, last_send, ledger_lock, message_id,
                       read_ledger, send_once)
from .files import write_atomic
from .i18n import format_datetime, format_value, format_week
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


def targets_headline(met: int, total: int, lang: str) -> str:
    """"4 of 6 targets met" / "выполнено 4 из 6 целей" ("1 of 1 target", "из 21 цели")."""
    t = TEXTS[lang]
    if not total:
        return t["no_targets"]
    one = total == 1 if lang == "en" else total % 10 == 1 and total % 100 != 11
    goals = t["goals_one"] if one else t["goals_many"]
    return t["headline"].format(met=met, total=total, goals=goals)


def target_phrase(key: str, direction: str | None, target: float | None, lang: str, currency: str = "RUB") -> str:
    """"target ≥ 80%" or "target ≥ 101,671 RUB" for a scorecard column head ("" without a target)."""
    if target is None:
        return ""
    sign = {">=": "≥", "<=": "≤"}.get(direction or "", direction or "")
    return f"{TEXTS[lang]['target']} {sign} {format_value(key, target, lang, currency)}"


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
    currency = summary.get("currency") or "RUB"
    columns = [dict(col, target_text=target_phrase(col.get("key", ""), col.get("direction"), col.get("target"), lang,
                                                   currency))
               for col in summary["scorecard"].get("columns", [])]
    zone = tz or (generated.tzinfo if generated else None)  # one timezone for every time in the email
    base = settings.email.base_url
    return {
        "t": t, "lang": lang, "week": week, "summary": summary,
        "account": (summary.get("account") or {}).get("name") or (summary.get("account") or {}).get("subdomain") or "",
        "headline": targets_headline(summary["targets_met"], summary["targets_total"], lang),
        "title": t["title"].format(week=format_week(period, lang)),
        "failed": failed, "stale": stale, "subject": _subject(summary, lang, [nb["name"] for nb in failed], stale),
        "stale_note": t["stale_note"].format(synced=format_datetime(synced, lang, zone),
                                             end=format_datetime(period.end, lang, zone)),
        "rerun": f"kpi-report run --week {week} && kpi-report send --week {week} --force",
        "synced": format_datetime(synced, lang, zone), "generated": format_datetime(generated, lang, zone),
        "columns": columns, "rows": summary["scorecard"].get("rows", []),
        "drivers": [dict(d, url=_link(base, week, d["href"]) if d.get("href") else None)
                    for d in summary["scorecard"].get("drivers", [])],
        "charts": _charts(week_dir, summary),
        "index_url": _link(base, week, "index.html"),
        "links": [{"title": nb.get("title") or nb["name"], "ok": nb.get("ok", True),
                   "url": _link(base, week, nb.get("html") or f"{nb['name']}.html")} for nb in summary["notebooks"]],
    }


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
    msg["Message-ID"] = message_id(summary["week"], summary.get("run_id") or summary.get("generated_at") or "",
                                   MANAGEMENT, sender)
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


# --- the command ----------------------------------------------------------------------------

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


def send_week(settings: Settings, out_dir: str | os.PathLike, dry_run: bool = False, force: bool = False,
              *, smtp: SmtpEnv | None = None, retry: RetryPolicy = RetryPolicy()) -> SendReport:
    """``kpi-report send``: email one week's reports once; what it did, for the command line to tell.

    A week already sent is not sent again without ``force`` (a note, so a scheduled rerun stays
    quiet); an unconfirmed send is sent again with the same Message-ID; ``dry_run`` writes
    ``reports/<week>/email.eml`` instead and says what a send would do.  A failed delivery
    raises :class:`~kpi_lib.errors.MailError` carrying the lines told before it.
    """
    out_dir = Path(out_dir)
    tz = _report_tz(settings)
    week, _ = resolve_week(settings.week, settings.as_of, tz)
    label = week.label
    if current_generation(out_dir, label) is None:  # before any SMTP setting is asked for
        raise MailError(f"{label} was never built: there is no {out_dir / label}; "
                        f"run 'kpi-report run --week {label}' first")
    smtp = smtp or smtp_env()
    register_secret(smtp.password)
    recipients = address_list(settings.email.to + settings.email.cc)
    if not dry_run:
        check_smtp(smtp, recipients)
    report = SendReport(label)
    with week_lock(out_dir, label, what="send"):  # never a half-published week
        week_dir = current_generation(out_dir, label)
        summary = read_summary(week_dir)
        msg = build_message(week_dir, settings, smtp, tz=tz)
        with ledger_lock(out_dir):
            last = last_send(read_ledger(out_dir), label, MANAGEMENT)
        go, note = plan_send(label, last, summary, msg, force)
        if dry_run:
            path = week_dir / "email.eml"
            write_atomic(path, msg.as_bytes())
            report.lines.append(f"{label}: email written to {out_dir / label / path.name} (not sent): {msg['Subject']}")
            if note:
                report.lines.append(f"{note}; 'kpi-report send' would {'send it' if go else 'not send it'}")
            return report
        if not go:
            report.lines.append(f"{note}: not sent again; use --force to resend")
            return report
        if note:
            report.lines.append(note)
        entry = {"to": list(settings.email.to), "cc": list(settings.email.cc), "subject": str(msg["Subject"]),
                 "run_id": summary.get("run_id"), "generated_at": summary.get("generated_at"),
                 "ok": bool(summary["ok"])}
        try:
            refused = send_once(out_dir, msg, smtp, recipients, week=label, recipient=MANAGEMENT, entry=entry,
                                retry=retry)
        except MailError as exc:
            exc.lines[:0] = report.lines
            raise
    for addr, (code, _) in refused.items():
        logger.warning("the server refused %s (%s); the others received the email", addr, code)
    report.sent = [addr for addr in recipients if addr not in refused]
    report.lines.append(f"{label}: sent to {', '.join(recipients)}: {msg['Subject']}")
    return report


def check_smtp(smtp: SmtpEnv, recipients: list[str]) -> None:
    """A ConfigError naming the missing setting, before anything is sent."""
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


def plan_send(week: str, last: dict | None, summary: dict, msg: EmailMessage, force: bool) -> tuple[bool, str]:
    """Whether to send, and what to tell about the week's last send ("" when there was none)."""
    if last is None or last["state"] == "failed":
        return True, ""
    if last["state"] == "started":
        same = last.get("message_id") == str(msg["Message-ID"])
        return True, (f"{week}: the send started at {last.get('started_at')} to {', '.join(last.get('to') or [])} "
                      "was never confirmed (the connection dropped or the process stopped before the server's "
                      "reply): " + ("sending it again with the same Message-ID, so a mail client shows one copy"
                                    if same else "the reports were rebuilt since: sending the new ones"))
    note = f"{week} was already sent on {last['sent_at']} to {', '.join(last['to'])}"
    if last.get("generated_at") != summary.get("generated_at"):
        note += f"; the reports were regenerated since ({summary.get('generated_at')})"
    return force, note if not force else ""
