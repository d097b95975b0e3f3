"""Postgres side of payments: record one (the operator's, or a bank statement's line),
derive every document's standing again (billing.payments) and store the changes, with
their events (invoice.paid, invoice.payment_overdue) in the same transaction.

A tenant's standings are derived under a transaction-scoped advisory lock of that
tenant, so a payment recorded while the hourly run looks for overdue invoices makes
one status change and one event, never two.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import namedtuple_row

from chargeback.billing import payments
from chargeback.billing.payments import Doc, Ledger, Payment
from chargeback.billing.pricing import minor_units
from chargeback.core.responses import RequestError
# a change of a document's standing is reported to the operator's endpoints in the
# transaction that makes it
from chargeback.webhooks import outbox as webhook_outbox
from chargeback.webhooks.events import INVOICE_PAID, INVOICE_PAYMENT_OVERDUE

_LOCK = "chargeback payments "


@dataclass(frozen=True)
class PaymentRequest:
    number: str                   # the document it pays
    amount: Decimal
    received_on: date
    reference: str


_DOCS = """
SELECT invoice_id, namespace, number, document_kind, currency, total, issued_at, due_date,
       corrects_invoice_id, voided_by IS NOT NULL AS voided, billing_timezone
  FROM openfaas_metering.invoices
 WHERE namespace = ANY(%s) AND status <> 'draft'"""

_PAYMENTS = """
SELECT payment_id, namespace, invoice_id, currency, amount, received_on, recorded_at
  FROM openfaas_metering.payments WHERE namespace = ANY(%s)"""

_STORED = """
SELECT invoice_id, status, paid, open_amount FROM openfaas_metering.document_payment_status
 WHERE namespace = ANY(%s)"""

_STORE = """
INSERT INTO openfaas_metering.document_payment_status AS s
       (invoice_id, namespace, status, paid, open_amount)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (invoice_id) DO UPDATE
   SET status = excluded.status, paid = excluded.paid, open_amount = excluded.open_amount,
       changed_at = now()"""

# tenants with a payable document not known to be settled (the hourly run looks at these)
_UNSETTLED = """
SELECT DISTINCT i.namespace
  FROM openfaas_metering.invoices i
  LEFT JOIN openfaas_metering.document_payment_status s USING (invoice_id)
 WHERE i.status <> 'draft' AND i.document_kind <> 'credit_note'
   AND (s.invoice_id IS NULL OR s.status NOT IN ('paid', 'voided'))
 ORDER BY 1"""


def ledgers(conn: psycopg.Connection, namespaces: list[str], now: datetime
            ) -> dict[str, Ledger]:
    """Each tenant's ledger as the documents and payments stand now."""
    docs: dict[str, list[Doc]] = {ns: [] for ns in namespaces}
    today: dict[object, date] = {}
    cur = conn.cursor(row_factory=namedtuple_row)
    for r in cur.execute(_DOCS, (namespaces,)):
        docs[r.namespace].append(Doc(r.invoice_id, r.number, r.document_kind, r.currency,
                                     r.total, r.issued_at, r.due_date,
                                     r.corrects_invoice_id, r.voided))
        today[r.invoice_id] = now.astimezone(ZoneInfo(r.billing_timezone)).date()
    paid: dict[str, list[Payment]] = {ns: [] for ns in namespaces}
    for r in cur.execute(_PAYMENTS, (namespaces,)):
        paid[r.namespace].append(Payment(r.payment_id, r.invoice_id, r.currency, r.amount,
                                         r.received_on, r.recorded_at))
    return {ns: payments.settle(docs[ns], paid[ns], today) for ns in namespaces}


def lock(conn: psycopg.Connection, namespaces: list[str]) -> list[str]:
    """Hold the tenants' payment locks until the caller's transaction ends (taken in one
    order); the namespaces, sorted. Whoever derives a standing to act on it holds them."""
    namespaces = sorted(set(namespaces))
    for ns in namespaces:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_LOCK + ns,))
    return namespaces


def refresh(conn: psycopg.Connection, namespaces: list[str] | None, now: datetime
            ) -> tuple[dict[str, Ledger], int]:
    """Derive the standings of `namespaces` (None: every tenant with a document not known
    to be settled) inside the caller's transaction; store what changed and emit its
    events. Returns the ledgers and how many events were emitted."""
    if namespaces is None:
        namespaces = [ns for (ns,) in conn.execute(_UNSETTLED)]
    namespaces = lock(conn, namespaces)
    found = ledgers(conn, namespaces, now)
    stored = {r[0]: r[1:] for r in conn.execute(_STORED, (namespaces,))}
    events = []
    for ns, ledger in found.items():
        for s in ledger.standings.values():
            was = stored.get(s.invoice_id)
            if was == (s.status, s.paid, s.open):
                continue
            conn.execute(_STORE, (s.invoice_id, ns, s.status, s.paid, s.open))
            if s.status != (was[0] if was else None) and s.status in (
                    payments.PAID, payments.OVERDUE):
                events.append(_event(ns, s))
    webhook_outbox.emit_many(conn, events)
    return found, len(events)


def _event(ns: str, s: payments.Standing) -> tuple[str, dict]:
    data = {"invoice_id": str(s.invoice_id), "number": s.number, "tenant": ns,
            "currency": s.currency, "total": str(s.total), "paid": str(s.paid),
            "credited": str(s.credited), "open": str(s.open),
            "due_date": s.due_date.isoformat() if s.due_date else None}
    return (INVOICE_PAID if s.status == payments.PAID else INVOICE_PAYMENT_OVERDUE), data


def balance(conn: psycopg.Connection, namespace: str) -> dict[str, Decimal]:
    """The tenant's balance per currency (what it paid beyond its documents, and what
    credit notes credited beyond them), as the documents and payments stand now."""
    ledger = ledgers(conn, [namespace], conn.execute("SELECT now()").fetchone()[0])[namespace]
    return {currency: amount for currency, amount in sorted(ledger.balance.items()) if amount}


def standing_json(s: payments.Standing) -> dict:
    return {"number": s.number, "status": s.status, "currency": s.currency,
            "total": str(s.total), "credited": str(s.credited), "paid": str(s.paid),
            "open": str(s.open), "due_date": s.due_date.isoformat() if s.due_date else None}


def balance_json(ledger: Ledger) -> dict[str, str]:
    return {currency: str(amount) for currency, amount in sorted(ledger.balance.items())
            if amount}


_DOCUMENT = """
SELECT invoice_id, namespace, status, document_kind, currency
  FROM openfaas_metering.invoices WHERE number = %s"""

_INSERT = """
INSERT INTO openfaas_metering.payments
       (namespace, invoice_id, currency, amount, received_on, reference, source)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (namespace, reference) DO NOTHING
RETURNING payment_id"""

_SAME_REFERENCE = """
SELECT p.amount, p.received_on, i.number
  FROM openfaas_metering.payments p JOIN openfaas_metering.invoices i USING (invoice_id)
 WHERE p.namespace = %s AND p.reference = %s"""


def payable(conn: psycopg.Connection, number: str, field: str):
    """The finalized invoice or supplementary invoice numbered `number`; RequestError
    404 (none) or 409 (a draft, a credit note)."""
    row = conn.execute(_DOCUMENT, (number,)).fetchone()
    if row is None:
        raise RequestError(404, f"{field}: no document numbered {number!r}")
    invoice_id, ns, status, kind, currency = row
    if status == "draft":
        raise RequestError(409, f"{field}: {number} is a draft; only a finalized document "
                                "can be paid")
    if kind == "credit_note":
        raise RequestError(409, f"{field}: {number} is a credit note, not a document to pay")
    return invoice_id, ns, currency


def record(conn: psycopg.Connection, request: PaymentRequest, source: str,
           now: datetime) -> dict:
    """Record the payment inside the caller's transaction and derive the tenant's
    standings again. The same reference again with the same amount, date and document
    is the same payment (answered with "duplicate": true); otherwise a 409."""
    invoice_id, ns, currency = payable(conn, request.number, "payment.invoice")
    if -request.amount.as_tuple().exponent > minor_units(currency):
        raise RequestError(400, f"payment.amount: {currency} has {minor_units(currency)} "
                                f"decimals, got {request.amount}")
    inserted = conn.execute(_INSERT, (ns, invoice_id, currency, request.amount,
                                      request.received_on, request.reference,
                                      source)).fetchone()
    duplicate = False
    if inserted is None:
        amount, received_on, number = conn.execute(_SAME_REFERENCE,
                                                   (ns, request.reference)).fetchone()
        if (amount, received_on, number) != (request.amount, request.received_on,
                                             request.number):
            raise RequestError(409, f"payment.reference: {request.reference!r} is already a "
                                    f"payment of {amount} {currency} for {number} on "
                                    f"{received_on.isoformat()}")
        duplicate = True
    ledger = refresh(conn, [ns], now)[0][ns]
    answer = {"payment": {"invoice": request.number, "tenant": ns,
                          "amount": str(request.amount), "currency": currency,
                          "date": request.received_on.isoformat(),
                          "reference": request.reference, "source": source},
              "invoice": standing_json(ledger.standings[invoice_id]),
              "balance": balance_json(ledger)}
    if duplicate:
        answer["duplicate"] = True
    return answer
