"""An invoice as a document: its plain values, formatted for the tenant's locale,
rendered as HTML, plain text and the lines CSV. Pure: no database, no SMTP.

`present()` turns an Invoice into strings once (babel formats money, numbers and
dates for the invoice's locale); every rendering reads that one presentation, so
HTML, text and PDF (invoice_pdf) always say the same thing. The same Invoice
renders to the same bytes every time: nothing reads the clock, lines are in
line_no order, tiers in their stored order.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_interval, format_skeleton
from babel.numbers import format_currency, format_decimal, format_percent
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEXT_WIDTH = 72
# Quantities are exact (GB-s to the nanosecond); a document shows them to 3 decimals,
# the lines CSV carries every digit.
SHOWN_QUANTITY = Decimal("0.001")


@dataclass(frozen=True)
class Tier:
    from_quantity: Decimal
    to_quantity: Decimal | None  # None: no upper bound
    unit_price: Decimal
    quantity: Decimal
    amount: Decimal


@dataclass(frozen=True)
class InvoiceLine:
    line_no: int
    kind: str  # usage, capacity, base_fee, commitment, adjustment
    description: str
    quantity: Decimal
    unit: str
    amount: Decimal
    meter: str | None = None
    sku: str = ""
    spot: bool = False
    unit_price: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    tier_mode: str | None = None  # graduated, volume
    allowance: Decimal = Decimal(0)
    discount_percent: Decimal = Decimal(0)
    discount: Decimal = Decimal(0)
    adjustment_period: str | None = None  # YYYY-MM it belongs to


@dataclass(frozen=True)
class Issuer:
    name: str
    address: tuple[str, ...] = ()
    tax_id: str | None = None
    email: str | None = None  # where customers write back (Reply-To, else From)


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    number: str
    namespace: str
    period: str  # YYYY-MM
    period_start: datetime
    period_end: datetime  # exclusive
    billing_timezone: str
    issued_at: datetime
    currency: str
    bill_to_name: str
    bill_to_email: str | None
    locale: str
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal
    lines: tuple[InvoiceLine, ...] = field(default=())
    plan: str | None = None
    document_kind: str = "invoice"  # invoice, supplementary, credit_note
    corrects: str | None = None     # the number of the invoice a correction corrects


HEADINGS = {"invoice": "Invoice", "supplementary": "Supplementary invoice",
            "credit_note": "Credit note"}


def parse_tiers(raw: Any) -> tuple[Tier, ...]:
    """The tiers jsonb of an invoice line ([{"from","to","unit_price","quantity","amount"}])."""
    if not raw:
        return ()
    items = json.loads(raw) if isinstance(raw, str) else raw

    def number(value):
        return None if value is None else Decimal(str(value))

    return tuple(Tier(number(t.get("from")) or Decimal(0), number(t.get("to")),
                      number(t.get("unit_price")) or Decimal(0),
                      number(t.get("quantity")) or Decimal(0),
                      number(t.get("amount")) or Decimal(0)) for t in items)


def resolve_locale(wanted: str | None, default: str = "en") -> Locale:
    """The babel Locale for `wanted` (en, de_DE, pt-BR, ...); unknown or empty gives `default`."""
    for candidate in (wanted, default, "en"):
        if candidate:
            try:
                return Locale.parse(candidate.strip().replace("-", "_"))
            except (UnknownLocaleError, ValueError, TypeError):
                continue
    raise AssertionError("babel always knows en")


def _plain(value: Decimal) -> Decimal:
    """NUMERIC as stored may carry trailing zeros (400000.000000): show 400000."""
    value = value.normalize()
    return value.quantize(Decimal(1)) if value.as_tuple().exponent > 0 else value


def _month(period: str) -> date:
    year, month = period.split("-")
    return date(int(year), int(month), 1)


class _Formats:
    """Money, numbers and dates for one invoice's locale and currency."""

    def __init__(self, locale: Locale, currency: str, timezone: str):
        self.locale, self.currency = locale, currency
        self.tz = ZoneInfo(timezone)

    def money(self, value: Decimal) -> str:
        return format_currency(value, self.currency, locale=self.locale)

    def price(self, value: Decimal) -> str:
        # unit prices keep every digit they have (0.0000166667 per GB-s)
        return format_currency(_plain(value), self.currency, locale=self.locale,
                               decimal_quantization=False)

    def number(self, value: Decimal) -> str:
        if value.as_tuple().exponent < SHOWN_QUANTITY.as_tuple().exponent:
            value = value.quantize(SHOWN_QUANTITY, rounding=ROUND_HALF_EVEN)
        return format_decimal(_plain(value), locale=self.locale, decimal_quantization=False)

    def percent(self, fraction: Decimal) -> str:
        return format_percent(_plain(fraction), locale=self.locale, decimal_quantization=False)

    def month(self, period: str) -> str:
        return format_skeleton("yMMMM", _month(period), locale=self.locale)

    def day(self, instant: datetime) -> str:
        return format_date(instant.astimezone(self.tz).date(), "long", locale=self.locale)

    def days(self, start: datetime, end_exclusive: datetime) -> str:
        first = start.astimezone(self.tz).date()
        last = (end_exclusive.astimezone(self.tz) - timedelta(microseconds=1)).date()
        return format_interval(first, last, "yMMMd", locale=self.locale)


def _line_view(line: InvoiceLine, f: _Formats) -> dict[str, Any]:
    notes = []
    if line.sku and line.sku not in line.description:
        notes.append(line.sku)
    if line.spot and "spot" not in line.description.lower():
        notes.append("spot")
    if line.adjustment_period:
        notes.append(f"adjustment for {f.month(line.adjustment_period)}")
    quantity = f"{f.number(line.quantity)} {line.unit}"
    if line.tiers or (line.unit_price is None and line.tier_mode):
        # an adjustment of a tiered price stores no tiers: it is the difference
        # between the tiers applied to the whole month and what was billed earlier
        pricing = f"{quantity}, {line.tier_mode or 'graduated'} tiers"
    elif line.unit_price is not None:
        pricing = f"{quantity} × {f.price(line.unit_price)}"
        if line.discount:  # gross and discount are rounded apart: gross - discount = amount
            pricing += f" = {f.money(line.amount + line.discount)}"
    else:
        pricing = quantity
    tiers = []
    for tier in line.tiers:
        if tier.to_quantity is None:
            span = f"above {f.number(tier.from_quantity)} {line.unit}"
        else:
            span = f"{f.number(tier.from_quantity)} – {f.number(tier.to_quantity)} {line.unit}"
        tiers.append({"range": span,
                      "pricing": f"{f.number(tier.quantity)} × {f.price(tier.unit_price)}",
                      "amount": f.money(tier.amount)})
    details = []
    if line.allowance:
        details.append(f"included allowance used: {f.number(line.allowance)} {line.unit}")
    if line.discount or line.discount_percent:
        details.append(f"discount {f.percent(line.discount_percent / 100)}: "
                       f"−{f.money(line.discount)}")
    return {"no": line.line_no, "kind": line.kind, "description": line.description,
            "notes": ", ".join(notes), "quantity": quantity, "pricing": pricing,
            "tiers": tiers, "details": details, "amount": f.money(line.amount)}


def present(invoice: Invoice, issuer: Issuer, default_locale: str = "en",
            attachments: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every string a rendering shows, formatted once for the invoice's locale;
    `attachments` are the file names the mail carries (listed at the end)."""
    locale = resolve_locale(invoice.locale, default_locale)
    f = _Formats(locale, invoice.currency, invoice.billing_timezone)
    lines = sorted(invoice.lines, key=lambda line: line.line_no)
    heading = HEADINGS.get(invoice.document_kind, "Invoice")
    return {
        "title": f"{heading} {invoice.number}",
        "heading": heading,
        "corrects": (f"Corrects {invoice.corrects} ({f.month(invoice.period)})"
                     if invoice.corrects else ""),
        "number": invoice.number,
        "issuer": {"name": issuer.name, "address": list(issuer.address),
                   "tax_id": issuer.tax_id, "email": issuer.email},
        "bill_to": {"name": invoice.bill_to_name, "email": invoice.bill_to_email or "",
                    "namespace": invoice.namespace, "plan": invoice.plan or ""},
        "issued": f.day(invoice.issued_at),
        "period": f.month(invoice.period),
        "period_days": f.days(invoice.period_start, invoice.period_end),
        "currency": invoice.currency,
        "locale": str(locale),
        "lines": [_line_view(line, f) for line in lines],
        "subtotal": f.money(invoice.subtotal),
        "tax_label": f"Tax {f.percent(invoice.tax_rate)}",
        "tax": f.money(invoice.tax),
        "total": f.money(invoice.total),
        "attachments": list(attachments),
    }


def _columns(left: str, right: str, width: int = TEXT_WIDTH) -> str:
    """`left` and `right` on one line of `width`, right flush (the text part's tables)."""
    gap = max(2, width - len(left) - len(right))
    return f"{left}{' ' * gap}{right}"


_env = Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined,
                   autoescape=select_autoescape(enabled_extensions=("html",), default=False),
                   trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
_env.filters["columns"] = _columns


def render_html(view: dict[str, Any]) -> str:
    """The HTML part: one table layout, inline CSS, nothing loaded from elsewhere."""
    return _env.get_template("invoice.html").render(view)


def render_text(view: dict[str, Any]) -> str:
    """The plain-text part: the same content as the HTML, in 72 columns."""
    return _env.get_template("invoice.txt").render(view, width=TEXT_WIDTH)


_CSV_COLUMNS = ("invoice_number", "line_no", "kind", "meter", "sku", "spot", "description",
                "quantity", "unit", "unit_price", "tier_mode", "tiers", "allowance",
                "discount_percent", "discount", "amount", "currency", "adjustment_period")


def _cell(text: str | None) -> str:
    # A spreadsheet runs a cell that starts with = + - @ as a formula: names a
    # tenant chose (function names, descriptions) are kept as text.
    text = text or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def lines_csv(invoice: Invoice) -> str:
    """The invoice lines as CSV (RFC 4180, CRLF): plain decimals, one row per line;
    the amounts add up to the subtotal."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_CSV_COLUMNS)
    for line in sorted(invoice.lines, key=lambda line: line.line_no):
        tiers = json.dumps([{"from": str(t.from_quantity),
                             "to": None if t.to_quantity is None else str(t.to_quantity),
                             "unit_price": str(t.unit_price), "quantity": str(t.quantity),
                             "amount": str(t.amount)} for t in line.tiers]) if line.tiers else ""
        writer.writerow([
            invoice.number, line.line_no, line.kind, _cell(line.meter), _cell(line.sku),
            "true" if line.spot else "false", _cell(line.description), line.quantity,
            _cell(line.unit), "" if line.unit_price is None else line.unit_price,
            line.tier_mode or "", tiers, line.allowance, line.discount_percent, line.discount,
            line.amount, invoice.currency, line.adjustment_period or ""])
    return out.getvalue()
