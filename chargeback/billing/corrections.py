"""Corrections of closed months: what has been billed for a tenant's month (its live
invoice and that invoice's corrections; an operator's credit or a void never counts),
and, when the month now prices differently, the supplementary invoice or credit note
for the difference (or held back below CORRECTION_MIN_AMOUNT)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import psycopg

from chargeback.billing import invoicing, pricebook_store
from chargeback.billing import store as billing_store
from chargeback.billing.finalize import Document, PeriodResult
from chargeback.billing.invoicing import Line, quantities_rows
from chargeback.billing.month_inputs import tenant_details
from chargeback.billing.periods import Period
from chargeback.billing.pricebook import PriceBook
from chargeback.core.settings import Settings

# Every finalized document of the period (for the tenants asked), its stored inputs and
# figures, and what decides whether it counts as billed (see counted()).
_DOCUMENTS = """
SELECT namespace, invoice_id, document_kind, number, inputs, subtotal, tax, voided_by,
       corrects_invoice_id, correction_no, credit_reason IS NOT NULL
  FROM openfaas_metering.invoices
 WHERE period = %(period)s AND status <> 'draft'
   AND (%(all)s OR namespace = ANY(%(namespaces)s))
 ORDER BY namespace, document_kind = 'invoice' DESC, issued_at, correction_no"""

_BILLED_LINES = """
SELECT i.namespace, l.invoice_id, l.kind, l.description, l.quantity, l.unit, l.amount, l.meter, l.sku,
       l.spot, l.unit_price, l.tiers, l.tier_mode, l.allowance, l.discount_percent,
       l.discount, l.price_from, l.price_to, l.adjustment_period, l.gross, l.billed_days,
       l.period_days
  FROM openfaas_metering.invoice_lines l
  JOIN openfaas_metering.invoices i USING (invoice_id)
 WHERE i.period = %(period)s AND i.status <> 'draft'
   AND (%(all)s OR i.namespace = ANY(%(namespaces)s))
 ORDER BY i.namespace, i.issued_at, l.line_no"""


def stored_line(row) -> Line:
    """A Line from the invoice_lines columns in _BILLED_LINES' order (after namespace and
    invoice id)."""
    (kind, description, quantity, unit, amount, meter, sku, spot, unit_price, tiers,
     tier_mode, allowance, discount_percent, discount, price_from, price_to,
     adjustment_period, gross, billed_days, period_days) = row
    return Line(kind, description, quantity, unit, amount, meter, sku, spot, unit_price,
                tuple(tiers) if tiers is not None else None, tier_mode, allowance,
                discount_percent, discount, price_from, price_to, adjustment_period, gross,
                billed_days, period_days)


@dataclass
class Billed:
    """What has been billed for one tenant's period so far."""
    invoice_id: object = None
    number: str | None = None
    inputs: dict | None = None
    corrections: int = 0          # the last correction_no against the invoice
    subtotal: Decimal = Decimal(0)
    tax: Decimal = Decimal(0)
    lines: list = field(default_factory=list)
    ids: set = field(default_factory=set)
    waived: bool = False          # the month's invoice was voided without a reissue


@dataclass(frozen=True)
class MonthDocument:
    """A finalized document of one tenant's month, as far as counted() needs it."""
    invoice_id: object
    kind: str
    voided_by: object = None
    corrects: object = None       # corrects_invoice_id
    operator: bool = False        # an operator's credit note (credit_reason set)


def counted(docs: list[MonthDocument]) -> tuple[MonthDocument | None, list[MonthDocument]]:
    """(the month's live invoice, the documents that count as billed for the month).

    What a month's usage has been billed is its live invoice (the month's invoice,
    or the reissue that replaced a voided one) and the corrections of that invoice
    (supplementary invoices, correction credit notes). An operator's credit note or
    void is a concession, not a re-pricing: it never counts, so the next close does
    not bill again what it took off. A month whose invoice was voided without a
    reissue has no live invoice: it is waived (None, [])."""
    live = next((d for d in docs if d.kind == "invoice" and d.voided_by is None), None)
    if live is None:
        return None, []
    return live, [d for d in docs if d is live
                  or (d.corrects == live.invoice_id and not d.operator)]


def billed(conn: psycopg.Connection, p: Period, namespaces: list[str] | None
            ) -> dict[str, Billed]:
    params = {"period": p.name, "all": namespaces is None, "namespaces": namespaces or []}
    rows: dict[str, list] = {}
    for row in conn.execute(_DOCUMENTS, params):
        rows.setdefault(row[0], []).append(row)
    out: dict[str, Billed] = {}
    for ns, docs in rows.items():
        month = [MonthDocument(r[1], r[2], r[7], r[8], r[10]) for r in docs]
        live, billed = counted(month)
        if live is None:
            voided = next(r for r in docs if r[2] == "invoice")
            out[ns] = Billed(voided[1], voided[3], voided[4], waived=True)
            continue
        b = out[ns] = Billed()
        ids = {d.invoice_id for d in billed}
        for (_, invoice_id, kind, number, inputs, subtotal, tax, _, corrects, correction_no,
             _) in docs:
            if invoice_id == live.invoice_id:
                b.invoice_id, b.number, b.inputs = invoice_id, number, inputs
            if corrects == live.invoice_id:  # operator credit notes take numbers here too
                b.corrections = max(b.corrections, correction_no)
            if invoice_id in ids:
                b.subtotal += subtotal
                b.tax += tax
        b.ids = ids
    if out:
        for row in conn.execute(_BILLED_LINES, params):
            if row[0] in out and row[1] in out[row[0]].ids:
                out[row[0]].lines.append(stored_line(row[2:]))
    return out


def correct(conn: psycopg.Connection, settings: Settings, p: Period, book: PriceBook,
                 billed: dict[str, Billed], documents: list[Document],
                 result: PeriodResult) -> bool:
    """Append a correction to `documents` for every tenant whose finalized month now
    prices differently; True when one was held back (CORRECTION_MIN_AMOUNT, a draft)."""
    held = False
    by_windows: dict[str, list] = {}
    for ns, b in billed.items():
        if b.inputs is not None:
            by_windows.setdefault(json.dumps(b.inputs["windows"]), []).append(ns)
    for windows_json, names in by_windows.items():
        ws = [(datetime.fromisoformat(a), datetime.fromisoformat(z))
              for a, z in json.loads(windows_json)]
        current = billing_store.quantities(conn, ws, names)
        for ns in names:
            b = billed[ns]
            inputs = {**b.inputs, "quantities": quantities_rows(current.get(ns, {}))}
            if b.waived:  # voided without a reissue: late usage is reported, never billed
                if inputs["quantities"] != b.inputs["quantities"]:
                    result.waived.append({"tenant": ns, "voided": b.number})
                continue
            inputs.pop("late", None)  # invoices made before corrections carried late usage
            month = invoicing.build(inputs, {book.version: book} if
                                    inputs["price_book_version"] == book.version else
                                    {inputs["price_book_version"]: pricebook_store.version(
                                        conn, inputs["price_book_version"])})
            if month.reasons:
                held = True
                result.held.append({"tenant": ns, "corrects": b.number,
                                    "reasons": month.reasons})
                continue
            owed = invoicing.correction(month, b.lines, b.subtotal, b.tax)
            if not owed.total:
                continue
            if abs(owed.total) < settings.correction_min_amount:
                held = True
                result.held.append({"tenant": ns, "corrects": b.number,
                                    "total": str(owed.total), "currency": owed.currency,
                                    "reasons": ["below CORRECTION_MIN_AMOUNT"]})
                continue
            kind = invoicing.SUPPLEMENTARY if owed.total > 0 else invoicing.CREDIT_NOTE
            details = tenant_details(conn, [ns])[ns]
            documents.append(Document(kind, {**inputs, "corrects": b.number}, owed, details,
                                      b.invoice_id, b.number, b.corrections + 1))
    return held


_STORED_LINES = """
SELECT kind, description, quantity, unit, amount, meter, sku, spot, unit_price, tiers,
       tier_mode, allowance, discount_percent, discount, price_from, price_to,
       adjustment_period, gross, billed_days, period_days
  FROM openfaas_metering.invoice_lines WHERE invoice_id = %s ORDER BY line_no"""


def stored_lines(conn: psycopg.Connection, invoice_id) -> list[Line]:
    """The lines stored for document `invoice_id`, in order."""
    return [stored_line(row) for row in conn.execute(_STORED_LINES, (invoice_id,))]
