"""chargeback.mail.smtp against real aiosmtpd servers: plain, STARTTLS with AUTH, SMTPS,
with a throwaway CA (trustme); and what each kind of failure means."""
from __future__ import annotations

import ssl
from email.message import EmailMessage

import pytest
import trustme
from devstack.pg import free_port

from chargeback.core.settings import ConfigError
from chargeback.mail import smtp as mailer

from .invoices import RecordingSmtp, start_smtp


def message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "billing@example.com", "c@acme.example", "hi"
    msg.set_content("hello")
    return msg


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def ca_file(ca, tmp_path):
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_server(ca):
    """start(**smtp_options) -> (handler, port) with a certificate for 127.0.0.1."""
    started = []

    def start(implicit: bool = False, **options):
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_context)
        handler = RecordingSmtp()
        if implicit:  # aiosmtpd counts only STARTTLS as TLS when it offers AUTH
            options.update(ssl_context=server_context, auth_require_tls=False)
        else:
            options["tls_context"] = server_context
        controller = start_smtp(handler, free_port(), authenticator=handler.authenticate,
                                **options)
        started.append(controller)
        return handler, controller.port

    yield start
    for controller in started:
        controller.stop()


def test_smtp_urls_name_scheme_port_credentials_and_timeout():
    server = mailer.parse_url("smtp+starttls://billing:s3cret%20p%40ss@mail.example:2587"
                              "?timeout=7", 20)
    assert (server.scheme, server.host, server.port, server.username, server.password,
            server.timeout_s) == ("smtp+starttls", "mail.example", 2587, "billing",
                                  "s3cret p@ss", 7.0)
    assert "s3cret" not in str(server)
    assert mailer.parse_url("smtps://mail.example", 20).port == 465
    assert mailer.parse_url("smtp://mail.example", 20).port == 25
    assert mailer.parse_url("smtp+starttls://mail.example", 20).port == 587


@pytest.mark.parametrize("url, reason", [
    (None, "no SMTP server configured"), ("http://mail.example", "scheme 'http'"),
    ("smtp://", "no host"), ("smtp://h?timeout=soon", "timeout='soon'")])
def test_an_unusable_smtp_url_is_a_config_error_naming_it(url, reason):
    with pytest.raises(ConfigError, match=reason):
        mailer.parse_url(url, 20)


def test_starttls_with_auth_against_a_server_with_a_generated_certificate(tls_server, ca_file):
    handler, port = tls_server(require_starttls=True, auth_require_tls=True)
    server = mailer.parse_url(f"smtp+starttls://billing:s3cret%20p%40ss@127.0.0.1:{port}", 5)
    assert mailer.send(server, message(), "billing@example.com", ("c@acme.example",),
                       ca_file) == {}
    assert handler.logins == [(b"billing", b"s3cret p@ss")]
    assert [m.rcpt_tos for m in handler.received] == [["c@acme.example"]]


def test_smtps_with_auth(tls_server, ca_file):
    handler, port = tls_server(implicit=True)
    server = mailer.parse_url(f"smtps://billing:s3cret%20p%40ss@127.0.0.1:{port}", 5)
    mailer.send(server, message(), "billing@example.com", ("c@acme.example",), ca_file)
    assert len(handler.received) == 1 and handler.logins


def test_a_wrong_password_or_an_untrusted_certificate_is_our_misconfiguration(
        tls_server, ca_file):
    handler, port = tls_server(require_starttls=True)
    wrong = mailer.parse_url(f"smtp+starttls://billing:guess@127.0.0.1:{port}", 5)
    with pytest.raises(mailer.SmtpMisconfigured, match="authentication failed"):
        mailer.send(wrong, message(), "billing@example.com", ("c@acme.example",), ca_file)
    assert handler.received == []
    handler, port = tls_server(require_starttls=True)
    right = mailer.parse_url(f"smtp+starttls://billing:s3cret%20p%40ss@127.0.0.1:{port}", 5)
    with pytest.raises(mailer.SmtpMisconfigured, match="certificate not trusted"):
        mailer.send(right, message(), "billing@example.com", ("c@acme.example",))  # system CAs
    assert handler.received == []


def test_refusals_are_permanent_for_5xx_and_transient_for_4xx_and_no_server():
    handler = RecordingSmtp(refuse={"gone@acme.example": "550 5.1.1 no such user",
                                    "busy@acme.example": "452 4.2.2 mailbox full"})
    controller = start_smtp(handler, free_port())
    try:
        server = mailer.parse_url(f"smtp://127.0.0.1:{controller.port}", 5)
        with pytest.raises(mailer.SmtpRejected, match="550 5.1.1 no such user"):
            mailer.send(server, message(), "b@example.com", ("gone@acme.example",))
        with pytest.raises(mailer.SmtpTransient, match="452"):
            mailer.send(server, message(), "b@example.com", ("busy@acme.example",))
        # the archive copy refused, the customer's accepted: sent, and the refusal reported
        refused = mailer.send(server, message(), "b@example.com",
                              ("c@acme.example", "gone@acme.example"))
        assert list(refused) == ["gone@acme.example"] and len(handler.received) == 1
    finally:
        controller.stop()
    with pytest.raises(mailer.SmtpTransient, match="refused"):
        mailer.send(server, message(), "b@example.com", ("c@acme.example",))
