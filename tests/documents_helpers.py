"""Plain values the document tests share: one issuer, one invoice with every feature
(locale, escaping, tiers), a line of each stored description form, and the namespaces
of the CII e-invoice XML."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D

from chargeback.billing.invoicing import Line
from chargeback.documents.model import Invoice, Issuer

ISSUER = Issuer("Example Functions Ltd", ("1 Cloud Street", "10115 Berlin"), "DE123456789",
                "accounts@example.com")
INVOICE = Invoice(
    invoice_id="0b6c2d1e-7a4f-4c3e-9d2b-5f6a7b8c9d0e", number="INV-2026-000042",
    namespace="acme-shop", period="2026-09",
    period_start=datetime(2026, 9, 1, tzinfo=timezone.utc),
    period_end=datetime(2026, 10, 1, tzinfo=timezone.utc), billing_timezone="UTC",
    issued_at=datetime(2026, 10, 1, 1, 0, 5, tzinfo=timezone.utc), currency="EUR",
    bill_to_name="Müller & Söhne", bill_to_email="billing@acme.example", locale="de_DE",
    subtotal=D("1234.50"), tax_rate=D("0.19"), tax=D("234.56"), total=D("1469.06"),
    lines=(
        Line("usage", "=HYPERLINK(\"http://evil\")", D("1000.000000"), "GB-s",
             D("1185.50"), unit_price=D("1.1855"), line_no=2),
        Line("usage", "Function usage", D("500000"), "GB-s", D("49.00"),
             tiers=({"from": "0", "to": "400000", "unit_price": "0", "quantity": "400000",
                     "amount": "0"},
                    {"from": "400000", "to": None, "unit_price": "0.00049",
                     "quantity": "100000", "amount": "49.00"}),
             tier_mode="graduated", allowance=D(400000), line_no=1),
    ))


def line(no, kind, description, meter=None, **fields):
    return Line(kind, description, D(1), fields.pop("unit", "month"), D("10.00"),
                meter=meter, **fields, line_no=no)


# one line of each form of description billing.invoicing writes (its _describe and
# _fixed_lines), as stored, 10.00 each
STORED = (
    line(1, "usage", "Function compute", "gb_seconds", unit="GB-s"),
    line(2, "capacity", "GPUs nvidia-a10g (spot)", "gpu_hours", unit="GPU-hours",
         sku="nvidia-a10g", spot=True),
    line(3, "usage", "Function invocations, 2026-09-01 00:00 to 2026-09-16 00:00 UTC",
         "invocations", unit="invocations"),
    line(4, "base_fee", "Base fee, plan pro, 12 of 30 days", billed_days=12, period_days=30),
    line(5, "commitment", "Minimum commitment 120.00 EUR, 12 of 30 days: top-up",
         billed_days=12, period_days=30),
)

NS = {"rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
      "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
      "qdt": "urn:un:unece:uncefact:data:standard:QualifiedDataType:100",
      "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}
