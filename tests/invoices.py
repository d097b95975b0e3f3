"""Test helpers for email-invoice: finalized invoices made with SQL (as aggregate-month
would leave them) and a recording SMTP server (aiosmtpd, real sockets)."""
from __future__ import annotations

import dataclasses
import email
import json
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy

import psycopg
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from devstack.gateway import RetryPolicy
from devstack.sample_invoices import (HOSTILE_NAME, SUBTOTAL, TAX, TOTAL,  # noqa: F401
                                      finalized_invoice)


def invoice_row(database_url: str, invoice_id: str) -> dict:
    with psycopg.connect(database_url) as conn:
        cur = conn.execute("SELECT * FROM openfaas_metering.invoices WHERE invoice_id = %s",
                           (invoice_id,))
        return dict(zip([c.name for c in cur.description], cur.fetchone()))


def mail_row(database_url: str, subject_id: str, kind: str = "invoice") -> dict | None:
    """The mail outbox's row of one mail (None: never asked for)."""
    with psycopg.connect(database_url) as conn:
        cur = conn.execute("SELECT * FROM openfaas_metering.mail_outbox"
                           " WHERE kind = %s AND subject_id = %s", (kind, str(subject_id)))
        row = cur.fetchone()
        return dict(zip([c.name for c in cur.description], row)) if row else None


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=default_policy)


@dataclass
class RecordingSmtp:
    """The handler of a real aiosmtpd server: records every message it accepts.

    refuse: {address: "550 ..."} answered at RCPT; on_rcpt: called with the address
    before the server answers it; on_data: called with the message before the
    server answers 250 (a test may kill the sender at either).
    """
    refuse: dict[str, str] = field(default_factory=dict)
    on_rcpt: object = None
    on_data: object = None
    received: list[Received] = field(default_factory=list)
    rcpt_attempts: int = 0
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rcpt_attempts += 1
        if self.on_rcpt is not None:
            await server.loop.run_in_executor(None, self.on_rcpt, address)
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        record = Received(envelope.mail_from, list(envelope.rcpt_tos),
                          envelope.original_content or envelope.content)
        if self.on_data is not None:
            await server.loop.run_in_executor(None, self.on_data, record)
        with self.lock:
            self.received.append(record)
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (auth_data.login, auth_data.password) == (b"billing", b"s3cret p@ss")
        if ok:
            self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


def start_smtp(handler: RecordingSmtp, port: int, **smtp_options) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=port, **smtp_options)
    controller.start()
    return controller


MAIL_ENV = {"MAIL_FROM": "Example Functions Billing <billing@example.com>",
            "MAIL_REPLY_TO": "accounts@example.com", "ISSUER_NAME": "Example Functions Ltd",
            "ISSUER_ADDRESS": "1 Cloud Street\\n10115 Berlin", "ISSUER_TAX_ID": "DE123456789",
            "SMTP_TIMEOUT_SECONDS": "5",
            # a failed mail is tried again after ~0.2 s, 0.4 s, ... (60 s in production)
            "MAIL_RETRY_BASE_SECONDS": "0.2"}


def email_invoice_behind_gateway(local_runtime, product_stack, database_url: str, smtp_url: str,
                                 *, attempts: int, max_wait_s: float):
    """email-invoice alone behind the local gateway, its async queue retrying quickly."""
    stack = dataclasses.replace(product_stack, functions={
        "email-invoice": product_stack.functions["email-invoice"]})
    return local_runtime(stack, cron=False, retry=RetryPolicy(attempts=attempts, min_wait_s=0.2,
                                                              max_wait_s=max_wait_s),
                         function_env={"DATABASE_URL": database_url, "SMTP_URL": smtp_url,
                                       **MAIL_ENV})


def recorded(directory, expected, timeout_s=20):
    """The invoice ids a recording stand-in saw, once `expected` arrived (or timeout_s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(list(directory.iterdir())) < expected:
        time.sleep(0.05)
    return sorted(json.loads(p.read_bytes())["invoice_id"] for p in directory.iterdir())
