"""Sent once, under faults: a connection dropped before the server's reply, kill -9 in the middle
of a send, a disk that fills during delivery, the week's lock, and a week never built.

A real SMTP server on 127.0.0.1 (aiosmtpd) receives everything; the ledger is read back from
``reports/sent.json``.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from kpi_lib.config import SmtpEnv
from kpi_lib.errors import MailError
from tests.conftest import week_held
from test_mail import (FAST, WEEK, Inbox, chart_png, free_port, make_week, send, settings_for,  # noqa: F401
                       smtp_server)

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = "20261123T040000Z-0a1b2c"


class Dropping(Inbox):
    """Keeps the message of the first ``drops`` DATA commands, then hangs up before replying."""

    def __init__(self, drops: int = 1, hold: threading.Event | None = None) -> None:
        super().__init__()
        self.drops, self.hold, self.entered = drops, hold, threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        self.entered.set()
        if self.hold is not None:  # stay inside DATA until the test lets go
            while not self.hold.is_set():
                await asyncio.sleep(0.02)
        if self.drops > 0:
            self.drops -= 1
            server.transport.abort()  # no "250": the client cannot tell whether the message arrived
        return "250 OK"


def start(handler) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    return controller


def smtp_for(server: Controller) -> SmtpEnv:
    return SmtpEnv(host="127.0.0.1", port=server.port, sender="kpi@example.ru")


def entries(out: Path) -> list[dict]:
    return json.loads((out / "sent.json").read_text(encoding="utf-8"))[WEEK]


def message_ids(inbox: Inbox) -> list[str]:
    return [email.message_from_bytes(e.content, policy=email.policy.default)["Message-ID"] for e in inbox.envelopes]


@pytest.fixture
def week(tmp_path, chart_png):
    folder = make_week(tmp_path / "reports", chart_png)
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    (folder / "summary.json").write_text(json.dumps(summary | {"run_id": RUN_ID}), encoding="utf-8")
    return folder


def test_an_unconfirmed_send_is_retried_with_the_same_message_id(tmp_path, week, capsys):
    dropping = Dropping(drops=1)
    server = start(dropping)
    try:
        with pytest.raises(MailError, match="unconfirmed") as caught:
            send(tmp_path, smtp_for(server), retry=type(FAST)(attempts=1, base_delay=0.01))
        assert caught.value.unclear and "same Message-ID" in str(caught.value)
        (first,) = entries(tmp_path / "reports")
        assert first["state"] == "started" and first["run_id"] == RUN_ID and "sent_at" not in first

        assert send(tmp_path, smtp_for(server), dry_run=True) == 0  # says what a send would do
        assert "was never confirmed" in capsys.readouterr().out
        assert send(tmp_path, smtp_for(server)) == 0
        said = capsys.readouterr().out
        assert "was never confirmed" in said and "sending it again with the same Message-ID" in said
    finally:
        server.stop()
    ids = message_ids(dropping)
    assert len(ids) == 2 and ids[0] == ids[1] == first["message_id"]
    (last,) = entries(tmp_path / "reports")  # one send, confirmed on its second try
    assert last["state"] == "sent" and last["attempts"] == 2 and last["message_id"] == ids[0]
    assert send(tmp_path, smtp_for(server)) == 0 and "already sent" in capsys.readouterr().out
    assert not list((tmp_path / "reports").rglob("*.lock"))


def test_a_dropped_reply_is_retried_within_the_send_with_the_same_message_id(tmp_path, week):
    dropping = Dropping(drops=1)
    server = start(dropping)
    try:
        assert send(tmp_path, smtp_for(server)) == 0  # FAST: three attempts
    finally:
        server.stop()
    ids = message_ids(dropping)
    assert len(ids) == 2 and len(set(ids)) == 1
    assert [e["state"] for e in entries(tmp_path / "reports")] == ["sent"]


SEND = """
import sys
from kpi_lib.config import SmtpEnv, load_settings
from kpi_lib.mail import send_week
settings = load_settings(None, env={}, overrides={"data_dir": sys.argv[1], "week": "2026-W47", "lang": "en",
                                                  "email": {"to": ["head@example.ru"]}})
send_week(settings, sys.argv[2], smtp=SmtpEnv(host="127.0.0.1", port=int(sys.argv[3]), sender="kpi@example.ru"))
"""


def test_kill_9_in_the_middle_of_a_send_then_a_rerun_sends_the_same_message(tmp_path, week, capsys):
    hold = threading.Event()
    dropping = Dropping(drops=0, hold=hold)
    server = start(dropping)
    try:
        child = subprocess.Popen([sys.executable, "-c", SEND, str(tmp_path / "data"), str(tmp_path / "reports"),
                                  str(server.port)], env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert dropping.entered.wait(120), "the send never reached DATA"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        hold.set()
        (killed,) = entries(tmp_path / "reports")
        assert killed["state"] == "started"
        settings = settings_for(tmp_path, to=["head@example.ru"], cc=[])
        assert send(tmp_path, smtp_for(server), settings) == 0
        assert "was never confirmed" in capsys.readouterr().out
    finally:
        hold.set()
        server.stop()
    ids = message_ids(dropping)
    assert len(ids) == 2 and ids[0] == ids[1] == killed["message_id"]
    assert [e["state"] for e in entries(tmp_path / "reports")] == ["sent"]


class Filling(Inbox):
    """Accepts the message, but fills the reports' disk before it replies."""

    def __init__(self, disk: Path) -> None:
        super().__init__()
        self.disk = disk

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        fd = os.open(self.disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (65536, 4096, 1):  # to the last byte
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError:
                    pass
        finally:
            os.close(fd)
        self.full = os.statvfs(self.disk).f_bavail == 0
        return "250 OK"


def test_a_disk_that_fills_during_delivery_keeps_the_fact_it_was_sent(tmp_path, chart_png, capsys):
    disk = tmp_path / "small"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    try:
        make_week(disk / "reports", chart_png)
        filling = Filling(disk)
        server = start(filling)
        settings = settings_for(tmp_path)
        try:
            from kpi_lib.cli import print_send
            from kpi_lib.mail import send_week

            assert print_send(send_week, settings, disk / "reports", smtp=smtp_for(server), retry=FAST) == 0
            assert filling.full  # the disk was full when the server confirmed the message
            assert [e["state"] for e in entries(disk / "reports")] == ["sent"]
            assert print_send(send_week, settings, disk / "reports", smtp=smtp_for(server), retry=FAST) == 0
        finally:
            server.stop()
        assert len(filling.envelopes) == 1 and "already sent" in capsys.readouterr().out
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_send_waits_for_the_weeks_lock(tmp_path, week, smtp_server):
    inbox, smtp = smtp_server
    out = tmp_path / "reports"
    codes = []
    with week_held(out, WEEK, "run", hold_for=60):
        sender = threading.Thread(target=lambda: codes.append(send(tmp_path, smtp)))
        sender.start()
        time.sleep(1.5)
        assert inbox.envelopes == [] and codes == []  # a run publishes the week: the send waits
    sender.join(60)
    assert codes == [0] and len(inbox.envelopes) == 1
    assert not list(out.rglob("*.lock"))


def test_a_week_never_built_is_named_before_any_smtp_setting(tmp_path, capsys):
    from kpi_lib.cli import main

    with pytest.raises(MailError, match=r"2026-W47 was never built.*run 'kpi-report run --week 2026-W47' first"):
        send(tmp_path, SmtpEnv(host=None, port=25))
    code = main(["send", "--week", WEEK, "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "reports")])
    err = capsys.readouterr().err
    assert code == 2 and "never built" in err and "SMTP" not in err


def test_the_email_names_its_run(tmp_path, week, smtp_server):
    inbox, smtp = smtp_server
    assert send(tmp_path, smtp) == 0
    msg = inbox.messages()[0]
    assert msg["X-KPI-Report-Run"] == RUN_ID and msg["X-KPI-Week"] == WEEK
    assert entries(tmp_path / "reports")[0]["run_id"] == RUN_ID
