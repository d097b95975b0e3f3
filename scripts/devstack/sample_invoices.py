"""Finalized invoices made with SQL, as aggregate-month leaves them: several line kinds,
a tiered line with an allowance, a spot discount, an adjustment for the month before,
tax, and by default a tenant name that is both non-ASCII and HTML-hostile.
Used by the tests and by scripts/bench/email."""
from __future__ import annotations

from decimal import Decimal

import psycopg

HOSTILE_NAME = 'Zoë & Søn <script>alert("x")</script> Łódź'
# The supplier and the legal fields aggregate-month freezes on a finalized invoice.
ISSUER = {"issuer": "Example Functions Ltd", "issuer_address": "1 Cloud Street\n10115 Berlin",
          "issuer_tax_id": "DE123456789",
          "payment": "IBAN DE89 3704 0044 0532 0130 00\nBIC COBADEFFXXX",
          "address": "Hauptstraße 5\n80331 München\nGermany", "tax_id": "DE999999999",
          "terms": 14, "due": "2026-10-15"}
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
        number, number_year, number_seq, issued_at, inputs_sha256, lines_sha256,
        bill_to_address, bill_to_tax_id, issuer_name, issuer_address, issuer_tax_id,
        issuer_payment_details, payment_terms_days, due_date)
VALUES (%(namespace)s, '2026-09', '2026-09-01T00:00:00Z', '2026-10-01T00:00:00Z', 'UTC',
        %(status)s, 'pro', 'EUR', %(name)s, %(email)s, %(locale)s, %(subtotal)s, 0.19,
        %(tax)s, %(total)s, %(number)s, %(year)s, %(seq)s, %(issued_at)s, 'in', 'lines',
        %(address)s, %(tax_id)s, %(issuer)s, %(issuer_address)s, %(issuer_tax_id)s,
        %(payment)s, %(terms)s, %(due)s)
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


def insert_invoice(conn: psycopg.Connection, *, namespace: str = "acme-shop",
                   name: str | None = HOSTILE_NAME, email: str | None = "billing@acme.example",
                   tenant_email: str | None = None, locale: str = "en",
                   status: str = "finalized") -> str:
    """A finalized (or draft) invoice for September 2026 with LINES; returns its id."""
    seq = next(_seq)
    conn.execute(_TENANT, (namespace, name, tenant_email, locale))
    draft = status == "draft"
    (invoice_id,) = conn.execute(_INVOICE, {
        "namespace": namespace, "status": status, "name": name, "email": email,
        "locale": locale, "subtotal": SUBTOTAL, "tax": TAX, "total": TOTAL,
        "number": None if draft else f"INV-2026-{seq:06d}",
        "year": None if draft else 2026, "seq": None if draft else seq,
        "issued_at": "2026-10-01T01:00:05Z",
        **(dict.fromkeys(ISSUER) if draft else ISSUER)}).fetchone()
    for line in LINES:
        adjusted = line[-1] is not None  # the month it belongs to is its price window
        window = (("2026-08-01T00:00:00Z", "2026-09-01T00:00:00Z") if adjusted else
                  ("2026-09-01T00:00:00Z", "2026-10-01T00:00:00Z"))
        conn.execute(_LINE, (invoice_id, *line, *window))
    return invoice_id


def finalized_invoice(database_url: str, **options) -> str:
    """insert_invoice() in its own connection (committed)."""
    with psycopg.connect(database_url) as conn:
        return insert_invoice(conn, **options)
