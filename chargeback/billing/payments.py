"""Who paid what: each finalized document's standing, from its credit notes and the
tenant's payments. Pure.

The standing is derived, never booked by hand: the same documents and payments
always give the same statuses, so a payment recorded twice by mistake is refused
by its reference (billing.payment_store), not patched over here. Per currency:

1. A credit note settles what it credits: the document it names first, then the
   other documents correcting the same month's invoice (its supplementary
   invoices); what is still left becomes the tenant's balance.
2. A payment settles the document it names, up to what is open; the rest (an
   overpayment, a payment of a voided document) becomes the tenant's balance.
3. The balance settles the tenant's open documents, the earliest due first
   (as Stripe applies a customer balance to the next invoice).

Status of an invoice or supplementary invoice: voided (voided by the operator),
paid (nothing open), overdue (something open after its due date, even partly
paid), partially_paid (something paid, the rest not yet due), open. A credit note
is not a document to pay: it has no status of its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

OPEN, PARTIALLY_PAID, PAID, OVERDUE, VOIDED = (
    "open", "partially_paid", "paid", "overdue", "voided")
STATUSES = (OPEN, PARTIALLY_PAID, PAID, OVERDUE, VOIDED)
ZERO = Decimal(0)


@dataclass(frozen=True)
class Doc:
    invoice_id: object
    number: str
    kind: str                     # invoice, supplementary, credit_note
    currency: str
    total: Decimal
    issued_at: datetime
    due_date: date | None = None
    corrects: object = None       # corrects_invoice_id
    voided: bool = False


@dataclass(frozen=True)
class Payment:
    payment_id: object
    invoice_id: object            # the document it names
    currency: str
    amount: Decimal
    received_on: date
    recorded_at: datetime


@dataclass
class Standing:
    invoice_id: object
    number: str
    currency: str
    total: Decimal
    credited: Decimal = ZERO      # by credit notes
    paid: Decimal = ZERO          # by payments and the balance
    open: Decimal = ZERO
    status: str = OPEN
    due_date: date | None = None


@dataclass
class Ledger:
    standings: dict[object, Standing] = field(default_factory=dict)
    balance: dict[str, Decimal] = field(default_factory=dict)   # currency -> credit


def settle(docs: list[Doc], payments: list[Payment], today: dict[object, date]) -> Ledger:
    """Every payable document's standing and the balance left per currency; `today` is
    each document's date in its billing time zone (overdue is after its due date)."""
    ledger = Ledger()
    payable = sorted((d for d in docs if d.kind != "credit_note"),
                     key=lambda d: (d.issued_at, d.number))
    left = {d.invoice_id: d.total for d in payable}
    for d in payable:
        ledger.standings[d.invoice_id] = Standing(d.invoice_id, d.number, d.currency, d.total,
                                                  due_date=d.due_date)

    def credit(currency: str, amount: Decimal) -> None:
        ledger.balance[currency] = ledger.balance.get(currency, ZERO) + amount

    def take(invoice_id, amount: Decimal) -> Decimal:
        taken = min(amount, max(left.get(invoice_id, ZERO), ZERO))
        if taken > 0:
            left[invoice_id] -= taken
        return taken

    for note in sorted((d for d in docs if d.kind == "credit_note"),
                       key=lambda d: (d.issued_at, d.number)):
        amount = -note.total
        for target in [note.corrects] + [d.invoice_id for d in payable
                                         if d.corrects == note.corrects
                                         and d.invoice_id != note.corrects]:
            taken = take(target, amount)
            if taken:
                ledger.standings[target].credited += taken
                amount -= taken
        if amount > 0:
            credit(note.currency, amount)
    for payment in sorted(payments, key=lambda p: (p.received_on, p.recorded_at,
                                                   str(p.payment_id))):
        named = ledger.standings.get(payment.invoice_id)
        taken = take(payment.invoice_id, payment.amount) \
            if named is not None and named.currency == payment.currency else ZERO
        if taken:
            named.paid += taken
        if payment.amount - taken:
            credit(payment.currency, payment.amount - taken)
    by_due = sorted(payable, key=lambda d: (d.due_date or date.max, d.issued_at, d.number))
    for d in by_due:
        available = ledger.balance.get(d.currency, ZERO)
        if available > 0 and not d.voided:
            taken = take(d.invoice_id, available)
            if taken:
                ledger.standings[d.invoice_id].paid += taken
                ledger.balance[d.currency] = available - taken
    for d in payable:
        s = ledger.standings[d.invoice_id]
        s.open = ZERO if d.voided else max(left[d.invoice_id], ZERO)
        s.status = status(d, s, today.get(d.invoice_id))
    return ledger


def status(d: Doc, s: Standing, today: date | None) -> str:
    if d.voided:
        return VOIDED
    if s.open == 0:
        return PAID
    if d.due_date is not None and today is not None and today > d.due_date:
        return OVERDUE
    return PARTIALLY_PAID if s.paid > 0 else OPEN
