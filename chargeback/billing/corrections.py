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
from psycopg.rows import class_row, dict_row

from chargeback.billing import grant_store, invoicing, pricebook_store
from chargeback.billing import store as billing_store
from chargeback.billing.finalize import Document, PeriodResult
from chargeback.billing.invoicing import quantities_rows
from chargeback.billing.lines import line_of
from chargeback.billing.month_inputs import ensure_tenants
from chargeback.billing.periods import Period
from chargeback.billing.pricebook import PriceBook
from chargeback.core.settings import Settings

# Every finalized document of the period (for the tenants asked), its stored inputs and
# figures, and what decides whether it counts as billed (see counted()).
_DOCUMENTS = """
SELECT invoice_id, document_kind AS kind, voided_by, corrects_invoice_id AS corrects,
       credit_reason IS NOT NULL AS operator, namespace, number, issued_at, subtotal, tax,
       total, correction_no, inputs
  FROM openfaas_metering.invoices
 WHERE period = %(period)s AND status <> 'draft'
   AND (%(all)s OR namespace = ANY(%(namespaces)s))
 ORDER BY namespace, issued_at, document_kind <> 'invoice', correction_no"""

_BILLED_LINES = """
SELECT i.namespace, l.*
  FROM openfaas_metering.invoice_lines l
  JOIN openfaas_metering.invoices i USING (invoice_id)
 WHERE i.period = %(period)s AND i.status <> 'draft'
   AND (%(all)s OR i.namespace = ANY(%(namespaces)s))
 ORDER BY i.namespace, i.issued_at, l.line_no"""


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
    """A finalized document of one tenant's month: what counted() needs, then its
    figures and stored inputs."""
    invoice_id: object
    kind: str
    voided_by: object = None
    corrects: object = None       # corrects_invoice_id
    operator: bool = False        # an operator's credit note (credit_reason set)
    namespace: str = ""
    number: str | None = None
    issued_at: datetime | None = None
    subtotal: Decimal = Decimal(0)
    tax: Decimal = Decimal(0)
    total: Decimal = Decimal(0)
    correction_no: int | None = None
    inputs: dict | None = None


def month_documents(conn: psycopg.Connection, p_name: str, namespaces: list[str] | None
                    ) -> dict[str, list[MonthDocument]]:
    """The finalized documents of period `p_name` by tenant (all tenants: None), each
    tenant's in order of issue, the month's invoice before its corrections."""
    out: dict[str, list[MonthDocument]] = {}
    with conn.cursor(row_factory=class_row(MonthDocument)) as cur:
        for doc in cur.execute(_DOCUMENTS, {"period": p_name, "all": namespaces is None,
                                            "namespaces": namespaces or []}):
            out.setdefault(doc.namespace, []).append(doc)
    return out


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
    out: dict[str, Billed] = {}
    for ns, docs in month_documents(conn, p.name, namespaces).items():
        live, counting = counted(docs)
        if live is None:
            voided = next(d for d in docs if d.kind == "invoice")
            out[ns] = Billed(voided.invoice_id, voided.number, voided.inputs, waived=True)
            continue
        ids = {d.invoice_id for d in counting}
        b = out[ns] = Billed(live.invoice_id, live.number, live.inputs, ids=ids)
        for d in docs:
            if d.corrects == live.invoice_id:  # operator credit notes take numbers here too
                b.corrections = max(b.corrections, d.correction_no)
            if d.invoice_id in ids:
                b.subtotal += d.subtotal
                b.tax += d.tax
    if out:
        params = {"period": p.name, "all": namespaces is None, "namespaces": namespaces or []}
        with conn.cursor(row_factory=dict_row) as cur:
            for row in cur.execute(_BILLED_LINES, params):
                b = out.get(row["namespace"])
                if b is not None and row["invoice_id"] in b.ids:
                    b.lines.append(line_of(row))
    return out


def correct(conn: psycopg.Connection, settings: Settings, p: Period, book: PriceBook,
            billed: dict[str, Billed], documents: list[Document], result: PeriodResult
            ) -> bool:
    """Append a correction to `documents` for every tenant whose finalized month now
    prices differently; True when one was held back (CORRECTION_MIN_AMOUNT, a draft)."""
    held = False
    by_windows: dict[str, list] = {}
    for ns, b in billed.items():
        if b.inputs is not None:
            # the month's windows and its price book (which declares its custom meters)
            by_windows.setdefault(json.dumps([b.inputs["windows"],
                                              b.inputs["price_book_version"]]), []).append(ns)
    for key, names in by_windows.items():
        windows_json, version = json.loads(key)
        ws = [(datetime.fromisoformat(a), datetime.fromisoformat(z)) for a, z in windows_json]
        meters = (book if version == book.version
                  else pricebook_store.version(conn, version)).meters
        current = billing_store.quantities(conn, ws, names, meters)
        for ns in names:
            b = billed[ns]
            inputs = {**b.inputs, "quantities": quantities_rows(current.get(ns, {}))}
            if b.waived:  # voided without a reissue: late usage is reported, never billed
                if inputs["quantities"] != b.inputs["quantities"] and _first_report(
                        conn, b.invoice_id, inputs["quantities"]):
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
            # the grants as they stood for the month: what they give it now, less what
            # its documents took (billing.grants)
            taken = grant_store.taken_by(conn, list(b.ids))
            owed.credits = {g: month.credits.get(g, 0) - taken.get(g, 0)
                            for g in set(month.credits) | set(taken)
                            if month.credits.get(g, 0) != taken.get(g, 0)}
            if abs(owed.total) < settings.correction_min_amount:
                held = True
                result.held.append({"tenant": ns, "corrects": b.number,
                                    "total": str(owed.total), "currency": owed.currency,
                                    "reasons": ["below CORRECTION_MIN_AMOUNT"]})
                continue
            kind = invoicing.SUPPLEMENTARY if owed.total > 0 else invoicing.CREDIT_NOTE
            details = ensure_tenants(conn, [ns])[ns]
            documents.append(Document(kind, {**inputs, "corrects": b.number}, owed, details,
                                      b.invoice_id, b.number, b.corrections + 1))
    return held


# a waived month's usage is reported once for each state of it (sql/160)
_WAIVED_REPORT = """
INSERT INTO openfaas_metering.waived_usage_reports AS w (invoice_id, quantities_sha256)
VALUES (%s, %s)
ON CONFLICT (invoice_id) DO UPDATE
   SET quantities_sha256 = excluded.quantities_sha256, reported_at = now()
 WHERE w.quantities_sha256 <> excluded.quantities_sha256"""


def _first_report(conn: psycopg.Connection, invoice_id, quantities: list) -> bool:
    """True the first time the voided month's usage is `quantities` (then recorded)."""
    return conn.execute(_WAIVED_REPORT, (invoice_id, invoicing.sha256_json(quantities))
                        ).rowcount == 1
