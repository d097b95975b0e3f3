"""A finalized document cannot change in the database, whoever connects; the hash chain
shows what was changed or removed behind the triggers' back."""
from __future__ import annotations

import psycopg
import pytest
import requests

from chargeback.billing import audit
from chargeback.documents import chain

from .billing_helpers import NS, event, send, settings_for
from .conftest import ADMIN
from .billing_helpers import close


@pytest.fixture
def closed(database_url, tmp_path):
    """September closed for three tenants (three finalized invoices), one tenant's
    October still a draft."""
    s = settings_for(database_url, tmp_path)
    send(s, [event(ns, "2026-09-10T10:00:00Z", 1000 * NS) for ns in ("a-co", "b-co", "c-co")])
    numbers = [i["number"] for i in close(s, period="2026-09")["periods"][0]["invoices"]]
    assert numbers == ["INV-2026-000001", "INV-2026-000002", "INV-2026-000003"]
    return s, numbers


def _refused(database_url, statement, params=()):
    with psycopg.connect(database_url) as conn, pytest.raises(
            psycopg.errors.IntegrityConstraintViolation) as refused:
        conn.execute(statement, params)
    return str(refused.value)


@pytest.mark.parametrize("assignment", [
    "number = 'INV-2026-999999'", "total = total + 1", "subtotal = 0", "tax_rate = 0.5",
    "bill_to_name = 'Someone Else'", "bill_to_email = 'x@evil.example'",
    "lines_sha256 = 'x'", "currency = 'EUR'", "status = 'draft', number = NULL"])
def test_what_a_finalized_invoice_says_cannot_be_updated(closed, database_url, assignment):
    message = _refused(database_url, f"UPDATE openfaas_metering.invoices SET {assignment}"
                                     " WHERE number = 'INV-2026-000002'")
    assert "invoice INV-2026-000002 is finalized" in message


def test_a_finalized_total_cannot_be_changed_by_clearing_its_seal_in_the_same_update(
        closed, database_url):
    # the trigger asks whether the row *was* sealed (OLD): a statement that clears the
    # seal while it sets the total would otherwise pass, and the seal at commit would
    # hash the forged total as if it were genuine
    message = _refused(database_url, "UPDATE openfaas_metering.invoices SET total = 0,"
                                     " document_sha256 = NULL, previous_sha256 = NULL"
                                     " WHERE number = 'INV-2026-000002'")
    assert "invoice INV-2026-000002 is finalized" in message
    with psycopg.connect(database_url) as conn:
        total, sealed = conn.execute("SELECT total, document_sha256 IS NOT NULL FROM"
                                     " openfaas_metering.invoices"
                                     " WHERE number = 'INV-2026-000002'").fetchone()
    # 1000 GB-s at 0.001 USD (billing_helpers.BOOK, standard plan, no tax) = 1.00
    assert (total, sealed) == (1, True)


def test_a_finalized_invoice_and_its_lines_cannot_be_deleted_or_changed(closed, database_url):
    one = "(SELECT invoice_id FROM openfaas_metering.invoices WHERE number = 'INV-2026-000001')"
    assert "cannot be deleted" in _refused(
        database_url, "DELETE FROM openfaas_metering.invoices WHERE number = 'INV-2026-000001'")
    for statement in (f"UPDATE openfaas_metering.invoice_lines SET amount = 0"
                      f" WHERE invoice_id = {one}",
                      f"UPDATE openfaas_metering.invoice_lines SET quantity = 1,"
                      f" description = 'x' WHERE invoice_id = {one}",
                      f"DELETE FROM openfaas_metering.invoice_lines WHERE invoice_id = {one}",
                      f"INSERT INTO openfaas_metering.invoice_lines (invoice_id, line_no, kind,"
                      f" description, quantity, unit, amount) SELECT {one}, 99, 'usage',"
                      f" 'extra', 1, 'GB-s', 100",
                      "TRUNCATE openfaas_metering.invoice_lines",
                      "TRUNCATE openfaas_metering.invoices CASCADE"):
        assert "finalized" in _refused(database_url, statement), statement


def test_only_the_delivery_columns_move_after_finalization(closed, database_url):
    with psycopg.connect(database_url) as conn:
        conn.execute("""UPDATE openfaas_metering.invoices
                           SET queued_at = now(), queued_count = queued_count + 1,
                               last_send_error = 'timeout'
                         WHERE number = 'INV-2026-000001'""")
        conn.execute("""UPDATE openfaas_metering.invoices
                           SET status = 'sent', sent_at = now(), message_id = '<m@x>',
                               last_send_error = NULL
                         WHERE number = 'INV-2026-000001'""")
        status = conn.execute("SELECT status FROM openfaas_metering.invoices"
                              " WHERE number = 'INV-2026-000001'").fetchone()[0]
    assert status == "sent"


def test_each_document_names_the_sha256_of_the_one_before_in_its_series(closed, database_url):
    with psycopg.connect(database_url) as conn:
        conn.execute("SET TimeZone = 'Asia/Tokyo'")  # the hash does not depend on it
        rows = conn.execute(
            """SELECT number, previous_sha256, document_sha256,
                      openfaas_metering.document_sha256(invoice_id, previous_sha256)
                 FROM openfaas_metering.invoices ORDER BY number""").fetchall()
    assert [r[0] for r in rows] == closed[1]
    assert rows[0][1] is None  # the first of 2026
    assert rows[1][1] == rows[0][2] and rows[2][1] == rows[1][2]
    assert all(len(r[2]) == 64 and r[2] == r[3] for r in rows)


def _tamper(database_url, *statements):
    """As the superuser with every trigger off (session_replication_role = replica)."""
    with psycopg.connect(database_url) as conn:
        conn.execute("SET session_replication_role = replica")
        for statement in statements:
            conn.execute(statement)


def test_verify_reports_a_document_replaced_altered_or_removed_behind_the_triggers(
        close_via_gateway, database_url):
    url, *_ = close_via_gateway
    r = requests.post(url, json={"period": "2026-09"}, headers=ADMIN, timeout=60)
    assert [i["number"] for i in r.json()["periods"][0]["invoices"]] == [
        f"INV-2026-{n:06d}" for n in range(1, 5)]

    def verify(number="INV-2026-000001"):
        answer = requests.post(url, json={"verify": number}, headers=ADMIN, timeout=60)
        assert answer.status_code == 200, answer.text
        return answer.json()

    intact = verify()
    assert intact["match"] and intact["chain"] == {
        "series": "INV-2026-", "documents": 4, "intact": True, "problems": []}
    # replaced by a document sealed as if genuine, but whose predecessor differs
    _tamper(database_url, "UPDATE openfaas_metering.invoices SET previous_sha256 = repeat('0', 64),"
                          " document_sha256 = openfaas_metering.document_sha256(invoice_id,"
                          " repeat('0', 64)) WHERE number = 'INV-2026-000004'")
    assert verify()["chain"]["problems"] == [
        "INV-2026-000004: does not follow INV-2026-000003 (previous_sha256 is not that "
        "document's SHA-256)"]
    _tamper(database_url, "UPDATE openfaas_metering.invoices SET previous_sha256 = NULL,"
                          " document_sha256 = NULL WHERE number = 'INV-2026-000004'",
            "SELECT openfaas_metering.seal_series('INV-2026-')")  # sealed again as it was
    _tamper(database_url, "UPDATE openfaas_metering.invoices SET bill_to_email = 'x@evil'"
                          " WHERE number = 'INV-2026-000002'")
    altered = verify()  # another document of the series: the whole chain is checked
    assert not altered["match"] and altered["chain"]["problems"] == [
        "INV-2026-000002: altered (its content no longer matches its document_sha256)"]
    _tamper(database_url,
            "DELETE FROM openfaas_metering.invoice_lines WHERE invoice_id IN (SELECT invoice_id"
            " FROM openfaas_metering.invoices WHERE number = 'INV-2026-000003')",
            "DELETE FROM openfaas_metering.invoices WHERE number = 'INV-2026-000003'")
    assert verify("INV-2026-000004")["chain"]["problems"] == [
        "INV-2026-000002: altered (its content no longer matches its document_sha256)",
        "INV-2026-000003: missing (the series goes from INV-2026-000002 to INV-2026-000004)"]


def test_a_draft_is_recomputed_freely(database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    send(s, [event("gpu-co", "2026-09-10T10:00:00Z", 1000 * NS)])
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO openfaas_metering.tenants (namespace, plan_override)"
                     " VALUES ('gpu-co', 'no-such-plan')")
    assert close(s, period="2026-09")["periods"][0]["drafts"]
    assert close(s, period="2026-09")["periods"][0]["drafts"]  # recomputed: no refusal
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE openfaas_metering.tenants SET plan_override = NULL")
    assert close(s, period="2026-09")["periods"][0]["invoices"][0]["number"] == \
        "INV-2026-000001"
    assert audit.verify(s, "INV-2026-000001")["match"]


def test_a_finalized_documents_usage_csv_cannot_change_or_be_replaced(closed, database_url):
    one = "(SELECT usage_csv_sha256 FROM openfaas_metering.invoices" \
          " WHERE number = 'INV-2026-000001')"
    for statement in (f"UPDATE openfaas_metering.document_usage_csvs SET csv = 'forged'"
                      f" WHERE sha256 = {one}",
                      f"DELETE FROM openfaas_metering.document_usage_csvs WHERE sha256 = {one}",
                      "TRUNCATE openfaas_metering.document_usage_csvs"):
        assert "cannot" in _refused(database_url, statement), statement
    # the row's own usage_csv (where documents before sql/120 kept it) cannot be set either
    message = _refused(database_url, "UPDATE openfaas_metering.invoices SET usage_csv = 'forged'"
                                     " WHERE number = 'INV-2026-000001'")
    assert "usage_csv cannot change" in message


def test_the_first_document_of_a_series_removed_behind_the_triggers_breaks_the_chain(
        closed, database_url):
    # a series starts at 1: INV-2026-000002 first in line means 000001 is gone
    _tamper(database_url,
            "DELETE FROM openfaas_metering.invoice_lines WHERE invoice_id IN (SELECT invoice_id"
            " FROM openfaas_metering.invoices WHERE number = 'INV-2026-000001')",
            "DELETE FROM openfaas_metering.invoices WHERE number = 'INV-2026-000001'")
    with psycopg.connect(database_url) as conn:
        series, count, found = chain.problems(conn, "INV-2026-000003")
    assert (series, count) == ("INV-2026-", 2)
    assert found == ["INV-2026-000001: missing (the series goes from its start to "
                     "INV-2026-000002)"]
