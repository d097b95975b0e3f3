"""The SMTP adapter: send one message with smtplib, and say what a failure means.

SMTP_URL (or the smtp-url secret) names the server:
smtp://host[:25], smtps://host[:465] (TLS from the start) or
smtp+starttls://host[:587] (STARTTLS, required), with optional user:password
(percent-encoded) and ?timeout=SECONDS (else SMTP_TIMEOUT_SECONDS). TLS
verifies the server's certificate against the system CAs, or SMTP_CA_FILE.

Failures come out as one of three exceptions, which the caller maps:
SmtpTransient (refused, timeout, dropped connection, any 4xx: retry later),
SmtpUncertain (the connection failed after the message was transmitted: it
may have been accepted, so not again before the claim goes stale),
SmtpRejected (5xx for the recipient or the message: do not retry) and
SmtpMisconfigured (authentication, sender, TLS: the operator must act).
"""
from __future__ import annotations

import copy
import io
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.message import Message
from urllib.parse import parse_qs, unquote, urlsplit

from chargeback.core.settings import ConfigError

_DEFAULT_PORTS = {"smtp": 25, "smtps": 465, "smtp+starttls": 587}


class SmtpTransient(Exception):
    """Try again later; nothing was accepted for the customer (as far as we know)."""


    def __init__(self, reason: str, reached: bool = True):
        super().__init__(reason)
        self.reached = reached  # False: the server was not reached at all


class SmtpUncertain(Exception):
    """The connection failed after the message was transmitted and before the server
    answered it: it may have been accepted. Do not send it again soon."""


class SmtpRejected(Exception):
    """The server refused the recipient or the message for good (5xx)."""


class SmtpMisconfigured(Exception):
    """Our side is wrong (credentials, sender address, TLS); retrying will not help."""


@dataclass(frozen=True)
class SmtpServer:
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None
    timeout_s: float

    def __str__(self) -> str:  # never shows the password
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}"


def parse_url(url: str | None, default_timeout_s: float) -> SmtpServer:
    """The server an SMTP URL names; ConfigError (naming SMTP_URL) when unusable."""
    if not url:
        raise ConfigError("no SMTP server configured: create the smtp-url secret or set SMTP_URL")
    parts = urlsplit(url.strip())
    if parts.scheme not in _DEFAULT_PORTS:
        raise ConfigError(f"SMTP_URL: scheme {parts.scheme!r} is not one of "
                          "smtp://, smtps://, smtp+starttls://")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ConfigError("SMTP_URL: the port is not a number") from None
    if not parts.hostname:
        raise ConfigError("SMTP_URL: no host")
    timeout_s = default_timeout_s
    raw = parse_qs(parts.query).get("timeout")
    if raw:
        try:
            timeout_s = float(raw[-1])
        except ValueError:
            raise ConfigError(f"SMTP_URL: timeout={raw[-1]!r} is not a number of seconds") from None
    return SmtpServer(parts.scheme, parts.hostname, port,
                      unquote(parts.username) if parts.username else None,
                      unquote(parts.password) if parts.password else None, timeout_s)


def _tls(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def _connect(server: SmtpServer, ca_file: str | None) -> smtplib.SMTP:
    if server.scheme == "smtps":
        return smtplib.SMTP_SSL(server.host, server.port, timeout=server.timeout_s,
                                context=_tls(ca_file))
    client = smtplib.SMTP(server.host, server.port, timeout=server.timeout_s)
    if server.scheme == "smtp+starttls":
        client.starttls(context=_tls(ca_file))
    return client


def _kind(code: int, reason: str) -> Exception:
    return SmtpTransient(reason) if 400 <= code < 500 else SmtpRejected(reason)


def _text(detail) -> str:
    return (detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
            ).replace("\r", " ").replace("\n", " ").strip()


def send(server: SmtpServer, msg: Message, sender: str, recipients: tuple[str, ...],
         ca_file: str | None = None) -> dict[str, str]:
    """Send `msg` to `recipients` in one SMTP transaction.

    Returns the refusals of recipients after the first (the archive Bcc) that
    the server refused while it accepted the customer, as {address: reason}.

    Once the server has answered 250 to the message, the mail is sent: the QUIT
    that follows (a 421, a 554, a dropped connection) cannot change that, so
    its errors are ignored. A failure after DATA began and before its answer
    (a dropped connection, a timeout) raises SmtpUncertain: the server may
    have stored the message.
    """
    customer = recipients[0]
    client = None
    data_began = False
    try:
        client = _connect(server, ca_file)
        if server.username:
            client.login(server.username, server.password or "")
        refused = _transaction(client, msg, sender, recipients, customer)
        data_began = True
        client.data(_wire_bytes(msg, _international(sender, recipients)))  # raises unless 250
    except smtplib.SMTPRecipientsRefused as exc:
        code, detail = exc.recipients.get(customer, (550, b"refused"))
        raise _kind(code, f"recipient {customer} refused: {code} {_text(detail)}") from None
    except smtplib.SMTPAuthenticationError as exc:
        raise SmtpMisconfigured(f"SMTP authentication failed at {server}: "
                                f"{exc.smtp_code} {_text(exc.smtp_error)}") from None
    except smtplib.SMTPSenderRefused as exc:
        if 400 <= exc.smtp_code < 500:
            raise SmtpTransient(f"sender refused: {exc.smtp_code} {_text(exc.smtp_error)}") from None
        raise SmtpMisconfigured(f"sender {sender} refused by {server}: "
                                f"{exc.smtp_code} {_text(exc.smtp_error)}") from None
    except smtplib.SMTPNotSupportedError as exc:
        raise SmtpMisconfigured(f"{server}: {_text(exc)}") from None
    except ssl.SSLCertVerificationError as exc:
        raise SmtpMisconfigured(f"{server}: TLS certificate not trusted: {_text(exc)}") from None
    except smtplib.SMTPResponseException as exc:  # DATA refused, or any other reply
        raise _kind(exc.smtp_code, f"message refused: {exc.smtp_code} "
                                   f"{_text(exc.smtp_error)}") from None
    except (smtplib.SMTPException, OSError, socket.timeout) as exc:
        reason = f"{server}: {_text(exc) or type(exc).__name__}"
        if data_began:
            raise SmtpUncertain(f"{reason} after the message was transmitted, before the "
                                "server answered it") from None
        raise SmtpTransient(reason, reached=client is not None) from None
    finally:
        if client is not None:
            _leave(client)
    return {address: f"{code} {_text(detail)}" for address, (code, detail) in refused.items()}


def _transaction(client: smtplib.SMTP, msg: Message, sender: str,
                 recipients: tuple[str, ...], customer: str) -> dict:
    """EHLO, MAIL FROM and RCPT TO (the steps smtplib's sendmail takes, one at a time, so
    that the caller knows when DATA begins); the refused archive recipients."""
    client.ehlo_or_helo_if_needed()
    options = ["SMTPUTF8", "BODY=8BITMIME"] if _international(sender, recipients) else []
    if options and not client.has_extn("smtputf8"):
        raise smtplib.SMTPNotSupportedError(
            "a non-ASCII address needs SMTPUTF8, which the server does not offer")
    code, reply = client.mail(sender, options)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    refused = {}
    for address in recipients:
        code, reply = client.rcpt(address)
        if code not in (250, 251):
            if address == customer:
                raise smtplib.SMTPRecipientsRefused({address: (code, reply)})
            refused[address] = (code, reply)
    return refused


def _international(sender: str, recipients: tuple[str, ...]) -> bool:
    return not all(a.isascii() for a in (sender, *recipients))


def _wire_bytes(msg: Message, international: bool) -> bytes:
    """The message as smtplib's send_message transmits it: Bcc left out, CRLF line ends."""
    wire = copy.copy(msg)  # deleting a header gives the copy its own header list
    del wire["Bcc"]
    del wire["Resent-Bcc"]
    out = io.BytesIO()
    policy = msg.policy.clone(utf8=True) if international else msg.policy
    BytesGenerator(out, policy=policy).flatten(wire, linesep="\r\n")
    return out.getvalue()


def _leave(client: smtplib.SMTP) -> None:
    """QUIT and close; nothing the server says now changes what it accepted."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        client.close()
