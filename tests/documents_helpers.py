"""Plain values the document tests share: one issuer, one invoice with every feature
(locale, escaping, tiers), a line of each stored description form, and the namespaces
of the CII e-invoice XML."""
from __future__ import annotations

from decimal import Decimal as D

from chargeback.billing.invoicing import Line

# the issuer and the invoice (devstack's, which scripts/bench/pdf_engines renders too)
from devstack.sample_documents import INVOICE, ISSUER

__all__ = ["INVOICE", "ISSUER", "NS", "STORED", "line"]


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
