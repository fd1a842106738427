"""The weekly email, received by a real SMTP server on 127.0.0.1 (aiosmtpd).

A realistic ``reports/<week>/`` folder (summary.json per the reports contract, matplotlib
charts, six report pages) is built per test; the message is sent through smtplib and parsed
back from what the server received.
"""

from __future__ import annotations

import email
import email.policy
import io
import json
import re
import socket
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from kpi_lib.config import SmtpEnv, load_settings
from kpi_lib.errors import ConfigError, MailError
from kpi_lib.cli import print_send
from kpi_lib.mail import RetryPolicy, build_message, send_week, targets_headline

WEEK = "2026-W47"
NOTEBOOKS = [
    ("01_customer_satisfaction", "Customer satisfaction"), ("02_cost_of_service", "Cost of service"),
    ("03_first_call_quality", "First-call quality"), ("04_average_check", "Average check"),
    ("05_manager_productivity", "Manager productivity"), ("06_smart_audit", "SMART task audit"),
]
COLUMNS = [
    ("customer_satisfaction", "csat_pct", "CSAT", ">=", 80.0), ("cost_of_service", "escalation_rate_pct",
    "Escalations", "<=", 10.0), ("first_call", "fcr_pct", "FCR", ">=", 70.0),
    ("average_check", "avg_check", "Average check", ">=", 120000.0),
    ("productivity", "revenue_per_active_day", "Revenue per day", ">=", None),
    ("smart_audit", "smart_index", "SMART index", ">=", 90.0),
]
MANAGERS = [("team", "Team"), ("101", "Анна Смирнова"), ("102", "Ёжиков Пётр"), ("103", "<b>Evil</b> & Co")]
FAST = RetryPolicy(attempts=3, base_delay=0.01)
PASSWORD = "s3cret-Пароль-42"


@pytest.fixture(scope="session")
def chart_png() -> bytes:
    """One small real PNG chart (a team trend with its target line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.5), dpi=80)
    ax.plot(range(12), [70 + (i % 5) * 3 for i in range(12)], marker="o")
    ax.axhline(80, linestyle="--", color="grey")
    ax.set_title("CSAT, % — 12 weeks")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def make_week(out: Path, png: bytes, *, failed: tuple[str, ...] = (), lang: str = "en",
              synced: str | None = "2026-11-23T06:30:00+03:00", page_text: str | None = None,
              generated: str = "2026-11-23T07:00:00+03:00") -> Path:
    """Write ``out/<WEEK>/`` as the reports step does: summary.json, charts, six pages."""
    week_dir = out / WEEK
    (week_dir / "charts").mkdir(parents=True, exist_ok=True)
    notebooks, charts = [], []
    for i, (name, title) in enumerate(NOTEBOOKS):
        ok = name not in failed
        body = page_text if page_text is not None else "<p>" + " ".join(["figures of the week"] * 400) + "</p>"
        (week_dir / f"{name}.html").write_text(f"<!DOCTYPE html><html><body><h1>{title}</h1>{body}</body></html>",
                                               encoding="utf-8")
        notebooks.append({"name": name, "title": title, "html": f"{name}.html", "ok": ok,
                          "error": None if ok else "KeyError: 'stl_min' in cell 7"})
        (week_dir / "charts" / f"{name}.png").write_bytes(png)
        charts.append({"file": f"charts/{name}.png", "title": f"{title}: team trend"})
    rows = []
    for r, (manager, name) in enumerate(MANAGERS):
        cells = []
        for c, (_, key, _, _, target) in enumerate(COLUMNS):
            met = None if target is None else (r + c) % 3 != 0
            cells.append({"value": 50.0 + r + c, "display": f"{50 + r + c:.1f}", "met": met})
        rows.append({"manager": manager, "name": name, "cells": cells})
    met = sum(1 for cell in rows[0]["cells"] if cell["met"])
    summary = {
        "week": WEEK, "generated_at": generated, "last_sync_at": synced, "lang": lang,
        "account": {"name": "ООО «Ромашка»", "subdomain": "romashka"}, "ok": not failed, "notebooks": notebooks,
        "scorecard": {"columns": [{"block": b, "key": k, "label": label, "direction": d, "target": t}
                                  for b, k, label, d, t in COLUMNS], "rows": rows},
        "targets_met": met, "targets_total": sum(1 for col in COLUMNS if col[4] is not None), "charts": charts,
    }
    (week_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False), encoding="utf-8")
    return week_dir


def settings_for(tmp_path: Path, lang: str = "en", week: str = WEEK, **email_settings):
    email_settings.setdefault("to", ["Иван Петров <head@example.ru>"])
    email_settings.setdefault("cc", ["sales-lead@example.ru"])
    return load_settings(None, env={}, overrides={
        "data_dir": str(tmp_path / "data"), "week": week, "lang": lang, "email": email_settings})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Inbox:
    """An aiosmtpd handler keeping every envelope it accepts."""

    def __init__(self) -> None:
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self):
        return [email.message_from_bytes(e.content, policy=email.policy.default) for e in self.envelopes]


@contextmanager
def serving(inbox, sender: str = "Отчёты KPI <kpi@example.ru>"):
    """An SMTP server on loopback delivering into ``inbox``; yields ``(inbox, SmtpEnv)``."""
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, SmtpEnv(host="127.0.0.1", port=controller.port, sender=sender)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server():
    with serving(Inbox()) as server:
        yield server


def send(tmp_path, smtp, settings=None, **kwargs) -> int:
    kwargs.setdefault("retry", FAST)
    return print_send(send_week, settings or settings_for(tmp_path), tmp_path / "reports", smtp=smtp, **kwargs)


def parts_of(msg):
    """(text, html, images, attachments) of a received message, asserting its MIME tree."""
    assert msg.get_content_type() == "multipart/mixed"
    alternative, *attachments = msg.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    text, related = alternative.get_payload()
    assert text.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html, *images = related.get_payload()
    assert html.get_content_type() == "text/html"
    return text.get_content(), html.get_content(), images, attachments


def test_received_message_structure_recipients_and_inline_charts(tmp_path, smtp_server, chart_png):
    inbox, smtp = smtp_server
    make_week(tmp_path / "reports", chart_png)
    assert send(tmp_path, smtp, settings_for(tmp_path, attach="html")) == 0

    (envelope,) = inbox.envelopes
    assert envelope.mail_from == "kpi@example.ru"
    assert envelope.rcpt_tos == ["head@example.ru", "sales-lead@example.ru"]
    (msg,) = inbox.messages()
    assert msg["Subject"] == "Sales KPIs 2026-W47: 3 of 5 targets met"
    assert msg["To"].addresses[0].display_name == "Иван Петров"
    assert msg["From"].addresses[0].display_name == "Отчёты KPI"
    assert msg["Cc"].addresses[0].addr_spec == "sales-lead@example.ru"
    assert msg["X-KPI-Week"] == WEEK
    text, html, images, attachments = parts_of(msg)
    assert len(images) == len(NOTEBOOKS)
    for image in images:
        assert image.get_content_type() == "image/png"
        assert image.get_content() == chart_png
        cid = image["Content-ID"].strip("<>")
        assert f'src="cid:{cid}"' in html
    assert len(re.findall(r'<img [^>]*src="cid:', html)) == len(images)
    assert [a.get_filename() for a in attachments] == [f"{name}.html" for name, _ in NOTEBOOKS]
    assert all(a.get_content_type() == "text/html" and a.is_attachment() for a in attachments)
    assert "<h1>Customer satisfaction</h1>" in attachments[0].get_content()
    # the plain-text part carries the same scorecard
    assert "Анна Смирнова" in text and "CSAT: 51.0 ✓ met (target ≥ 80.0%)" in text
    assert "Revenue per day: 54.0 (" not in text and "3 of 5 targets met" in text
    # the ledger records the send
    ledger = json.loads((tmp_path / "reports" / "sent.json").read_text(encoding="utf-8"))
    (record,) = ledger[WEEK]
    assert record["message_id"] == msg["Message-ID"] and record["to"] == ["Иван Петров <head@example.ru>"]
    assert record["generated_at"] == "2026-11-23T07:00:00+03:00"


def test_html_body_is_mail_safe_and_escapes_crm_names(tmp_path, chart_png):
    make_week(tmp_path / "reports", chart_png)
    msg = build_message(tmp_path / "reports" / WEEK, settings_for(tmp_path))
    _, html, _, _ = parts_of(email.message_from_bytes(msg.as_bytes(), policy=email.policy.default))
    assert "&lt;b&gt;Evil&lt;/b&gt; &amp; Co" in html and "<b>Evil</b>" not in html
    for forbidden in ("<script", "<style", "data:", "href="):
        assert forbidden not in html  # no base_url: no links
    assert 'bgcolor="#e6f4ea"' in html and "✓" in html and "✗" in html  # colour and a text marker
    assert "ООО «Ромашка»" in html and "Sales KPIs, week 2026-W47 (16–22\xa0Nov 2026)" in html


def test_links_to_the_full_reports_when_a_base_url_is_set(tmp_path, chart_png):
    make_week(tmp_path / "reports", chart_png)
    msg = build_message(tmp_path / "reports" / WEEK, settings_for(tmp_path, base_url="https://kpi.example.ru/reports/"))
    text, html, _, _ = parts_of(email.message_from_bytes(msg.as_bytes(), policy=email.policy.default))
    assert 'href="https://kpi.example.ru/reports/2026-W47/index.html"' in html
    assert 'href="https://kpi.example.ru/reports/2026-W47/03_first_call_quality.html"' in html
    assert "https://kpi.example.ru/reports/2026-W47/06_smart_audit.html" in text


def test_russian_subject_and_body_are_encoded_for_any_mail_server(tmp_path, smtp_server, chart_png):
    inbox, smtp = smtp_server
    make_week(tmp_path / "reports", chart_png, lang="ru")
    assert send(tmp_path, smtp, settings_for(tmp_path, lang="ru")) == 0
    raw = inbox.envelopes[0].content
    headers = raw.split(b"\r\n\r\n", 1)[0]
    assert headers.isascii() and b"=?utf-8?" in headers  # RFC 2047, no SMTPUTF8 needed
    (msg,) = inbox.messages()
    assert msg["Subject"] == "KPI отдела продаж 2026-W47: выполнено 3 из 5 целей"
    text, html, _, _ = parts_of(msg)
    assert "KPI отдела продаж, неделя 2026-W47 (16–22\xa0ноября 2026)" in html and "Ёжиков Пётр" in html
    assert "выполнено" in text and "цель ≥ 120\xa0000" in text


def test_russian_headline_agrees_with_the_number():
    assert targets_headline(4, 6, "ru") == "выполнено 4 из 6 целей"
    assert targets_headline(1, 21, "ru") == "выполнено 1 из 21 цели"
    assert targets_headline(3, 11, "ru") == "выполнено 3 из 11 целей"
    assert targets_headline(0, 0, "en") == "no targets set"


def test_failed_notebook_is_named_in_subject_and_body(tmp_path, smtp_server, chart_png):
    inbox, smtp = smtp_server
    make_week(tmp_path / "reports", chart_png, failed=("03_first_call_quality",))
    assert send(tmp_path, smtp) == 0
    (msg,) = inbox.messages()
    assert msg["Subject"] == "Sales KPIs 2026-W47: 3 of 5 targets met — FAILED: 03_first_call_quality"
    text, html, _, _ = parts_of(msg)
    for body in (text, html):
        assert "03_first_call_quality" in body and "KeyError: &#39;stl_min&#39;" in body or "KeyError: 'stl_min'" in body
        assert "kpi-report run --week 2026-W47 &amp;&amp; kpi-report send --week 2026-W47 --force" in body \
            or "kpi-report run --week 2026-W47 && kpi-report send --week 2026-W47 --force" in body
    assert json.loads((tmp_path / "reports" / "sent.json").read_text())[WEEK][0]["ok"] is False


def test_data_synced_before_the_week_ended_is_marked_stale(tmp_path, chart_png):
    make_week(tmp_path / "reports", chart_png, synced="2026-11-20T18:00:00+03:00")
    msg = build_message(tmp_path / "reports" / WEEK, settings_for(tmp_path))
    assert msg["Subject"].endswith("— STALE DATA")
    text, _, _, _ = parts_of(email.message_from_bytes(msg.as_bytes(), policy=email.policy.default))
    assert "last synced on 20\xa0Nov 2026, 18:00 (UTC+03:00), before the week ended" in text


def test_zip_attachment_when_it_is_smaller(tmp_path, chart_png):
    make_week(tmp_path / "reports", chart_png)  # repetitive pages compress well
    msg = build_message(tmp_path / "reports" / WEEK, settings_for(tmp_path))
    *_, attachments = parts_of(email.message_from_bytes(msg.as_bytes(), policy=email.policy.default))
    (archive,) = attachments
    assert archive.get_content_type() == "application/zip" and archive.get_filename() == "kpi-reports-2026-W47.zip"
    names = zipfile.ZipFile(io.BytesIO(archive.get_content())).namelist()
    assert names == [f"{WEEK}/{name}.html" for name, _ in NOTEBOOKS]


def test_html_attachments_when_a_zip_would_be_larger(tmp_path, chart_png):
    make_week(tmp_path / "reports", chart_png, page_text="")  # tiny pages: zip headers outweigh them
    msg = build_message(tmp_path / "reports" / WEEK, settings_for(tmp_path))
    *_, attachments = parts_of(email.message_from_bytes(msg.as_bytes(), policy=email.policy.default))
    assert [a.get_content_type() for a in attachments] == ["text/html"] * len(NOTEBOOKS)
    forced = build_message(tmp_path / "reports" / WEEK, settings_for(tmp_path, attach="zip"))
    assert [p.get_content_type() for p in forced.iter_attachments()] == ["application/zip"]


def test_dry_run_writes_the_eml_and_sends_nothing(tmp_path, smtp_server, chart_png, capsys):
    inbox, _ = smtp_server
    make_week(tmp_path / "reports", chart_png)
    no_server = SmtpEnv(host=None, port=25)
    assert send(tmp_path, no_server, dry_run=True) == 0
    eml = tmp_path / "reports" / WEEK / "email.eml"
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "Sales KPIs 2026-W47: 3 of 5 targets met"
    assert str(eml) in capsys.readouterr().out
    assert inbox.envelopes == [] and not (tmp_path / "reports" / "sent.json").exists()


def test_last_week_resolves_against_the_pinned_as_of(tmp_path, chart_png):
    make_week(tmp_path / "reports", chart_png)
    settings = load_settings(None, env={}, overrides={"data_dir": str(tmp_path / "data"), "week": "last",
                                                      "as_of": "2026-11-25T12:00:00+03:00"})
    assert print_send(send_week, settings, tmp_path / "reports", dry_run=True, smtp=SmtpEnv(host=None, port=25)) == 0
    assert (tmp_path / "reports" / WEEK / "email.eml").is_file()


def test_a_week_is_not_sent_twice_without_force(tmp_path, smtp_server, chart_png, capsys):
    inbox, smtp = smtp_server
    make_week(tmp_path / "reports", chart_png)
    assert send(tmp_path, smtp) == 0
    assert send(tmp_path, smtp) == 0
    assert len(inbox.envelopes) == 1
    assert "2026-W47 was already sent on" in capsys.readouterr().out
    make_week(tmp_path / "reports", chart_png, generated="2026-11-24T09:00:00+03:00")
    assert send(tmp_path, smtp) == 0
    assert "regenerated since (2026-11-24T09:00:00+03:00)" in capsys.readouterr().out
    assert len(inbox.envelopes) == 1
    assert send(tmp_path, smtp, force=True) == 0
    assert len(inbox.envelopes) == 2
    ledger = json.loads((tmp_path / "reports" / "sent.json").read_text())
    assert [r["generated_at"] for r in ledger[WEEK]] == ["2026-11-23T07:00:00+03:00", "2026-11-24T09:00:00+03:00"]


def test_missing_reports_and_settings_name_the_fix(tmp_path, smtp_server, chart_png):
    _, smtp = smtp_server
    with pytest.raises(MailError, match=r"run 'kpi-report run --week 2026-W47' first"):
        send(tmp_path, smtp)
    make_week(tmp_path / "reports", chart_png)
    with pytest.raises(ConfigError, match="no recipients"):
        send(tmp_path, smtp, settings_for(tmp_path, to=[], cc=[]))
    with pytest.raises(ConfigError, match="SMTP_HOST is not set"):
        send(tmp_path, SmtpEnv(host=None, port=25, sender="kpi@example.ru"))


def test_received_html_opens_in_headless_chromium(tmp_path, smtp_server, chart_png):
    from browser import check_page, save_email_page

    inbox, smtp = smtp_server
    make_week(tmp_path / "reports", chart_png, failed=("06_smart_audit",))
    assert send(tmp_path, smtp, settings_for(tmp_path, base_url="https://kpi.example.ru")) == 0
    _, html, images, _ = parts_of(inbox.messages()[0])
    report = check_page(save_email_page(html, images, tmp_path / "received"), screenshot=tmp_path / "body.png")
    assert report.console_errors == [] and report.dialogs == []
    assert report.images == len(images) and report.broken_images == []
    assert "3 of 5 targets met" in report.text and "<b>Evil</b> & Co" in report.text
    assert report.external_requests == []


def test_many_failures_are_counted_in_the_subject(tmp_path, chart_png):
    make_week(tmp_path / "reports", chart_png, failed=tuple(name for name, _ in NOTEBOOKS[:4]), lang="ru")
    msg = build_message(tmp_path / "reports" / WEEK, settings_for(tmp_path, lang="ru"))
    assert msg["Subject"] == "KPI отдела продаж 2026-W47: выполнено 3 из 5 целей — СБОЙ: отчётов с ошибкой — 4"
    text, _, _, _ = parts_of(email.message_from_bytes(msg.as_bytes(), policy=email.policy.default))
    assert all(name in text for name, _ in NOTEBOOKS[:4])  # the body still names every one


def test_reports_in_another_language_than_the_email_are_refused(tmp_path, chart_png):
    make_week(tmp_path / "reports", chart_png, lang="en")
    with pytest.raises(MailError, match=r"are in 'en' but the email is asked in 'ru': rebuild them with "
                                        r"'kpi-report run --week 2026-W47'"):
        build_message(tmp_path / "reports" / WEEK, settings_for(tmp_path, lang="ru"))
