"""Payments: recorded by the operator or matched from a camt.053 bank statement, each
document's status (open, partially paid, paid, overdue, voided), the tenant's balance,
and the events of a status change. Real PostgreSQL, the real close and adjustments.

Figures: the `euro` plan of corrections_helpers.BOOK (0.001 EUR per GB-s, 19 % tax,
half-up). 10,000 GB-s = 10.00 + 1.90 = 11.90 EUR; 20,000 GB-s = 20.00 + 3.80 = 23.80."""
from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from chargeback.billing import adjustments, payment_requests, payments
from chargeback.billing.payments import Doc, Payment
from chargeback.core import db
from chargeback.core.responses import RequestError

from .billing_helpers import NS, Recorder, close, event, on_plan, send, settings_for
from .corrections_helpers import BOOK, OCT_2

LATER = datetime(2027, 6, 1, tzinfo=timezone.utc)   # after every due date of the tests


def d(text: str) -> Decimal:
    return Decimal(text)


# --- the ledger, pure -------------------------------------------------------------------

T0 = datetime(2026, 10, 2, tzinfo=timezone.utc)
T1 = datetime(2026, 11, 2, tzinfo=timezone.utc)


def doc(invoice_id, total, issued_at=T0, kind="invoice", corrects=None, voided=False,
        due=date(2026, 10, 16)):
    return Doc(invoice_id, f"N-{invoice_id}", kind, "EUR", d(total), issued_at, due,
               corrects, voided)


def pay(invoice_id, amount, on=date(2026, 10, 10), currency="EUR"):
    return Payment(f"p-{invoice_id}-{amount}", invoice_id, currency, d(amount), on, T0)


def test_partial_payments_add_up_and_an_overpayment_pays_the_next_invoice():
    docs = [doc("a", "100.00"), doc("b", "50.00", issued_at=T1, due=date(2026, 11, 16))]
    ledger = payments.settle(docs, [pay("a", "30.00"), pay("a", "50.00")],
                             {"a": date(2026, 10, 12), "b": date(2026, 11, 3)})
    a = ledger.standings["a"]
    assert (a.status, a.paid, a.open) == ("partially_paid", d("80.00"), d("20.00"))
    # 30 + 50 + 45 = 125 paid for a (100): 25 over, which pays half of b
    ledger = payments.settle(docs, [pay("a", "30.00"), pay("a", "50.00"), pay("a", "45.00")],
                             {"a": date(2026, 10, 12), "b": date(2026, 11, 3)})
    assert ledger.standings["a"].status == "paid"
    b = ledger.standings["b"]
    assert (b.status, b.paid, b.open) == ("partially_paid", d("25.00"), d("25.00"))
    assert ledger.balance == {"EUR": d("0.00")}
    # 30 more for b: 5 over, the balance
    ledger = payments.settle(docs, [pay("a", "125.00"), pay("b", "30.00")],
                             {"a": date(2026, 10, 12), "b": date(2026, 11, 3)})
    assert ledger.standings["b"].status == "paid" and ledger.balance == {"EUR": d("5.00")}


def test_a_credit_note_settles_what_it_credits_and_a_void_leaves_nothing_to_pay():
    docs = [doc("a", "100.00"), doc("cn", "-40.00", kind="credit_note", corrects="a")]
    ledger = payments.settle(docs, [pay("a", "60.00")], {"a": date(2026, 10, 12)})
    a = ledger.standings["a"]
    assert (a.status, a.credited, a.paid, a.open) == ("paid", d("40.00"), d("60.00"), 0)
    assert "cn" not in ledger.standings        # a credit note is not a document to pay
    # voided after a partial payment: the payment becomes the balance
    docs = [doc("a", "100.00", voided=True), doc("cn", "-100.00", kind="credit_note",
                                                 corrects="a")]
    ledger = payments.settle(docs, [pay("a", "60.00")], {"a": date(2026, 10, 12)})
    assert ledger.standings["a"].status == "voided" and ledger.balance == {"EUR": d("60.00")}


def test_something_open_after_the_due_date_is_overdue_even_when_partly_paid():
    docs = [doc("a", "100.00", due=date(2026, 10, 16))]
    on_due_date = payments.settle(docs, [pay("a", "10.00")], {"a": date(2026, 10, 16)})
    after = payments.settle(docs, [pay("a", "10.00")], {"a": date(2026, 10, 17)})
    assert on_due_date.standings["a"].status == "partially_paid"
    assert after.standings["a"].status == "overdue"


# --- recorded against real documents ----------------------------------------------------

def _month(database_url, tmp_path, tenants=(("acme", 10_000),)):
    """September closed: one EUR invoice per tenant; {tenant: number}."""
    s = settings_for(database_url, tmp_path, book=BOOK, GATEWAY_URL="http://127.0.0.1:9")
    for ns, gb_seconds in tenants:
        on_plan(s, ns, "euro")
        send(s, [event(ns, "2026-09-10T10:00:00Z", gb_seconds * NS)])
    invoices = close(s, OCT_2)["periods"][0]["invoices"]
    return s, {i["tenant"]: i["number"] for i in invoices}


def record(s, now=T0, **payment):
    body = json.dumps({"payment": payment}).encode()
    return payment_requests.apply(s, *payment_requests.parse(body), now)


def events(s, kind):
    with db.transaction(s) as conn:
        return [data for (data,) in conn.execute(
            "SELECT data FROM openfaas_metering.webhook_events WHERE type = %s ORDER BY "
            "created_at", (kind,))]


def test_the_operator_records_a_partial_then_the_rest_and_the_invoice_is_paid_once(
        database_url, tmp_path):
    s, numbers = _month(database_url, tmp_path)
    number = numbers["acme"]                                  # 11.90 EUR
    first = record(s, invoice=number, amount="5.00", date="2026-10-05", reference="TX-1")
    assert first["invoice"]["status"] == "partially_paid"
    assert (first["invoice"]["paid"], first["invoice"]["open"]) == ("5.00", "6.90")
    assert events(s, "invoice.paid") == []
    # the same transfer sent twice is one payment
    again = record(s, invoice=number, amount="5.00", date="2026-10-05", reference="TX-1")
    assert again["duplicate"] is True and again["invoice"]["paid"] == "5.00"
    clash = pytest.raises(RequestError, record, s, invoice=number, amount="6.90",
                          date="2026-10-06", reference="TX-1")
    assert clash.value.status == 409 and "payment.reference" in str(clash.value)
    # 10.00 more: 6.90 pays the rest, 3.10 is the tenant's balance
    rest = record(s, invoice=number, amount="10.00", date="2026-10-06", reference="TX-2")
    assert rest["invoice"]["status"] == "paid" and rest["balance"] == {"EUR": "3.10"}
    [paid] = events(s, "invoice.paid")
    assert (paid["number"], paid["paid"], paid["open"]) == (number, "11.90", "0.00")
    close(s, LATER)                        # the hourly run: paid is never overdue
    assert events(s, "invoice.payment_overdue") == [] and len(events(s, "invoice.paid")) == 1


@pytest.mark.parametrize("payment, status, field", [
    ({"invoice": "INV-2026-999999", "amount": "1.00", "date": "2026-10-05",
      "reference": "x"}, 404, "payment.invoice"),
    ({"invoice": "INV-2026-000001", "amount": "1.001", "date": "2026-10-05",
      "reference": "x"}, 400, "payment.amount: EUR has 2 decimals"),
    ({"invoice": "INV-2026-000001", "amount": 1.0, "date": "2026-10-05",
      "reference": "x"}, 400, "payment.amount"),
    ({"invoice": "INV-2026-000001", "amount": "1.00", "date": "5 Oct",
      "reference": "x"}, 400, "payment.date"),
    ({"invoice": "INV-2026-000001", "amount": "1.00", "date": "2026-10-05"}, 400,
     "payment.reference"),
])
def test_a_bad_payment_is_refused_naming_the_field(database_url, tmp_path, payment, status,
                                                   field):
    s, _ = _month(database_url, tmp_path)
    with pytest.raises(RequestError) as refused:
        record(s, **payment)
    assert refused.value.status == status and field in str(refused.value)
    with db.transaction(s) as conn:
        assert conn.execute("SELECT count(*) FROM openfaas_metering.payments"
                            ).fetchone()[0] == 0


def test_an_unpaid_invoice_turns_overdue_after_its_due_date_once(database_url, tmp_path):
    s, numbers = _month(database_url, tmp_path)
    with db.transaction(s) as conn:
        due = conn.execute("SELECT due_date FROM openfaas_metering.invoices WHERE number = %s",
                           (numbers["acme"],)).fetchone()[0]
    on_due = datetime(due.year, due.month, due.day, 23, tzinfo=timezone.utc)
    close(s, on_due)
    assert events(s, "invoice.payment_overdue") == []
    close(s, LATER)
    close(s, LATER)
    [overdue] = events(s, "invoice.payment_overdue")
    assert (overdue["number"], overdue["open"], overdue["due_date"]) == (
        numbers["acme"], "11.90", due.isoformat())
    # a late payment of all of it: paid
    paid = record(s, LATER, invoice=numbers["acme"], amount="11.90", date="2027-06-01",
                  reference="late")
    assert paid["invoice"]["status"] == "paid"


def test_a_credit_note_settles_what_it_credits_and_a_void_after_a_payment_leaves_a_balance(
        database_url, tmp_path):
    s, numbers = _month(database_url, tmp_path)
    number = numbers["acme"]
    record(s, invoice=number, amount="4.00", date="2026-10-05", reference="TX-1")
    # line 1 credited 5.00: 5.00 + 0.95 tax = 5.95; 11.90 - 5.95 - 4.00 = 1.95 open
    adjustments.apply(s, adjustments.parse(json.dumps(
        {"credit": number, "lines": [{"line": 1, "amount": "5.00"}],
         "reason": "product_unsatisfactory"}).encode()), Recorder())
    with db.transaction(s) as conn:
        assert conn.execute("""SELECT s.status, s.open_amount
                                 FROM openfaas_metering.document_payment_status s
                                 JOIN openfaas_metering.invoices USING (invoice_id)
                                WHERE number = %s""", (number,)).fetchone() == (
            "partially_paid", Decimal("1.95"))
    adjustments.apply(s, adjustments.parse(json.dumps(
        {"void": number, "reason": "order_change"}).encode()), Recorder())
    # voided: the 4.00 paid is the tenant's balance
    answer = record(s, invoice=number, amount="4.00", date="2026-10-05", reference="TX-1")
    assert answer["invoice"]["status"] == "voided" and answer["balance"] == {"EUR": "4.00"}


# --- camt.053 ---------------------------------------------------------------------------

def statement(entries, version="02") -> bytes:
    """A camt.053.001.<version> statement; entries: (reference, amount, remittance, cd)."""
    body = "".join(f"""
      <Ntry><NtryRef>{ref}</NtryRef><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>{cd}</CdtDbtInd>
        <Sts>BOOK</Sts><BookgDt><Dt>2026-10-20</Dt></BookgDt><ValDt><Dt>2026-10-20</Dt></ValDt>
        <AcctSvcrRef>{ref}</AcctSvcrRef><BkTxCd/>
        <NtryDtls><TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs>
          <RltdPties><Dbtr><Nm>Someone GmbH</Nm></Dbtr></RltdPties>
          <RmtInf><Ustrd>{remittance}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>"""
                   for ref, amount, remittance, cd in entries)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.{version}">
  <BkToCstmrStmt><GrpHdr><MsgId>STMT-1</MsgId><CreDtTm>2026-10-21T06:00:00</CreDtTm></GrpHdr>
    <Stmt><Id>2026-10-20-001</Id><CreDtTm>2026-10-21T06:00:00</CreDtTm>
      <Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>{body}
    </Stmt></BkToCstmrStmt></Document>""".encode()


def import_camt(s, xml: bytes, now=T0):
    return payment_requests.apply(s, *payment_requests.parse(
        json.dumps({"camt053": xml.decode()}).encode()), now)["camt053"]


def test_a_bank_statement_pays_full_partial_and_over_and_lists_what_it_cannot_match(
        database_url, tmp_path):
    s, numbers = _month(database_url, tmp_path, tenants=(
        ("acme", 10_000), ("beta", 10_000), ("cobalt", 10_000)))   # 11.90 EUR each
    a, b, c = numbers["acme"], numbers["beta"], numbers["cobalt"]
    xml = statement([
        ("BANK-1", "11.90", f"Invoice {a}", "CRDT"),                     # all of it
        ("BANK-2", "5.00", f"Rechnung {b} Teilzahlung", "CRDT"),         # part
        ("BANK-3", "20.00", f"{c.lower()} thanks", "CRDT"),              # 8.10 too much
        ("BANK-4", "7.00", "Invoice 2026-77", "CRDT"),                   # no number
        ("BANK-5", "99.00", "rent", "DBIT"),                             # paid out
    ])
    got = import_camt(s, xml)
    assert [(m["reference"], m["invoice"], m["status"], m["open"]) for m in got["matched"]] == [
        ("BANK-1", a, "paid", "0.00"), ("BANK-2", b, "partially_paid", "6.90"),
        ("BANK-3", c, "paid", "0.00")]
    assert [(u["reference"], u["amount"], u["reason"]) for u in got["unmatched"]] == [
        ("BANK-4", "7.00", "no document number in the remittance information")]
    assert got["lines"] == 4 and got["duplicates"] == 0      # the debit is no payment
    with db.transaction(s) as conn:
        balances = dict(conn.execute(
            """SELECT namespace, sum(amount) FROM openfaas_metering.payments
                GROUP BY namespace ORDER BY 1"""))
    assert balances == {"acme": d("11.90"), "beta": d("5.00"), "cobalt": d("20.00")}
    assert sorted(e["number"] for e in events(s, "invoice.paid")) == [a, c]
    # the same statement again records nothing twice
    again = import_camt(s, xml)
    assert again["matched"] == [] and again["duplicates"] == 3
    assert [u["reference"] for u in again["unmatched"]] == ["BANK-4"]
    with db.transaction(s) as conn:
        assert conn.execute("SELECT count(*) FROM openfaas_metering.payments"
                            ).fetchone()[0] == 3


@pytest.mark.parametrize("xml, reason", [
    (b"<Document>", "camt053: not well-formed XML"),
    (b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"/>',
     "camt053: not a camt.053 document"),
    (statement([("X", "abc", "INV-2026-000001", "CRDT")]), "is not a positive amount"),
])
def test_a_statement_that_cannot_be_read_records_nothing(database_url, tmp_path, xml, reason):
    s, _ = _month(database_url, tmp_path)
    with pytest.raises(RequestError) as refused:
        import_camt(s, xml)
    assert refused.value.status == 400 and reason in str(refused.value)
