"""Test helpers for email-invoice: finalized invoices made with SQL (as aggregate-month
would leave them) and a recording SMTP server (aiosmtpd, real sockets)."""
from __future__ import annotations

import email
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from email.message import EmailMessage
from email.policy import default as default_policy

import psycopg
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

HOSTILE_NAME = 'Zoë & Søn <script>alert("x")</script> Łódź'
# What the invoice from finalized_invoice() adds up to (EUR, tax 19 %).
SUBTOTAL, TAX, TOTAL = Decimal("235.15"), Decimal("44.68"), Decimal("279.83")

_TENANT = """
INSERT INTO openfaas_metering.tenants (namespace, display_name, email, locale)
VALUES (%s, %s, %s, %s)
ON CONFLICT (namespace) DO NOTHING
"""

_INVOICE = """
INSERT INTO openfaas_metering.invoices
       (namespace, period, period_start, period_end, billing_timezone, status, plan, currency,
        bill_to_name, bill_to_email, locale, subtotal, tax_rate, tax, total,
        number, number_year, number_seq, issued_at, inputs_sha256, lines_sha256)
VALUES (%(namespace)s, '2026-09', '2026-09-01T00:00:00Z', '2026-10-01T00:00:00Z', 'UTC',
        %(status)s, 'pro', 'EUR', %(name)s, %(email)s, %(locale)s, %(subtotal)s, 0.19,
        %(tax)s, %(total)s, %(number)s, %(year)s, %(seq)s, %(issued_at)s, 'in', 'lines')
RETURNING invoice_id::text
"""

_LINE = """
INSERT INTO openfaas_metering.invoice_lines
       (invoice_id, line_no, kind, meter, sku, spot, description, quantity, unit, unit_price,
        tiers, tier_mode, allowance, discount_percent, discount, amount, adjustment_period,
        price_from, price_to)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
        %s::timestamptz, %s::timestamptz)
"""

# base fee, a tiered usage line with an allowance, a flat usage line, a spot GPU
# line with its discount, and an adjustment for August: 235.15 before tax.
LINES = [
    (1, "base_fee", None, "", False, "Platform fee, plan pro", "1", "month", "49.00",
     None, None, "0", "0", "0", "49.00", None),
    (2, "usage", "gb_seconds", "", False, "Function usage", "1234567.890000", "GB-s", None,
     '[{"from": "0", "to": "400000", "unit_price": "0", "quantity": "400000", "amount": "0"},'
     ' {"from": "400000", "to": null, "unit_price": "0.0000148", "quantity": "834567.89",'
     ' "amount": "12.35"}]', "graduated", "400000", "0", "0", "12.35", None),
    (3, "usage", "invocations", "", False, "Invocations", "2500000", "invocations",
     "0.0000002", None, None, "0", "0", "0", "0.50", None),
    (4, "capacity", "gpu_hours", "NVIDIA-A10G", True, "GPU hours, NVIDIA-A10G (spot)", "720",
     "GPU-hours", "0.60", None, None, "0", "60", "259.20", "172.80", None),
    (5, "adjustment", "gb_seconds", "", False, "Late usage: function resize-images",
     "30000", "GB-s", "0.0000166667", None, None, "0", "0", "0", "0.50", "2026-08"),
]

_seq = iter(range(1, 10**6))


def finalized_invoice(database_url: str, *, namespace: str = "acme-shop",
                      name: str | None = HOSTILE_NAME, email: str | None = "billing@acme.example",
                      tenant_email: str | None = None, locale: str = "en",
                      status: str = "finalized") -> str:
    """A finalized (or draft) invoice for September 2026 with LINES; returns its id."""
    seq = next(_seq)
    with psycopg.connect(database_url) as conn:
        conn.execute(_TENANT, (namespace, name, tenant_email, locale))
        draft = status == "draft"
        (invoice_id,) = conn.execute(_INVOICE, {
            "namespace": namespace, "status": status, "name": name, "email": email,
            "locale": locale, "subtotal": SUBTOTAL, "tax": TAX, "total": TOTAL,
            "number": None if draft else f"INV-2026-{seq:06d}",
            "year": None if draft else 2026, "seq": None if draft else seq,
            "issued_at": "2026-10-01T01:00:05Z"}).fetchone()
        for line in LINES:
            adjusted = line[-1] is not None  # the month it belongs to is its price window
            window = (("2026-08-01T00:00:00Z", "2026-09-01T00:00:00Z") if adjusted else
                      ("2026-09-01T00:00:00Z", "2026-10-01T00:00:00Z"))
            conn.execute(_LINE, (invoice_id, *line, *window))
    return invoice_id


def invoice_row(database_url: str, invoice_id: str) -> dict:
    with psycopg.connect(database_url) as conn:
        cur = conn.execute("SELECT * FROM openfaas_metering.invoices WHERE invoice_id = %s",
                           (invoice_id,))
        return dict(zip([c.name for c in cur.description], cur.fetchone()))


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

    refuse: {address: "550 ..."} answered at RCPT; on_data: called with the
    message before the server answers 250 (a test may kill the sender there).
    """
    refuse: dict[str, str] = field(default_factory=dict)
    on_data: object = None
    received: list[Received] = field(default_factory=list)
    rcpt_attempts: int = 0
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rcpt_attempts += 1
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
