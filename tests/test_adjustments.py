"""The operator's void, reissue and credit notes against real PostgreSQL: documents read
back from the tables, the next close after each, verify, the immutability trigger.

Every figure is EUR on the `euro` plan (0.001 per GB-s, 19 % tax, half-up): a
September of 11,500 GB-s is 11.50 + 2.19 (2.185 rounded half-up) = 13.69."""
from __future__ import annotations

import json
from decimal import Decimal

import psycopg
import pytest

from chargeback.billing import adjustments, audit, pricebook_store
from chargeback.core import db
from chargeback.core.responses import RequestError
from chargeback.documents import chain

from .billing_helpers import NS, Recorder, close, event, on_plan, send, settings_for
from .corrections_helpers import BOOK, DEC_2, NOV_2, OCT_2


def _settings(database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=BOOK, GATEWAY_URL="http://127.0.0.1:9")
    on_plan(s, "acme", "euro")
    # line 1: 11,500 GB-s (11.50); line 2: one invocation at 0 (0.00)
    send(s, [event("acme", "2026-09-10T10:00:00Z", 11_500 * NS)])
    [invoice] = close(s, OCT_2)["periods"][0]["invoices"]
    assert Decimal(invoice["total"]) == Decimal("13.69")
    return s, invoice["number"]


def adjust(settings, **body):
    return adjustments.apply(settings, adjustments.parse(json.dumps(body).encode()),
                             Recorder())


def documents(settings, ns="acme"):
    """{number: row} of the tenant's finalized documents."""
    with db.transaction(settings) as conn:
        return {r["number"]: r for r in conn.cursor(row_factory=psycopg.rows.dict_row).execute(
            """SELECT i.*, c.number AS corrects, r.number AS replaces, v.number AS voided
                 FROM openfaas_metering.invoices i
                 LEFT JOIN openfaas_metering.invoices c ON c.invoice_id = i.corrects_invoice_id
                 LEFT JOIN openfaas_metering.invoices r ON r.invoice_id = i.replaces_invoice_id
                 LEFT JOIN openfaas_metering.invoices v ON v.invoice_id = i.voided_by
                WHERE i.namespace = %s AND i.status <> 'draft' ORDER BY i.issued_at, i.number""",
            (ns,))}


def verified(settings, number):
    report = audit.verify(settings, number)
    return report["match"] and chain.verify(settings, number)["intact"], report


def assert_every_document_verifies(settings, ns="acme"):
    """verify (the document, its month, its series' chain) passes for every document."""
    for number in documents(settings, ns):
        ok, report = verified(settings, number)
        assert ok, (number, report)


def test_a_void_credits_everything_left_and_a_late_event_is_waived_not_billed(
        database_url, tmp_path):
    s, number = _settings(database_url, tmp_path)
    answer = adjust(s, void=number, reason="duplicated_charge", note="billed twice by hand")
    note = answer["credit_note"]
    assert note["number"] == "CN-2026-000001" and Decimal(note["total"]) == Decimal("-13.69")
    docs = documents(s)
    assert docs[number]["voided"] == note["number"] and docs[number]["voided_at"] is not None
    assert docs[note["number"]]["corrects"] == number
    assert docs[note["number"]]["credit_reason"] == "duplicated_charge"
    assert docs[note["number"]]["credit_memo"] == "billed twice by hand"
    assert_every_document_verifies(s)   # the invoice and its credit note
    # the event, in the void's transaction, names both documents and the amount
    with db.transaction(s) as conn:
        [(data,)] = conn.execute("SELECT data FROM openfaas_metering.webhook_events "
                                 "WHERE type = 'invoice.voided'").fetchall()
        events = set(conn.execute("SELECT type, data ->> 'number' "
                                  "FROM openfaas_metering.webhook_events").fetchall())
    assert ("credit_note.finalized", note["number"]) in events
    assert data["number"] == number and data["credit_note"] == note["number"]
    assert (data["reason"], data["amount"], data["currency"], data["tenant"]) == (
        "duplicated_charge", "-13.69", "EUR", "acme")
    # late September usage (1,000 GB-s): the voided month is reported, nothing is billed
    send(s, [event("acme", "2026-09-20T10:00:00Z", 1_000 * NS)])
    september = close(s, NOV_2)["periods"][0]
    assert september["period"] == "2026-09" and september["invoices"] == []
    assert september["waived"] == [{"tenant": "acme", "voided": number}]
    assert len(documents(s)) == 2
    # the month read again (asked by name, or new usage of another tenant of it) lists
    # the same late usage no more; new late usage is a new report
    assert "waived" not in close(s, NOV_2, period="2026-09")["periods"][-1]
    send(s, [event("other", "2026-09-21T10:00:00Z", 1_000 * NS)])
    assert "waived" not in close(s, NOV_2, period="2026-09")["periods"][-1]
    send(s, [event("acme", "2026-09-22T10:00:00Z", 1_000 * NS)])
    assert close(s, NOV_2, period="2026-09")["periods"][-1]["waived"] == [
        {"tenant": "acme", "voided": number}]
    again = pytest.raises(RequestError, adjust, s, void=number, reason="other")
    assert again.value.status == 409 and "voided already (by CN-2026-000001)" in str(again.value)


def test_void_and_reissue_prices_the_month_with_the_tenants_current_details(
        database_url, tmp_path):
    s, number = _settings(database_url, tmp_path)
    with db.transaction(s) as conn:  # after the close: a new tax rate and address
        conn.execute("""UPDATE openfaas_metering.tenants SET tax_rate_override = 0.07,
                               address_override = 'Hauptstr. 1' || chr(10) || '10115 Berlin',
                               tax_id_override = 'DE999999999' WHERE namespace = 'acme'""")
    answer = adjust(s, void=number, reason="order_change", reissue=True)
    reissue = answer["reissue"]
    # 11.50 + 0.81 (11.50 x 7 % = 0.805, half-up)
    assert reissue["number"] == "INV-2026-000002" and Decimal(reissue["total"]) == Decimal(
        "12.31")
    docs = documents(s)
    new = docs[reissue["number"]]
    assert new["replaces"] == number and new["document_kind"] == "invoice"
    assert new["bill_to_address"] == "Hauptstr. 1\n10115 Berlin"
    assert new["bill_to_tax_id"] == "DE999999999"
    assert (new["period_start"], new["period_end"]) == (docs[number]["period_start"],
                                                        docs[number]["period_end"])
    assert docs[number]["voided"] == answer["credit_note"]["number"]
    # the reissue's invoice.finalized names the invoice it replaces
    with db.transaction(s) as conn:
        [(replaces,)] = conn.execute(
            "SELECT data ->> 'replaces' FROM openfaas_metering.webhook_events WHERE type ="
            " 'invoice.finalized' AND data ->> 'number' = %s", (reissue["number"],)).fetchall()
    assert replaces == number
    # late usage: corrected against the reissue, at its 7 %: 1.00 + 0.07
    send(s, [event("acme", "2026-09-20T10:00:00Z", 1_000 * NS)])
    [supplementary] = close(s, NOV_2)["periods"][0]["invoices"]
    assert supplementary["kind"] == "supplementary"
    assert supplementary["corrects"] == reissue["number"]
    assert Decimal(supplementary["total"]) == Decimal("1.07")
    assert_every_document_verifies(s)


def test_partial_credits_never_take_more_than_is_left_and_are_not_billed_again(
        database_url, tmp_path):
    s, number = _settings(database_url, tmp_path)
    first = adjust(s, credit=number, lines=[{"line": 1, "amount": "5.75"}],
                   reason="product_unsatisfactory")
    # 5.75 + 1.09 tax (5.75 x 19 % = 1.0925)
    assert Decimal(first["credit_note"]["total"]) == Decimal("-6.84")
    assert first["left"] == {"subtotal": "5.75", "tax": "1.10", "total": "6.85",
                             "currency": "EUR"}
    for lines, status, reason in (
            ([{"line": 1, "amount": "5.76"}], 409, "lines[0].amount: 5.76 EUR is more than"),
            ([{"line": 2, "amount": "0.01"}], 409, "lines[0].amount: 0.01 EUR is more than"),
            ([{"line": 9, "amount": "1.00"}], 409, "lines[0].line: the document has no line 9"),
            ([{"line": 1, "amount": "1.005"}], 400, "lines[0].amount: EUR amounts have 2")):
        refused = pytest.raises(RequestError, adjust, s, credit=number, lines=lines,
                                reason="other")
        assert refused.value.status == status and str(refused.value).startswith(reason)
    # the rest of line 1: the tax left (1.10), not 1.09 again: the two add up to the invoice
    second = adjust(s, credit=number, lines=[{"line": 1, "amount": "5.75"}], reason="other")
    assert Decimal(second["credit_note"]["total"]) == Decimal("-6.85")
    nothing = pytest.raises(RequestError, adjust, s, void=number, reason="other")
    assert nothing.value.status == 409 and "nothing is left" in str(nothing.value)
    # late usage (1,000 GB-s) bills 1.00 + 0.19, never the 11.50 credited
    send(s, [event("acme", "2026-09-20T10:00:00Z", 1_000 * NS)])
    [supplementary] = close(s, NOV_2)["periods"][0]["invoices"]
    assert supplementary["corrects"] == number
    assert Decimal(supplementary["total"]) == Decimal("1.19")
    assert_every_document_verifies(s)


def test_the_database_lets_voided_by_move_once_and_never_again(database_url, tmp_path):
    s, number = _settings(database_url, tmp_path)
    note = adjust(s, void=number, reason="other")["credit_note"]
    for change in ("voided_by = NULL", "voided_at = now() - interval '1 day'",
                   "voided_by = gen_random_uuid()"):
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation,
                           match="cannot change|violates"):
            with psycopg.connect(database_url) as conn:
                conn.execute(f"UPDATE openfaas_metering.invoices SET {change} "
                             "WHERE number = %s", (number,))
    # a document may be voided only by a credit note that credits it
    send(s, [event("other", "2026-10-10T10:00:00Z", NS)])
    [other] = close(s, NOV_2)["periods"][0]["invoices"]
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="credits it"):
        with psycopg.connect(database_url) as conn:
            conn.execute("""UPDATE openfaas_metering.invoices SET voided_by = %s,
                                   voided_at = now() WHERE number = %s""",
                         (note["invoice_id"], other["number"]))


def test_a_voided_supplementary_invoice_is_a_concession_the_next_correction_leaves_alone(
        database_url, tmp_path):
    s, number = _settings(database_url, tmp_path)
    send(s, [event("acme", "2026-09-20T10:00:00Z", 1_000 * NS)])
    [supplementary] = close(s, NOV_2)["periods"][0]["invoices"]   # 1.00 + 0.19
    assert Decimal(supplementary["total"]) == Decimal("1.19")
    refused = pytest.raises(RequestError, adjust, s, void=supplementary["number"],
                            reason="other", reissue=True)
    assert refused.value.status == 409 and "only a month's invoice" in str(refused.value)
    # the month's invoice has a correction: a reissue would bill the late 1.19 twice
    refused = pytest.raises(RequestError, adjust, s, void=number, reason="other", reissue=True)
    assert refused.value.status == 409 and supplementary["number"] in str(refused.value)
    note = adjust(s, void=supplementary["number"], reason="duplicated_charge")["credit_note"]
    assert Decimal(note["total"]) == Decimal("-1.19") and note["corrects"] == supplementary[
        "number"]
    # a credit note cannot be voided or credited
    refused = pytest.raises(RequestError, adjust, s, void=note["number"], reason="other")
    assert refused.value.status == 409 and "is a credit note" in str(refused.value)
    # more late usage (2,000 GB-s): 2.00 + 0.38, not the voided 1.19 again
    send(s, [event("acme", "2026-09-21T10:00:00Z", 2_000 * NS)])
    [again] = close(s, DEC_2)["periods"][0]["invoices"]
    assert again["corrects"] == number and Decimal(again["total"]) == Decimal("2.38")
    assert_every_document_verifies(s)


def test_a_reissue_may_use_a_newer_price_book_version_never_an_older_one(
        database_url, tmp_path):
    s, number = _settings(database_url, tmp_path)
    with db.transaction(s) as conn:   # version 2: EUR compute at 0.002 per GB-s
        newer, _ = pricebook_store.store(conn, BOOK.replace(
            'eur:\n    currency: EUR\n    meters:\n      gb_seconds: {"*": {unit_price: "0.001"}}',
            'eur:\n    currency: EUR\n    meters:\n      gb_seconds: {"*": {unit_price: "0.002"}}'))
    assert newer.version == 2
    answer = adjust(s, void=number, reason="order_change", reissue=True, price_book_version=2)
    # 11,500 GB-s x 0.002 = 23.00, tax 4.37 (23.00 x 19 %)
    assert Decimal(answer["reissue"]["total"]) == Decimal("27.37")
    assert answer["reissue"]["price_book_version"] == 2
    # the reissue (version 2) voided and reissued again at version 1: refused, nothing issued
    older = pytest.raises(RequestError, adjust, s, void=answer["reissue"]["number"],
                          reason="other", reissue=True, price_book_version=1)
    assert older.value.status == 409 and str(older.value).startswith(
        "price_book_version: 1 is older")
    assert len(documents(s)) == 3
    assert_every_document_verifies(s)
