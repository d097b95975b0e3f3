"""Demo section: the operator voids globex-data's September invoice (its billing address
and VAT ID were missing) and reissues it with them, and credits a tenth of the largest
line of a September invoice; aggregate-month answers the new numbers and
email-invoice mails each new document once."""
from __future__ import annotations

import time
from decimal import Decimal

import psycopg
import requests

from .demo_invoices import CLOSE

WAIT_S = 60
VOIDED = "globex-data"


class DemoError(RuntimeError):
    pass


def _september(conn, namespace: str | None) -> tuple[str, str, int, Decimal, str]:
    """(number, tenant, its largest line's number and amount, currency) of the tenant's
    live September invoice (None: of the mailed one with the largest line)."""
    row = conn.execute(
        """SELECT i.number, i.namespace, l.line_no, l.amount, i.currency
             FROM openfaas_metering.invoices i
             JOIN openfaas_metering.invoice_lines l ON l.invoice_id = i.invoice_id
            WHERE coalesce(i.namespace = %s, i.status = 'sent') AND i.period = '2026-09'
              AND i.document_kind = 'invoice' AND i.voided_by IS NULL
            ORDER BY l.amount DESC, l.line_no LIMIT 1""", (namespace,)).fetchone()
    if row is None:
        raise DemoError(f"{namespace or 'nobody'} has no September invoice to adjust")
    return row


def _post(gateway_url: str, admin_token: str, body: dict) -> dict:
    r = requests.post(f"{gateway_url}{CLOSE}", json=body, timeout=120,
                      headers={"Authorization": f"Bearer {admin_token}"})
    if r.status_code != 200:
        raise DemoError(f"aggregate-month {body}: {r.status_code} {r.text.strip()[:300]}")
    return r.json()


def _wait_sent(database_url: str, numbers: list[str]) -> list[tuple]:
    deadline = time.monotonic() + WAIT_S
    while True:
        with psycopg.connect(database_url) as conn:
            rows = conn.execute("""SELECT number, status FROM openfaas_metering.invoices
                                    WHERE number = ANY(%s) ORDER BY number""",
                                (numbers,)).fetchall()
        if all(status != "finalized" for _, status in rows):
            return rows
        if time.monotonic() > deadline:
            raise DemoError(f"not all of {', '.join(numbers)} were mailed in {WAIT_S} s")
        time.sleep(0.25)


def run(gateway_url: str, database_url: str, admin_token: str) -> None:
    with psycopg.connect(database_url) as conn:
        voided = _september(conn, VOIDED)[0]
        credited, tenant, line_no, line_amount, currency = _september(conn, None)
        conn.execute("""UPDATE openfaas_metering.tenants
                           SET address_override = '12 rue de la Paix' || chr(10) || '75002 Paris'
                                                  || chr(10) || 'France'
                         WHERE namespace = %s""", (VOIDED,))
    print(f"{VOIDED} had moved before {voided} was issued: the operator corrects its "
          "billing address and")
    void = _post(gateway_url, admin_token, {
        "void": voided, "reason": "order_change", "note": "billing address corrected",
        "reissue": True})
    note, reissue = void["credit_note"], void["reissue"]
    print(f"  voids {voided}: credit note {note['number']}  {note['total']} {note['currency']}")
    print(f"  reissues it: {reissue['number']}  {reissue['total']} {reissue['currency']}"
          f"  (replaces {voided}, price book version {reissue['price_book_version']})")
    amount = (line_amount / 10).quantize(Decimal("0.01"))  # a tenth of the line, in cents
    credit = _post(gateway_url, admin_token, {
        "credit": credited, "lines": [{"line": line_no, "amount": str(amount)}],
        "reason": "product_unsatisfactory", "note": "two hours of degraded service"})
    left = credit["left"]
    print(f"{tenant}: {amount} {currency} of line {line_no} of {credited} credited: credit note "
          f"{credit['credit_note']['number']}  {credit['credit_note']['total']} {currency} "
          f"(tax included; {left['total']} {currency} left of {credited})")
    numbers = [note["number"], reissue["number"], credit["credit_note"]["number"]]
    for number, status in _wait_sent(database_url, numbers):
        print(f"  {number}: {status}")
