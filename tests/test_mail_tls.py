"""Encrypted SMTP on loopback: STARTTLS (587-style) and implicit TLS (465-style).

The server certificate is a throwaway self-signed one for 127.0.0.1 made with openssl; the
client trusts it through ``SSL_CERT_FILE``, the standard OpenSSL variable, exactly as it
would trust a real CA, with hostname checks on.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest
from aiosmtpd.controller import Controller

from kpi_lib.config import SmtpEnv
from kpi_lib.errors import MailError
from test_mail import Inbox, chart_png, free_port, make_week, send  # noqa: F401 (fixture)
from test_mail_faults import ASCII_PASSWORD, Authenticator

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return folder / "cert.pem", folder / "key.pem"


def server_context(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    return context


def test_starttls_then_login_delivers(tmp_path, chart_png, certificate, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    make_week(tmp_path / "reports", chart_png)
    inbox, auth = Inbox(), Authenticator("kpi", ASCII_PASSWORD)
    server = Controller(inbox, hostname="127.0.0.1", port=free_port(), tls_context=server_context(certificate),
                        require_starttls=True, auth_required=True, authenticator=auth)
    server.start()
    try:
        smtp = SmtpEnv(host="127.0.0.1", port=server.port, user="kpi", password=ASCII_PASSWORD, starttls=True,
                       sender="kpi@example.ru")
        assert send(tmp_path, smtp) == 0
    finally:
        server.stop()
    assert len(inbox.envelopes) == 1 and auth.calls == 1  # the login happened over TLS, at the first try


def test_implicit_tls_delivers(tmp_path, chart_png, certificate, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    make_week(tmp_path / "reports", chart_png)
    inbox = Inbox()
    server = Controller(inbox, hostname="127.0.0.1", port=free_port(), ssl_context=server_context(certificate))
    server.start()
    try:
        assert send(tmp_path, SmtpEnv(host="127.0.0.1", port=server.port, ssl=True, sender="kpi@example.ru")) == 0
    finally:
        server.stop()
    assert len(inbox.envelopes) == 1


def test_untrusted_certificate_stops_at_once(tmp_path, chart_png, certificate, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # the system CAs do not know this certificate
    make_week(tmp_path / "reports", chart_png)
    inbox = Inbox()
    server = Controller(inbox, hostname="127.0.0.1", port=free_port(), tls_context=server_context(certificate))
    server.start()
    try:
        with pytest.raises(MailError, match=r"email not sent: TLS with SMTP server 127.0.0.1:\d+ failed .*"
                                            r"CERTIFICATE_VERIFY_FAILED.*check SMTP_SSL"):
            send(tmp_path, SmtpEnv(host="127.0.0.1", port=server.port, starttls=True, sender="kpi@example.ru"))
    finally:
        server.stop()
    assert inbox.envelopes == []
