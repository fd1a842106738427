"""Each manager's card by email: ``kpi-report send --managers``.

:func:`build_card_message` turns one card's data (``reports/<week>/managers/<user_id>.json``,
written by the weekly run) into one email in the manager's language::

    multipart/mixed
    ├── multipart/alternative
    │   ├── text/plain               the card as text
    │   └── multipart/related
    │       ├── text/html            table layout, inline styles, <img src="cid:…">
    │       └── image/png            the manager's 12-week lines
    └── text/html                    the card page (when it is in the email's language)

A card and its email hold only that manager's own figures and items and the team's figures.
:func:`send_cards` mails every card once: the address is the amoCRM user's email
unless ``email.manager_addresses`` gives one, ``email.skip_managers`` leaves managers out, and
``email.manager_lang`` picks a manager's language.  Each card goes through the send-once
ledger (:mod:`kpi_lib.delivery`) under its own recipient, ``manager/<user_id>``, with a
Message-ID fixed by (week, run id, recipient): a rerun sends only the cards still missing,
and a card whose send was never confirmed goes again as the same message.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.headerregistry import Address
from email.utils import format_datetime as rfc2822_date, make_msgid
from pathlib import Path
from typing import Any

from . import i18n
from .card import action_groups, figure_rows, trend_png
from .config import Settings, SmtpEnv, smtp_env
from .delivery import RetryPolicy, SendReport, last_send, ledger_lock, message_id, read_ledger, send_once
from .errors import KpiError, MailError
from .files import write_atomic
from .log import logger, register_secret
from .mail import CHART_WIDTH, TEXTS, _link, _png_size, _report_tz, check_smtp, read_summary, targets_headline
from .periods import load_timezone, parse_week, resolve_week
from .publish import current_generation, week_lock
from .store import Store
from .templating import render


def recipient_key(manager: int | str) -> str:
    """What the ledger (``reports/sent.json``) files a manager's card under, beside "management"."""
    return f"manager/{manager}"


def read_card(week_dir: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """One card's data as the run wrote it."""
    path = week_dir / entry["data"]
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MailError(f"{path} cannot be read ({exc}): rerun 'kpi-report run --week {week_dir.name}'") from exc


def amocrm_addresses(settings: Settings) -> dict[int, str]:
    """Each amoCRM user's email from the store (``users.email``), by user id."""
    try:
        with Store.open(settings.data_dir, settings.account, read_only=True) as store:
            users = store.frame("users", ["id", "email"])
    except KpiError as exc:
        logger.warning("amoCRM users' emails are unknown (%s): only email.manager_addresses are used", exc)
        return {}
    return {int(uid): str(addr).strip() for uid, addr in zip(users["id"], users["email"])
            if not i18n.is_missing(addr) and "@" in str(addr)}


def build_card_message(card: dict[str, Any], lang: str, address: str, smtp: SmtpEnv | None = None, *,
                       base_url: str | None = None, page: bytes | None = None, stale: bool = False,
                       run_id: str = "") -> EmailMessage:
    """The email of one card (see the module docstring) to ``address`` in ``lang``.

    Parameters
    ----------
    card : dict
        The card's data (:meth:`kpi_lib.card.ManagerCard.card_data`).
    page : bytes, optional
        The card's HTML page, attached when given.
    stale : bool
        The data were last synced before the week ended: the subject and body say so.
    run_id : str
        The run that built the card: with the week and the manager it fixes the Message-ID, so
        a card sent again after an unconfirmed send is the same message.
    """
    t = lambda key, **kw: i18n.text(key, lang, **kw)  # noqa: E731
    name, week = card["manager"]["name"], card["week"]
    currency = card.get("currency") or "RUB"
    with_target = [f for f in card["figures"] if f["met"] is not None]
    headline = targets_headline(sum(1 for f in with_target if f["met"]), len(with_target), lang)
    subject = t("card.mail.subject", week=week, headline=headline) + (" — " + TEXTS[lang]["stale"] if stale else "")
    png = trend_png(card, lang)
    chart = None
    if png:
        width, height = _png_size(png)
        shown = min(CHART_WIDTH, width or CHART_WIDTH)
        chart = {"cid": make_msgid(domain="kpi-report.local"), "width": shown,
                 "height": round(height * shown / width) if width else None, "title": t("card.trends")}
    tz = load_timezone(card["timezone"])
    period = parse_week(week, tz)
    synced = datetime.fromisoformat(card["last_sync_at"]) if card.get("last_sync_at") else None
    ctx = {
        "lang": lang, "subject": subject, "headline": headline, "t": t, "name": name,
        "title": t("card.title", name=name), "week": i18n.format_week(period, lang),
        "account": (card.get("account") or {}).get("name") or (card.get("account") or {}).get("subdomain") or "",
        "lead": t("card.lead"), "rows": figure_rows(card["figures"], lang, currency),
        "columns": {k: t(f"card.col.{k}") for k in ("figure", "value", "target", "change", "rank", "team")},
        "groups": action_groups(card, lang), "chart": chart, "stale": stale,
        "stale_note": TEXTS[lang]["stale_note"].format(synced=i18n.format_datetime(synced, lang, tz),
                                                       end=i18n.format_datetime(period.end, lang, tz)),
        "synced": i18n.format_datetime(synced, lang, tz), "open": t("smart.open_lead"), "nothing": t("card.none"),
        "url": _link(base_url, week, f"managers/{card['manager']['user_id']}.html"),
    }
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["Subject"] = subject
    sender = (smtp.sender if smtp else None) or "kpi-report@localhost"
    msg["From"] = sender
    msg["To"] = Address(display_name=name, addr_spec=address)  # quotes and markup in the name survive
    msg["Date"] = rfc2822_date(datetime.now(timezone.utc))
    msg["Message-ID"] = message_id(week, run_id, recipient_key(card["manager"]["user_id"]), sender)
    msg["X-KPI-Week"] = week
    if run_id:
        msg["X-KPI-Report-Run"] = run_id
    msg.set_content(render("card_email.txt", **ctx), subtype="plain", cte="quoted-printable")
    msg.add_alternative(render("card_email.html", **ctx), subtype="html", cte="quoted-printable")
    if chart:
        msg.get_payload()[1].add_related(png, "image", "png", cid=chart["cid"], disposition="inline",
                                         filename=f"card-{week}.png")
    if page:
        msg.add_attachment(page.decode("utf-8", "replace"), subtype="html", filename=f"card-{week}.html",
                           cte="base64")
    else:
        msg.make_mixed()  # the same tree with or without the page
    return msg


def plan_cards(settings: Settings, week_dir: Path, summary: dict[str, Any]) -> list[tuple[dict, dict, str, str]]:
    """(summary entry, card, address, language) of every card to mail; warn about the others."""
    email = settings.email
    entries = summary.get("cards")
    if not entries:
        raise MailError(f"no manager cards for {summary['week']}: rerun 'kpi-report run --week {summary['week']}' "
                        "with notebooks/07_manager_card.ipynb in place")
    known = amocrm_addresses(settings)
    plan = []
    for entry in entries:
        uid = int(entry["manager"])
        if uid in email.skip_managers:
            continue
        card = read_card(week_dir, entry)
        who = f"{card['manager']['name']} ({uid})"
        if not entry.get("ok"):
            logger.warning("the card of %s failed in the run: not sent; see %s", who, week_dir / entry["html"])
            continue
        address = email.manager_addresses.get(uid) or known.get(uid)
        if not address:
            logger.warning("%s has no email address in amoCRM: card not sent; add 'email: {manager_addresses: "
                           "{%d: name@example.com}}' to the params file", who, uid)
            continue
        plan.append((entry, card, address, email.manager_lang.get(uid, settings.lang)))
    return plan


def send_cards(settings: Settings, out_dir: str | os.PathLike, dry_run: bool = False, force: bool = False,
               *, smtp: SmtpEnv | None = None, retry: RetryPolicy = RetryPolicy()) -> SendReport:
    """``kpi-report send --managers``: mail each manager their own card once; what it did.

    The cards of the week's current generation are mailed holding the week's lock, each through
    :func:`kpi_lib.delivery.send_once` under its own recipient key (:func:`recipient_key`).
    ``dry_run`` writes ``reports/<week>/managers/<user_id>.eml`` instead.  A card already sent
    is not sent again without ``force``; an unconfirmed one is sent again with the same
    Message-ID.  A recipient the server refuses is reported and the others still go; any other
    delivery fault stops the command (exit 2) and a rerun sends the cards still missing: it
    raises :class:`~kpi_lib.errors.MailError` carrying the line of what was sent.
    """
    out_dir = Path(out_dir)
    tz = _report_tz(settings)
    week, _ = resolve_week(settings.week, settings.as_of, tz)
    label = week.label
    if current_generation(out_dir, label) is None:
        raise MailError(f"{label} was never built: there is no {out_dir / label}; "
                        f"run 'kpi-report run --week {label}' first")
    smtp = smtp or smtp_env()
    register_secret(smtp.password)
    with week_lock(out_dir, label, what="send"):  # never a half-published week
        week_dir = current_generation(out_dir, label)
        summary = read_summary(week_dir)
        synced = datetime.fromisoformat(summary["last_sync_at"]) if summary.get("last_sync_at") else None
        stale = synced is not None and synced < parse_week(label, tz).end
        run_id = summary.get("run_id") or summary.get("generated_at") or ""

        def message(entry: dict, card: dict, address: str, lang: str) -> EmailMessage:
            page = week_dir / entry["html"]
            attach = page.read_bytes() if lang == summary.get("lang") and page.is_file() else None
            return build_card_message(card, lang, address, smtp, base_url=settings.email.base_url, page=attach,
                                      stale=stale, run_id=run_id)

        plan = plan_cards(settings, week_dir, summary)
        if dry_run:
            for entry, card, address, lang in plan:
                write_atomic(week_dir / "managers" / f"{entry['manager']}.eml",
                             message(entry, card, address, lang).as_bytes())
            return SendReport(label, lines=[f"{label}: {len(plan)} card email(s) written to "
                                            f"{out_dir / label / 'managers'} (not sent)"])
        if not plan:
            return SendReport(label, lines=[f"{label}: no card to send (see the warnings above)"])
        check_smtp(smtp, [address for _, _, address, _ in plan])
        sent, kept, failed, unclear = [], [], [], False
        for entry, card, address, lang in plan:
            key = recipient_key(entry["manager"])
            with ledger_lock(out_dir):
                last = last_send(read_ledger(out_dir), label, key)
            if last is not None and last["state"] == "sent" and not force:
                kept.append(address)
                continue
            msg = message(entry, card, address, lang)
            if last is not None and last["state"] == "started":
                logger.warning("the card of %s (%s) sent at %s was never confirmed: sending it again%s",
                               card["manager"]["name"], entry["manager"], last.get("started_at"),
                               " with the same Message-ID" if last.get("message_id") == str(msg["Message-ID"])
                               else " (the reports were rebuilt since)")
            record = {"to": [address], "lang": lang, "subject": str(msg["Subject"]), "run_id": summary.get("run_id"),
                      "generated_at": summary.get("generated_at")}
            try:
                send_once(out_dir, msg, smtp, [address], week=label, recipient=key, entry=record, retry=retry)
            except MailError as exc:
                failed.append(f"{card['manager']['name']} ({entry['manager']}): {exc}")
                unclear = unclear or exc.unclear
                if exc.refused:
                    continue
                break
            sent.append(address)
    report = SendReport(label, sent=sent, lines=[
        f"{label}: {len(sent)} card(s) sent" + (f" to {', '.join(sent)}" if sent else "")
        + (f"; {len(kept)} already sent (use --force to resend)" if kept else "")])
    if failed:
        raise MailError(f"{len(failed)} card(s) not sent: " + " | ".join(failed)
                        + f"; rerun 'kpi-report send --managers --week {label}' to send the rest", unclear=unclear,
                        lines=report.lines)
    return report
