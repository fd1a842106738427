"""End to end: the demo account, the real weekly run, the email received over SMTP on loopback.

One run of the six notebooks (about half a minute), so it is marked slow.
"""

from __future__ import annotations

import email
import email.policy
import io
import json
import zipfile
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import DEMO_AS_OF
from kpi_lib.config import SmtpEnv, load_settings
from kpi_lib.mail import send_command, targets_headline
from test_mail import FAST, WEEK, Inbox, free_port, parts_of

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_demo_week_built_then_mailed(demo_store, tmp_path, monkeypatch):
    from browser import check_page, save_email_page
    from kpi_lib.report import run_command

    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the notebook kernels import kpi_lib from this tree
    settings = load_settings(ROOT / "params" / "weekly_ru.yaml", env={}, overrides={
        "data_dir": str(demo_store), "as_of": DEMO_AS_OF,
        "email": {"to": ["Ирина Соколова <head@example.ru>"], "cc": ["lead@example.ru"]}})
    out = tmp_path / "reports"
    assert run_command(settings, out, jobs=2)[0] == 0
    summary = json.loads((out / WEEK / "summary.json").read_text(encoding="utf-8"))

    inbox = Inbox()
    server = Controller(inbox, hostname="127.0.0.1", port=free_port())
    server.start()
    try:
        smtp = SmtpEnv(host="127.0.0.1", port=server.port, sender="Отчёты KPI <kpi@example.ru>")
        assert send_command(settings, out, smtp=smtp, retry=FAST) == 0
        assert send_command(settings, out, smtp=smtp, retry=FAST) == 0  # already sent: not again
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
