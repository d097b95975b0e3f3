"""The operator's adjustments of a finalized document: void (and reissue) and credit.

    {"void": "INV-2026-000042", "reason": "duplicated_charge", "note": "..."}
    {"void": "INV-2026-000042", "reason": "order_change", "reissue": true,
     "price_book_version": 7}
    {"credit": "INV-2026-000042", "lines": [{"line": 3, "amount": "12.50"}],
     "reason": "product_unsatisfactory"}

A void issues a credit note for everything left of the document (billing.credits)
and marks the document voided by it (`voided_by`, `voided_at`: the only change a
sealed document accepts besides delivery, once); its number and the bytes already
filed stay. With `reissue` the month is priced again, into a new invoice that
names the one it replaces, with the tenant's details as they are now (plan,
currency, tax, address, tax ID) at the month's stored bounds and the voided
invoice's price book version (or the newer version named). A credit issues a
partial credit note. Every document here is numbered, written, frozen and sealed by
the month close's own finalizer (finalize.finalize), so it is an ordinary
document: gap-free number, immutable, in the hash chain, mailed once by
email-invoice, exported and verified like the others.

What may be adjusted: a month's invoice (or its reissue) and a supplementary
invoice can be voided and credited; a credit note cannot (it is a credit already).
A reissue is for a month's invoice without corrections (its supplementary invoices
or correction credit notes would otherwise be billed or credited twice).

Corrections stay right (corrections.counted): a voided month with a reissue is
corrected against the reissue; without one it is waived (late usage is reported,
never billed); an operator credit note never makes a close bill its amount again.
Everything runs in one transaction under the close's lock: a refused request
leaves nothing behind.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg
from psycopg.rows import namedtuple_row

from chargeback.billing import (
    credits,
    finalize,
    grant_store,
    handoff,
    invoicing,
    month_inputs,
    payment_store,
    period_bounds,
    pricebook_store,
)
from chargeback.billing import store as billing_store
from chargeback.billing.lines import stored_lines
from chargeback.billing.periods import Period
from chargeback.core import db, jsonbody
from chargeback.core.gateway import GatewayClient
from chargeback.core.responses import RequestError
from chargeback.core.settings import Settings
# the adjustment's fact goes to the operator's endpoints in its own transaction
from chargeback.webhooks import outbox as webhook_outbox

ACTIONS = (credits.VOID, credits.CREDIT)
_KEYS = {credits.VOID: ("void", "reason", "note", "reissue", "price_book_version"),
         credits.CREDIT: ("credit", "lines", "reason", "note")}
NOTE_MAX_CHARS = 500


@dataclass(frozen=True)
class Request:
    action: str                   # void, credit
    number: str
    reason: str
    note: str | None = None
    reissue: bool = False
    price_book_version: int | None = None
    lines: tuple[tuple[int, Decimal], ...] = ()


def action_of(body: bytes) -> str | None:
    """"void" or "credit" when the body asks for one (the operator's gate comes before
    any other check); None for anything else, month_close's options included."""
    try:
        doc = jsonbody.parse(body, empty=None)
    except jsonbody.JsonBodyError:
        return None
    if isinstance(doc, dict):
        return next((a for a in ACTIONS if a in doc), None)
    return None


def _number(value, field: str) -> str:
    # NUL, controls and lone surrogates cannot be sent to PostgreSQL (a 500, not a 404)
    if not (isinstance(value, str) and value and len(value) <= 100 and value.isprintable()):
        raise RequestError(400, f"{field}: expected a document number such as INV-2026-000042")
    return value


def parse(body: bytes) -> Request:
    """The adjustment a body asks for; RequestError(400) naming the field that is wrong."""
    doc = jsonbody.parse(body)
    action = action_of(body)
    if credits.VOID in doc and credits.CREDIT in doc:
        raise RequestError(400, "credit: not allowed with void (void credits everything left)")
    for key in doc:
        if key not in _KEYS[action]:
            raise RequestError(400, f"{key}: not an option of {action} (its options: "
                                    f"{', '.join(_KEYS[action])})")
    number = _number(doc[action], action)
    reason = doc.get("reason")
    if reason not in credits.REASONS:
        raise RequestError(400, f"reason: expected one of {', '.join(credits.REASONS)}"
                                " (free text goes in note)")
    note = doc.get("note")
    if note is not None and not (isinstance(note, str) and len(note) <= NOTE_MAX_CHARS
                                 and note.isprintable()):
        raise RequestError(400, f"note: expected text on one line, at most {NOTE_MAX_CHARS} "
                                "characters")
    reissue = doc.get("reissue", False)
    if not isinstance(reissue, bool):
        raise RequestError(400, "reissue: expected true or false")
    version = doc.get("price_book_version")
    if version is not None:
        if not reissue:
            raise RequestError(400, "price_book_version: only with \"reissue\": true")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RequestError(400, "price_book_version: expected a version number such as 3")
    lines = ()
    if action == credits.CREDIT:
        lines = _lines(doc.get("lines"))
    return Request(action, number, reason, note or None, reissue, version, lines)


def _lines(raw) -> tuple[tuple[int, Decimal], ...]:
    if not isinstance(raw, list) or not raw:
        raise RequestError(400, 'lines: expected a list such as [{"line": 3, "amount": "12.50"}]')
    out, seen = [], set()
    for i, item in enumerate(raw):
        where = f"lines[{i}]"
        if not isinstance(item, dict) or set(item) != {"line", "amount"}:
            raise RequestError(400, f'{where}: expected {{"line": <number>, "amount": '
                                    '"<decimal>"}')
        n = item["line"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise RequestError(400, f"{where}.line: expected a line number (1, 2, ...)")
        if n in seen:
            raise RequestError(400, f"{where}.line: line {n} is named twice")
        seen.add(n)
        value = jsonbody.positive_amount(item["amount"])
        if value is None:
            raise RequestError(400, f'{where}.amount: expected a positive decimal string '
                                    'such as "12.50"')
        out.append((n, value))
    return tuple(out)


_DOCUMENT = """
SELECT invoice_id, namespace, period, period_start, period_end, billing_timezone, status,
       document_kind, voided_by, inputs, subtotal, tax, total, currency, tax_rate, plan,
       price_book_version, (SELECT number FROM openfaas_metering.invoices v
                             WHERE v.invoice_id = i.voided_by)
  FROM openfaas_metering.invoices i WHERE number = %s"""

# every document that credits or corrects `id`: correction numbers, the operator's credits
_AGAINST = """
SELECT number, correction_no, credit_reason IS NOT NULL AS operator, inputs, voided_by
  FROM openfaas_metering.invoices
 WHERE corrects_invoice_id = %s AND status <> 'draft' ORDER BY correction_no"""


def apply(settings: Settings, request: Request, client: GatewayClient | None = None) -> dict:
    """Do what `request` asks in one transaction; queue the new documents' mails after
    it. RequestError 404 (no such document), 409 (it cannot take this adjustment)."""
    with db.transaction(settings) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                     (finalize.CLOSE_LOCK,))
        answer = _adjust(conn, settings, request)
        # a credit note settles what it credits; a void leaves nothing open
        payment_store.refresh(conn, [answer["tenant"]],
                              conn.execute("SELECT now()").fetchone()[0])
    webhook_outbox.wake(settings)
    queued, errors = handoff.requeue(settings, client or GatewayClient(settings),
                                     [answer["tenant"]])
    return {**answer, "queued": queued, "queue_errors": errors}


def _adjust(conn: psycopg.Connection, settings: Settings, request: Request) -> dict:
    field = request.action
    row = conn.execute(_DOCUMENT, (request.number,)).fetchone()
    if row is None:
        raise RequestError(404, f"{field}: no document numbered {request.number!r}")
    (invoice_id, ns, period_name, start, end, tz, status, kind, voided_by, inputs, subtotal,
     tax, total, currency, tax_rate, plan, version, voided_number) = row
    if status == "draft":
        raise RequestError(409, f"{field}: {request.number} is a draft; only a finalized "
                                "document can be adjusted")
    if kind == invoicing.CREDIT_NOTE:
        raise RequestError(409, f"{field}: {request.number} is a credit note; only an "
                                "invoice or a supplementary invoice can be adjusted")
    if voided_by is not None:
        raise RequestError(409, f"{field}: {request.number} is voided already (by "
                                f"{voided_number})")
    with conn.cursor(row_factory=namedtuple_row) as cur:
        against = cur.execute(_AGAINST, (invoice_id,)).fetchall()
    if request.reissue:
        if kind != invoicing.INVOICE:
            raise RequestError(409, f"reissue: {request.number} is a supplementary invoice; "
                                    "only a month's invoice can be reissued")
        corrected_by = [r.number for r in against if not r.operator and r.voided_by is None]
        if corrected_by:
            raise RequestError(409, f"reissue: {request.number} has corrections "
                                    f"({', '.join(corrected_by)}); void it without a reissue, "
                                    "or credit it")
    lines = dict(enumerate(stored_lines(conn, invoice_id), 1))
    rest = credits.left(lines, subtotal, tax, [r.inputs for r in against if r.operator])
    try:
        take = credits.wanted(request.action, list(request.lines), rest, currency)
    except credits.CreditError as exc:
        raise RequestError(exc.status, str(exc)) from None
    book = pricebook_store.version(conn, version)
    document = {"credits": request.number, "namespace": ns, "period": period_name,
                "price_book_version": version, "plan": plan, "currency": currency,
                "tax_rate": str(tax_rate), "tax_rounding": inputs.get("tax_rounding",
                                                                      "half_even")}
    credit_inputs = credits.inputs(request.action, document, lines, take, rest,
                                   request.reason, request.note)
    p = Period(period_name, start, end, tz)
    issued_at = conn.execute("SELECT now()").fetchone()[0]
    year = period_bounds.year_of_issue(issued_at, settings)
    details = month_inputs.ensure_tenants(conn, [ns])[ns]
    result = finalize.PeriodResult(p.name, p.start, p.end, version)
    finalize.finalize(conn, settings, p, book, [finalize.Document(
        invoicing.CREDIT_NOTE, credit_inputs, credits.build(credit_inputs), details,
        invoice_id, request.number, max((r.correction_no for r in against), default=0) + 1)],
        issued_at, year, result)
    _refuse_held(result)
    [note] = result.invoices
    conn.execute("""UPDATE openfaas_metering.invoices SET credit_reason = %s, credit_memo = %s
                     WHERE invoice_id = %s""", (request.reason, request.note, note["invoice_id"]))
    answer = {field: request.number, "tenant": ns, "period": period_name,
              "reason": request.reason, "credit_note": note}
    if request.action == credits.CREDIT:
        after = credits.left(lines, subtotal, tax, [r.inputs for r in against if r.operator]
                             + [credit_inputs])
        answer["left"] = {"subtotal": str(after.subtotal), "tax": str(after.tax),
                          "total": str(after.total), "currency": currency}
        return answer
    conn.execute("""UPDATE openfaas_metering.invoices SET voided_by = %s, voided_at = now()
                     WHERE invoice_id = %s""", (note["invoice_id"], invoice_id))
    if request.reissue:
        answer["reissue"] = _reissue(conn, settings, request, p, invoice_id, ns, details,
                                     version, issued_at, year)
    webhook_outbox.emit(conn, "invoice.voided", {
        "invoice_id": str(invoice_id), "number": request.number, "tenant": ns,
        "period": period_name, "credit_note": note["number"],
        "credit_note_id": note["invoice_id"], "reason": request.reason,
        "amount": note["total"], "currency": currency,
        "reissued_as": answer["reissue"]["number"] if request.reissue else None})
    return answer


def _reissue(conn: psycopg.Connection, settings: Settings, request: Request, p: Period,
             replaced, ns: str, details: month_inputs.TenantDetails, version: int, issued_at: datetime,
             year: int) -> dict:
    """The month priced again into a new invoice replacing `replaced`, tenant `ns`'s, with
    its `details` as they are now (see the module)."""
    chosen = request.price_book_version or version
    if chosen < version:
        raise RequestError(409, f"price_book_version: {chosen} is older than the version "
                                f"{request.number} was priced with ({version})")
    if conn.execute("SELECT 1 FROM openfaas_metering.price_book_versions WHERE version = %s",
                    (chosen,)).fetchone() is None:
        raise RequestError(404, f"price_book_version: no price book version {chosen}")
    book = pricebook_store.version(conn, chosen)
    ws = period_bounds.windows(p, [book])
    quantities = billing_store.quantities(conn, ws, [ns], book.meters).get(ns, {})
    # the tenant's credit grants as they stand now (the voided invoice gave its part back)
    inputs, draft = month_inputs.priced(ns, p, book, details, ws, quantities,
                                        settings.tax_rounding,
                                        grant_store.available(conn, [ns], p.start).get(ns, []))
    if draft.reasons:
        raise RequestError(409, f"reissue: the month cannot be priced again: "
                                f"{'; '.join(draft.reasons)}")
    if not draft.lines:
        raise RequestError(409, f"reissue: {p.name} has nothing to bill for {ns} now; "
                                "void it without a reissue")
    result = finalize.PeriodResult(p.name, p.start, p.end, book.version)
    finalize.finalize(conn, settings, p, book, [finalize.Document(
        invoicing.INVOICE, inputs, draft, details, replaces=replaced,
        replaces_number=request.number)], issued_at, year, result)
    _refuse_held(result)
    [invoice] = result.invoices
    return {**invoice, "replaces": request.number, "price_book_version": book.version}


def _refuse_held(result: finalize.PeriodResult) -> None:
    """409 naming what is missing when finalize held the document asked for (billing.legal:
    the tenant's address or VAT ID, say); nothing of the request is kept."""
    if result.held:
        raise RequestError(409, f"{result.held[0]['kind']}: cannot be finalized: "
                                f"{'; '.join(result.held[0]['reasons'])}")
