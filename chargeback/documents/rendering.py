"""An invoice's presentation rendered: the mail's HTML and plain-text parts (Jinja
templates in templates/), and the lines CSV from the Invoice itself. Pure."""
from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from chargeback.documents.model import Invoice

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEXT_WIDTH = 72


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


def _decimal(value: Decimal | None) -> str:
    """A plain decimal, every digit kept: 0.0000002, never 2E-7 (str() of a Decimal with
    an exponent below -6); integers as stored (400000, 1.50)."""
    return "" if value is None else format(value, "f")


def lines_csv(invoice: Invoice) -> str:
    """The invoice lines as CSV (RFC 4180, CRLF, true/false, ISO dates): plain
    decimals, one row per line (the amounts add up to the subtotal), then closing rows
    of kind subtotal, tax and total with the document's figures."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_CSV_COLUMNS)
    for line in sorted(invoice.lines, key=lambda line: line.line_no):
        tiers = json.dumps([{"from": _decimal(t.from_quantity),
                             "to": None if t.to_quantity is None else _decimal(t.to_quantity),
                             "unit_price": _decimal(t.unit_price),
                             "quantity": _decimal(t.quantity), "amount": _decimal(t.amount)}
                            for t in line.billed_tiers]) if line.tiers else ""
        writer.writerow([
            invoice.number, line.line_no, line.kind, _cell(line.meter), _cell(line.sku),
            "true" if line.spot else "false", _cell(line.description), _decimal(line.quantity),
            _cell(line.unit), _decimal(line.unit_price), line.tier_mode or "", tiers,
            _decimal(line.allowance), _decimal(line.discount_percent), _decimal(line.discount),
            _decimal(line.amount), invoice.currency, line.adjustment_period or ""])
    for kind, amount in (("subtotal", invoice.subtotal), ("tax", invoice.tax),
                         ("total", invoice.total)):
        writer.writerow([invoice.number, "", kind, "", "", "", "", "", "", "", "", "", "", "",
                         "", _decimal(amount), invoice.currency, ""])
    return out.getvalue()
