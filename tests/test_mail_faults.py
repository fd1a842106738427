"""SMTP faults on loopback: login, temporary and permanent replies, refused and dropped connections.

Temporary faults are retried with backoff (kept tiny here), permanent ones stop at once;
either way the error names the fix, the reports stay on disk, nothing is recorded as sent
and the password is never printed.
"""

from __future__ import annotations

import json
import logging
import socket
import threading

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from kpi_lib.cli import main
from kpi_lib.config import SmtpEnv
from kpi_lib.errors import ConfigError, MailError
from kpi_lib.log import logger, redact
from kpi_lib.mail import RetryPolicy, send_week
from test_mail import PASSWORD, WEEK, Inbox, chart_png, free_port, make_week, send, settings_for  # noqa: F401 (fixture)

ASCII_PASSWORD = "s3cret-P@ss-42"
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


class Authenticator:
    """Accepts one user and password; counts the attempts."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password, self.calls = user.encode(), password.encode(), 0

    def __call__(self, server, session, envelope, mechanism, auth_data):
        self.calls += 1
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (self.user, self.password)
        return AuthResult(success=ok, handled=False)


class Flaky(Inbox):
    """Answers DATA (or RCPT) with ``reply`` the first ``failures`` times, then accepts."""

    def __init__(self, reply: str, failures: int, at: str = "DATA", refuse: str | None = None) -> None:
        super().__init__()
        self.reply, self.failures, self.at, self.refuse, self.tries = reply, failures, at, refuse, 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == self.refuse:
            return "550 5.1.1 no such user"
        if self.at == "RCPT" and self._fail():
            return self.reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.at == "DATA" and self._fail():
            return self.reply
        return await super().handle_DATA(server, session, envelope)

    def _fail(self) -> bool:
        self.tries += 1
        return self.tries <= self.failures


def start(handler, **kwargs) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


@pytest.fixture
def week(tmp_path, chart_png):
    return make_week(tmp_path / "reports", chart_png)


@pytest.fixture
def log_lines():
    """Everything the package logger says during the test, at every level."""
    lines: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger.addHandler(handler)
    previous, logger.level = logger.level, logging.DEBUG
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(previous)


def assert_not_sent(tmp_path, week) -> None:
    """Nothing recorded, or a send the server refused: never "sent", never "started"."""
    ledger = tmp_path / "reports" / "sent.json"
    entries = json.loads(ledger.read_text(encoding="utf-8")).get(WEEK, []) if ledger.exists() else []
    assert [e["state"] for e in entries] in ([], ["failed"]), entries
    assert (week / "summary.json").is_file() and len(list(week.glob("*.html"))) == 6


def test_login_with_the_right_password_delivers(tmp_path, week):
    inbox, auth = Inbox(), Authenticator("kpi", ASCII_PASSWORD)
    server = start(inbox, auth_required=True, auth_require_tls=False, authenticator=auth)
    try:
        smtp = SmtpEnv(host="127.0.0.1", port=server.port, user="kpi", password=ASCII_PASSWORD, sender="kpi@example.ru")
        assert send(tmp_path, smtp) == 0
    finally:
        server.stop()
    assert auth.calls == 1 and len(inbox.envelopes) == 1
    assert redact(f"password {ASCII_PASSWORD}") == "password ***"


def test_wrong_password_stops_at_once_and_names_the_fix(tmp_path, week, log_lines):
    inbox, auth = Inbox(), Authenticator("kpi", "another-password")
    server = start(inbox, auth_required=True, auth_require_tls=False, authenticator=auth)
    try:
        smtp = SmtpEnv(host="127.0.0.1", port=server.port, user="kpi", password=ASCII_PASSWORD, sender="kpi@example.ru")
        with pytest.raises(MailError) as caught:
            send(tmp_path, smtp)
    finally:
        server.stop()
    message = str(caught.value)
    assert "refused the login of SMTP_USER='kpi' (535)" in message and "check SMTP_USER and SMTP_PASSWORD" in message
    assert auth.calls == 2 and inbox.envelopes == []  # smtplib tries PLAIN, then LOGIN, on one connection
    assert not any("retrying" in line for line in log_lines)
    assert ASCII_PASSWORD not in message + repr(caught.value) + "\n".join(log_lines)
    error = caught.value  # no chained traceback that could carry the password
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    assert_not_sent(tmp_path, week)


def test_cli_never_prints_the_password(tmp_path, week, monkeypatch, capsys):
    auth = Authenticator("kpi", "another-password")
    server = start(Inbox(), auth_required=True, auth_require_tls=False, authenticator=auth)
    params = tmp_path / "params.yaml"
    params.write_text("email:\n  to: [head@example.ru]\n", encoding="utf-8")
    for name, value in {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(server.port), "SMTP_USER": "kpi",
                        "SMTP_PASSWORD": ASCII_PASSWORD, "SMTP_FROM": "KPI <kpi@example.ru>"}.items():
        monkeypatch.setenv(name, value)
    try:
        code = main(["send", "--week", WEEK, "--params", str(params), "--data-dir", str(tmp_path / "data"),
                     "--out", str(tmp_path / "reports"), "-v"])
    finally:
        server.stop()
    out, err = capsys.readouterr()
    assert code == 2
    assert "kpi-report send: error: email not sent" in err and "SMTP_PASSWORD" in err
    assert ASCII_PASSWORD not in out + err


def test_non_ascii_password_is_refused_before_connecting(tmp_path, week):
    smtp = SmtpEnv(host="127.0.0.1", port=free_port(), user="kpi", password=PASSWORD, sender="kpi@example.ru")
    with pytest.raises(ConfigError, match="non-ASCII") as caught:
        send(tmp_path, smtp)
    assert PASSWORD not in str(caught.value)


def test_temporary_reply_is_retried_then_delivered_once(tmp_path, week, log_lines):
    handler = Flaky("421 4.3.2 Service shutting down, try later", failures=2)
    server = start(handler)
    try:
        assert send(tmp_path, SmtpEnv(host="127.0.0.1", port=server.port, sender="kpi@example.ru")) == 0
    finally:
        server.stop()
    assert handler.tries == 3 and len(handler.envelopes) == 1
    assert sum("retrying in" in line for line in log_lines) == 2
    assert len(json.loads((tmp_path / "reports" / "sent.json").read_text())[WEEK]) == 1


def test_temporary_replies_give_up_after_the_attempts(tmp_path, week):
    handler = Flaky("451 4.7.1 Greylisted, try again later", failures=99, at="RCPT")
    server = start(handler)
    try:
        with pytest.raises(MailError, match=r"after 3 attempts: SMTP server 127.0.0.1:\d+ refused every recipient"):
            send(tmp_path, SmtpEnv(host="127.0.0.1", port=server.port, sender="kpi@example.ru"))
    finally:
        server.stop()
    assert handler.tries == 3 * 2  # each attempt offers both recipients
    assert_not_sent(tmp_path, week)


def test_permanent_reply_is_not_retried(tmp_path, week):
    handler = Flaky("554 5.6.0 Message rejected as spam", failures=99)
    server = start(handler)
    try:
        with pytest.raises(MailError, match=r"answered 554 5.6.0 Message rejected as spam; the reports stay on disk"):
            send(tmp_path, SmtpEnv(host="127.0.0.1", port=server.port, sender="kpi@example.ru"))
    finally:
        server.stop()
    assert handler.tries == 1
    assert_not_sent(tmp_path, week)


def test_one_refused_recipient_is_recorded_and_the_others_receive_it(tmp_path, week):
    handler = Flaky("", failures=0, refuse="sales-lead@example.ru")
    server = start(handler)
    try:
        assert send(tmp_path, SmtpEnv(host="127.0.0.1", port=server.port, sender="kpi@example.ru")) == 0
    finally:
        server.stop()
    assert handler.envelopes[0].rcpt_tos == ["head@example.ru"]
    record = json.loads((tmp_path / "reports" / "sent.json").read_text())[WEEK][0]
    assert record["refused"] == {"sales-lead@example.ru": 550}


def test_refused_connection_is_retried_then_explained(tmp_path, week, log_lines):
    port = free_port()  # nothing listens there
    with pytest.raises(MailError, match=rf"after 3 attempts: SMTP server 127.0.0.1:{port}: ConnectionRefusedError"):
        send(tmp_path, SmtpEnv(host="127.0.0.1", port=port, sender="kpi@example.ru"))
    assert sum("retrying in" in line for line in log_lines) == 2
    assert_not_sent(tmp_path, week)


def test_dropped_connection_is_retried_then_explained(tmp_path, week):
    accepted, stop = [], threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)

    def accept_and_drop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted.append(conn)
            conn.close()

    thread = threading.Thread(target=accept_and_drop, daemon=True)
    thread.start()
    try:
        with pytest.raises(MailError, match="after 3 attempts: .*SMTPServerDisconnected"):
            send(tmp_path, SmtpEnv(host="127.0.0.1", port=listener.getsockname()[1], sender="kpi@example.ru"))
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert len(accepted) == 3
    assert_not_sent(tmp_path, week)


def test_retry_policy_backs_off_exponentially(tmp_path, week, log_lines):
    smtp = SmtpEnv(host="127.0.0.1", port=free_port(), sender="kpi@example.ru")
    with pytest.raises(MailError, match="after 4 attempts"):
        send_week(settings_for(tmp_path), tmp_path / "reports", smtp=smtp, retry=RetryPolicy(4, base_delay=0.01))
    delays = [line.rsplit("retrying in ", 1)[1] for line in log_lines if "retrying in" in line]
    assert delays == ["0.01 s", "0.02 s", "0.04 s"]
