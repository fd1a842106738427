"""End to end: the demo account, the real weekly run, the email received over SMTP on loopback.

One run of the six notebooks (about half a minute), so it is marked slow.
"""

from __future__ import annotations

import email
import email.policy
import io
import json
import os
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import DEMO_AS_OF
from kpi_lib.config import SmtpEnv, load_settings
from kpi_lib.mail import send_week, targets_headline
from test_mail import FAST, WEEK, Inbox, free_port, parts_of

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_demo_week_built_then_mailed(demo_store, tmp_path, monkeypatch):
    from browser import check_page, save_email_page
    from kpi_lib.report import render_week

    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the notebook kernels import kpi_lib from this tree
    settings = load_settings(ROOT / "params" / "weekly_ru.yaml", env={}, overrides={
        "data_dir": str(demo_store), "as_of": DEMO_AS_OF,
        "email": {"to": ["Ирина Соколова <head@example.ru>"], "cc": ["lead@example.ru"]}})
    out = tmp_path / "reports"
    assert render_week(settings, out, jobs=2).ok
    summary = json.loads((out / WEEK / "summary.json").read_text(encoding="utf-8"))

    inbox = Inbox()
    server = Controller(inbox, hostname="127.0.0.1", port=free_port())
    server.start()
    try:
        smtp = SmtpEnv(host="127.0.0.1", port=server.port, sender="Отчёты KPI <kpi@example.ru>")
        assert send_week(settings, out, smtp=smtp, retry=FAST).sent == ["head@example.ru", "lead@example.ru"]
        again = send_week(settings, out, smtp=smtp, retry=FAST)  # already sent: not again
        assert again.sent == [] and "not sent again" in again.lines[0]
    finally:
        server.stop()

    (envelope,) = inbox.envelopes
    assert envelope.rcpt_tos == ["head@example.ru", "lead@example.ru"]
    msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
    headline = targets_headline(summary["targets_met"], summary["targets_total"], "ru")
    assert msg["Subject"] == f"KPI отдела продаж {WEEK}: {headline}"
    text, html, images, attachments = parts_of(msg)
    assert len(images) == len(summary["charts"]) >= 6
    for row in summary["scorecard"]["rows"]:
        assert row["name"] in text
        assert all((cell["display"] or "—") in text for cell in row["cells"])
    archive_names = []
    for part in attachments:
        if part.get_content_type() == "application/zip":
            archive_names += [Path(n).name for n in zipfile.ZipFile(io.BytesIO(part.get_content())).namelist()]
        else:
            archive_names.append(part.get_filename())
    assert archive_names == [nb["html"] for nb in summary["notebooks"]]

    report = check_page(save_email_page(html, images, tmp_path / "received"))
    assert report.console_errors == [] and report.broken_images == [] and report.images == len(images)
    assert headline in report.text

    # why the figures moved: one driver line per KPI and the change of every figure, in both parts
    drivers = summary["scorecard"]["drivers"]
    assert [d["block"] for d in drivers] == [c["block"] for c in summary["scorecard"]["columns"]]
    team = next(r for r in summary["scorecard"]["rows"] if r["manager"] == "team")
    for d in drivers:
        assert d["sentence"] in text and d["sentence"] in report.text
    for cell in team["cells"]:
        assert cell["change_display"][0] in "▲▼→" and cell["change_display"] in text
        assert cell["change_display"] in report.text and f"n = {cell['n']}" in report.text.replace("\u00a0", " ")


LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def test_run_email_mails_the_week_it_built_across_monday_midnight(demo_store, tmp_path):
    """``run --week last --email`` on a clock that passes Monday 00:00 (Moscow) mid-run: the
    run builds 2026-W47 on Sunday night and the email is that week, not the one Monday names."""
    import subprocess
    import sys
    import time

    assert LIBFAKETIME.is_file(), "the test needs Debian's faketime: apt-get install faketime"
    clock = tmp_path / "clock"
    start = datetime(2026, 11, 29, 20, 59, 30)  # Sunday 23:59:30 in Moscow (UTC+3), as UTC
    clock.write_text(f"@{start:%Y-%m-%d %H:%M:%S}", encoding="utf-8")
    params = tmp_path / "params.yaml"
    params.write_text("email:\n  to: [head@example.ru]\n  managers: true\n", encoding="utf-8")
    inbox = Inbox()
    server = Controller(inbox, hostname="127.0.0.1", port=free_port())
    server.start()
    out = tmp_path / "reports"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TZ="UTC", LD_PRELOAD=str(LIBFAKETIME),
               FAKETIME_TIMESTAMP_FILE=str(clock), FAKETIME_CACHE_DURATION="1",
               SMTP_HOST="127.0.0.1", SMTP_PORT=str(server.port), SMTP_FROM="kpi@example.ru")
    try:
        run = subprocess.Popen([sys.executable, "-m", "kpi_lib.cli", "run", "--week", "last", "--email",
                                "--params", str(params), "--data-dir", str(demo_store), "--out", str(out)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        began = time.monotonic()
        deadline = began + 300
        while not list(out.glob(".weeks/*/.staging-*")) and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        # the week is resolved: move the clock past Monday 00:00 by seconds only, so that the
        # kernels' own start-up timeouts (wall clock) never see the jump as a wait
        now = start + timedelta(seconds=time.monotonic() - began + 1)
        clock.write_text(f"@{max(now, datetime(2026, 11, 29, 21, 0, 5)):%Y-%m-%d %H:%M:%S}", encoding="utf-8")
        stdout, stderr = run.communicate(timeout=600)
    finally:
        server.stop()
    assert run.returncode == 0, stderr
    assert [p.name for p in out.iterdir() if p.is_symlink()] == [WEEK]
    received = {tuple(e.rcpt_tos): email.message_from_bytes(e.content, policy=email.policy.default)
                for e in inbox.envelopes}
    message = received.pop(("head@example.ru",))
    assert message["X-KPI-Week"] == WEEK and WEEK in message["Subject"]
    # email.managers: true — each manager's card of that same week, after the head's email
    cards = json.loads((out / WEEK / "summary.json").read_text(encoding="utf-8"))["cards"]
    assert len(received) == len(inbox.envelopes) - 1 == len(cards) > 1
    assert all(m["X-KPI-Week"] == WEEK and m["Subject"].startswith(f"Your week {WEEK}") for m in received.values())
    ledger = json.loads((out / "sent.json").read_text(encoding="utf-8"))[WEEK]
    assert [e["recipient"] for e in ledger] == ["management"] + [f"manager/{c['manager']}" for c in cards]
    assert all(e["state"] == "sent" for e in ledger)
    assert ledger[0]["sent_at"] >= "2026-11-29T21:00:00+00:00"  # mailed on Monday, by the run's own clock
