"""The operator's payment and credit options on aggregate-month (admin token):

    {"payment": {"invoice": "INV-2026-000042", "amount": "71.40", "date": "2026-10-14",
                 "reference": "bank transfer 4711"}}
    {"camt053": "<?xml ...?><Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.053.001.02\">..."}
    {"grant": {"tenant": "acme", "amount": "50.00", "currency": "EUR", "reason": "...",
               "expires_at": "2027-01-01T00:00:00Z", "plan": "pro", "meter": "gb_seconds"}}

A payment is recorded against the document it names (partial payments add up; an
overpayment becomes the tenant's balance). A camt.053 statement records each credit
line it can match (billing.camt053) and lists the others, in one transaction: a
statement that cannot be read records nothing. Importing the same statement again
records nothing twice (a line's bank reference is its payment's reference). A grant
is a credit the closes apply before tax (billing.grants); expiry, plan and meter are
optional.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import psycopg

from chargeback.billing import camt053, grant_store, payment_store
from chargeback.billing.grant_store import GrantRequest
from chargeback.billing.payment_store import PaymentRequest
from chargeback.billing.pricing import CurrencyError, minor_units
from chargeback.core import db, jsonbody
from chargeback.core.meters import DNS_LABEL, UNITS
from chargeback.core.responses import RequestError
from chargeback.core.settings import ConfigError, Settings, load
# the status changes' events are in the outbox once the transaction commits
from chargeback.webhooks import outbox as webhook_outbox

PAYMENT, CAMT053, GRANT = "payment", "camt053", "grant"
ACTIONS = (PAYMENT, CAMT053, GRANT)
REASON_MAX_CHARS = 200
REFERENCE_MAX_CHARS = 140     # a SEPA remittance line


def action_of(body: bytes) -> str | None:
    """The payment option the body asks for, or None (not one of ours)."""
    try:
        doc = jsonbody.parse(body, empty={})
    except jsonbody.JsonBodyError:
        return None
    if isinstance(doc, dict):
        return next((a for a in ACTIONS if a in doc), None)
    return None


def parse(body: bytes) -> tuple[str, PaymentRequest | bytes]:
    """(action, what it carries); RequestError(400) naming the field that is wrong."""
    doc = jsonbody.parse(body)
    action = action_of(body)
    extra = [k for k in doc if k != action]
    if extra:
        raise RequestError(400, f"{extra[0]}: not allowed with {action}")
    if action == CAMT053:
        if not (isinstance(doc[action], str) and doc[action].strip()):
            raise RequestError(400, "camt053: expected the statement's XML text")
        return action, doc[action].encode()
    if action == GRANT:
        return action, credit_grant(doc[action])
    return action, payment(doc[action])


def _positive_amount(amount, field: str) -> Decimal:
    value = jsonbody.positive_amount(amount)
    if value is None:
        raise RequestError(400, f'{field}: expected a positive decimal string such as '
                                '"12.50"')
    return value


_GRANT_KEYS = {"tenant", "amount", "currency", "reason", "expires_at", "plan", "meter"}


def credit_grant(raw) -> GrantRequest:
    if not isinstance(raw, dict) or set(raw) - _GRANT_KEYS:
        raise RequestError(400, 'grant: expected {"tenant", "amount", "currency", "reason"} '
                                'and optionally "expires_at", "plan", "meter"')
    tenant = raw.get("tenant")
    if not (isinstance(tenant, str) and DNS_LABEL.fullmatch(tenant)):
        raise RequestError(400, "grant.tenant: expected a namespace name (lowercase DNS "
                                "label)")
    amount = _positive_amount(raw.get("amount"), "grant.amount")
    currency = raw.get("currency")
    try:
        minor_units(currency if isinstance(currency, str) and currency.isupper() else "")
    except CurrencyError:
        raise RequestError(400, "grant.currency: expected an ISO 4217 code such as EUR"
                           ) from None
    reason = raw.get("reason")
    if not (isinstance(reason, str) and reason.strip() and len(reason) <= REASON_MAX_CHARS
            and reason.isprintable()):
        raise RequestError(400, "grant.reason: expected one line of at most "
                                f"{REASON_MAX_CHARS} characters")
    expires_at = raw.get("expires_at")
    if expires_at is not None:
        try:
            expires_at = datetime.fromisoformat(expires_at) \
                if isinstance(expires_at, str) else None
        except ValueError:
            expires_at = None
        if expires_at is None or expires_at.tzinfo is None:
            raise RequestError(400, "grant.expires_at: expected an instant with its offset, "
                                    "such as 2027-01-01T00:00:00Z")
    plan = raw.get("plan")
    if plan is not None and not (isinstance(plan, str) and plan and len(plan) <= 100
                                 and plan.isprintable()):
        raise RequestError(400, "grant.plan: expected a plan name of the price book")
    meter = raw.get("meter")
    if meter is not None and meter not in UNITS:
        raise RequestError(400, f"grant.meter: expected one of {', '.join(UNITS)}")
    return GrantRequest(tenant, amount, currency, reason.strip(), expires_at, plan, meter)


def payment(raw) -> PaymentRequest:
    if not isinstance(raw, dict) or set(raw) - {"invoice", "amount", "date", "reference"}:
        raise RequestError(400, 'payment: expected {"invoice": "INV-...", "amount": "12.50", '
                                '"date": "YYYY-MM-DD", "reference": "..."}')
    number = raw.get("invoice")
    if not (isinstance(number, str) and number and len(number) <= 100
            and number.isprintable()):
        raise RequestError(400, "payment.invoice: expected a document number such as "
                                "INV-2026-000042")
    value = _positive_amount(raw.get("amount"), "payment.amount")
    try:
        received_on = date.fromisoformat(raw.get("date")) \
            if isinstance(raw.get("date"), str) else None
    except ValueError:
        received_on = None
    if received_on is None:
        raise RequestError(400, "payment.date: expected the day the money arrived, "
                                "YYYY-MM-DD")
    reference = raw.get("reference")
    if not (isinstance(reference, str) and reference.strip()
            and len(reference) <= REFERENCE_MAX_CHARS and reference.isprintable()):
        raise RequestError(400, "payment.reference: expected the transfer's reference, one "
                                f"line of at most {REFERENCE_MAX_CHARS} characters")
    return PaymentRequest(number, value, received_on, reference.strip())


def apply(settings: Settings, action: str, what, now: datetime) -> dict:
    """Record the payment or import the statement, in one transaction."""
    with db.transaction(settings) as conn:
        if action == PAYMENT:
            answer = payment_store.record(conn, what, "operator", now)
        elif action == GRANT:
            answer = grant_store.grant(conn, what)
            grant_store.alert_low(conn, settings, [what.tenant])
        else:
            answer = import_statement(conn, settings, what, now)
    webhook_outbox.wake(settings)
    return answer


_OPEN = """
SELECT i.number, i.currency, s.open_amount
  FROM openfaas_metering.invoices i
  JOIN openfaas_metering.document_payment_status s USING (invoice_id)
 WHERE i.number = ANY(%s) AND s.status IN ('open', 'partially_paid', 'overdue')"""


def import_statement(conn: psycopg.Connection, settings: Settings, xml: bytes,
                     now: datetime) -> dict:
    """Record every credit line of the statement that matches an open document; list the
    others (see billing.camt053). Inside the caller's transaction."""
    try:
        credits = camt053.parse(xml)
    except camt053.Camt053Error as exc:
        raise RequestError(400, f"camt053: {exc}") from None
    payment_store.refresh(conn, None, now)    # every open document's standing is current
    matched, unmatched, duplicates = [], [], []
    for credit in credits:
        line = {"reference": credit.reference, "amount": str(credit.amount),
                "currency": credit.currency, "date": credit.booked_on.isoformat(),
                "remittance": credit.remittance, "debtor": credit.debtor}
        named = camt053.numbers_in(credit.remittance, settings.invoice_prefix)
        open_documents = {n: camt053.OpenDocument(n, c, a)
                          for n, c, a in conn.execute(_OPEN, (named,))}
        number, why = camt053.match(credit, named, open_documents)
        if number is None:
            # a line imported before has paid its document: it is that payment again
            if _imported(conn, credit.reference):
                duplicates.append(line)
            else:
                unmatched.append({**line, "reason": why})
            continue
        try:
            answer = payment_store.record(conn, PaymentRequest(
                number, credit.amount, credit.booked_on, credit.reference), "camt053", now)
        except RequestError as exc:
            unmatched.append({**line, "reason": str(exc).split(": ", 1)[-1]})
            continue
        (duplicates if answer.get("duplicate") else matched).append(
            {**line, "invoice": number, "status": answer["invoice"]["status"],
             "open": answer["invoice"]["open"]})
    return {"camt053": {"lines": len(credits), "matched": matched, "unmatched": unmatched,
                        "duplicates": len(duplicates)}}


def _imported(conn: psycopg.Connection, reference: str) -> bool:
    return conn.execute("""SELECT 1 FROM openfaas_metering.payments
                            WHERE reference = %s AND source = 'camt053'""",
                        (reference,)).fetchone() is not None


def main(argv: list[str] | None = None) -> int:
    """scripts/payments import STATEMENT.xml: the camt.053 option without the gateway."""
    parser = argparse.ArgumentParser(prog="scripts/payments",
                                     description="record payments from a bank statement")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("import", help="match a camt.053 statement's credit lines to open "
                                  "documents; print what was matched and what was not"
                   ).add_argument("statement")
    args = parser.parse_args(argv)
    try:
        answer = apply(load(), CAMT053, Path(args.statement).read_bytes(),
                       datetime.now(timezone.utc))
    except (RequestError, ConfigError, OSError, db.DatabaseUnavailable) as exc:
        print(f"scripts/payments: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 1 if answer["camt053"]["unmatched"] else 0


if __name__ == "__main__":
    sys.exit(main())
