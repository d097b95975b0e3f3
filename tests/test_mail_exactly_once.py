"""Exactly once against SMTP servers that misbehave as real ones do (issue 31, items 1-4):
an invoice through email-invoice (the function, served by the template's server) and
budget alerts through evaluate-budgets' code, both on the one mail outbox, against a
real SMTP server on loopback and the real database."""
from __future__ import annotations

import time
import uuid

import psycopg
import pytest
import requests

from chargeback.budgets import evaluate

from .billing_helpers import NS, event, send, settings_for
from .invoices import MAIL_ENV, finalized_invoice, invoice_row, mail_row
from .smtp_faults import DROP, RESET, FaultySmtp
from .budgets_helpers import NOW
from .budgets_helpers import budget_tenant as _tenant


@pytest.fixture
def faulty():
    servers = []

    def start(**behaviour) -> FaultySmtp:
        servers.append(FaultySmtp(**behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def _email_invoice(serve_function, database_url, server, **env):
    return serve_function("email-invoice", env={"DATABASE_URL": database_url,
                                                "SMTP_URL": server.url, **MAIL_ENV, **env})


def _post(fn, invoice_id):
    return requests.post(fn.url, json={"invoice_id": invoice_id}, timeout=30)


def _spend(settings, namespace: str, gb_seconds: int) -> None:
    """`gb_seconds` on 2 September: at 0.001 USD per GB-s, gb_seconds / 1000 USD."""
    send(settings, [event(namespace, "2026-09-02T10:00:00Z", gb_seconds * NS,
                          function_name=f"fn-{uuid.uuid4().hex[:8]}")])


def _crossing_mails(database_url, namespace: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("""SELECT threshold_percent, mail_status, mail_error
                                 FROM openfaas_metering.budget_crossings
                                WHERE namespace = %s ORDER BY threshold_percent""",
                            (namespace,)).fetchall()


# 1. Accepted, then QUIT goes wrong -----------------------------------------------------

@pytest.mark.parametrize("quit_reply", ["421 4.4.2 closing", RESET],
                         ids=["421", "reset"])
def test_an_invoice_the_server_accepted_is_sent_once_whatever_quit_answers(
        serve_function, database_url, faulty, quit_reply):
    server = faulty(quit=quit_reply)
    fn = _email_invoice(serve_function, database_url, server)
    invoice_id = finalized_invoice(database_url)
    first = _post(fn, invoice_id)
    assert (first.status_code, first.json()["status"]) == (200, "sent"), first.text
    again = [_post(fn, invoice_id) for _ in range(3)]  # the queue's and the close's retries
    assert [r.json()["status"] for r in again] == ["already-sent"] * 3
    assert len(server.received) == 1
    assert invoice_row(database_url, invoice_id)["status"] == "sent"


def test_budget_mails_the_server_accepted_are_sent_once_whatever_quit_answers(
        database_url, tmp_path, faulty):
    server = faulty(quit="421 4.4.2 closing")
    s = settings_for(database_url, tmp_path, SMTP_URL=server.url, **MAIL_ENV)
    _tenant(s, "acme", "10.00")
    _spend(s, "acme", 10_000)  # 10.00 USD: 50, 80 and 100 % of 10.00 at once
    outs = [evaluate.evaluate(s, NOW)["mails"] for _ in range(3)]
    assert outs[0] == {"sent": 3, "undeliverable": 0, "retrying": 0}
    assert outs[1:] == [{"sent": 0, "undeliverable": 0, "retrying": 0}] * 2
    assert len({m["Message-ID"] for m in server.messages()}) == len(server.received) == 3
    assert [status for _, status, _ in _crossing_mails(database_url, "acme")] == ["sent"] * 3


# 2. Accepted, then 554 at QUIT: sent, not undeliverable -------------------------------

def test_a_554_at_quit_after_the_message_was_accepted_records_sent_not_undeliverable(
        serve_function, database_url, tmp_path, faulty):
    server = faulty(quit="554 5.3.0 something went wrong")
    fn = _email_invoice(serve_function, database_url, server)
    invoice_id = finalized_invoice(database_url)
    r = _post(fn, invoice_id)
    assert (r.status_code, r.json()["status"]) == (200, "sent"), r.text
    row = invoice_row(database_url, invoice_id)
    assert (row["status"], row["undeliverable_reason"]) == ("sent", None)
    s = settings_for(database_url, tmp_path, SMTP_URL=server.url, **MAIL_ENV)
    _tenant(s, "acme", "10.00")
    _spend(s, "acme", 10_000)
    assert evaluate.evaluate(s, NOW)["mails"]["sent"] == 3
    assert _crossing_mails(database_url, "acme") == [(50, "sent", None), (80, "sent", None),
                                                     (100, "sent", None)]
    with psycopg.connect(database_url) as conn:  # and no invoice.undeliverable went out
        assert conn.execute("SELECT count(*) FROM openfaas_metering.webhook_events"
                            " WHERE type = 'invoice.undeliverable'").fetchone()[0] == 0


# 3. One tenant's lasting 451 never holds another's mail; it ends undeliverable ---------

def test_a_lasting_451_for_one_tenant_holds_only_that_tenants_mail_until_the_attempt_limit(
        database_url, tmp_path, faulty):
    server = faulty(rcpt={"full@stuck.example": "451 4.2.2 mailbox full, try later"})
    s = settings_for(database_url, tmp_path, SMTP_URL=server.url, **{
        **MAIL_ENV, "MAIL_MAX_ATTEMPTS": "3", "MAIL_RETRY_BASE_SECONDS": "0.1"})
    _tenant(s, "stuck", "10.00", email="full@stuck.example")
    _tenant(s, "other", "10.00", email="billing@other.example")
    _spend(s, "stuck", 10_000)
    first = evaluate.evaluate(s, NOW)  # stuck's three crossings are the oldest mails
    assert first["mails"]["sent"] == 0 and first["mails"]["retrying"] >= 3
    _spend(s, "other", 10_000)
    second = evaluate.evaluate(s, NOW)
    assert second["mails"]["sent"] == 3  # all of other's, in the very next evaluation
    assert sorted(m["To"].addresses[0].addr_spec for m in server.messages()) == [
        "billing@other.example"] * 3
    deadline = time.monotonic() + 20
    while any(status == "pending" for _, status, _ in _crossing_mails(database_url, "stuck")):
        assert time.monotonic() < deadline, _crossing_mails(database_url, "stuck")
        time.sleep(0.1)  # each stuck mail waits for its own backoff (0.05-0.1 s, then 2x)
        evaluate.evaluate(s, NOW)
    stuck = _crossing_mails(database_url, "stuck")
    assert [status for _, status, _ in stuck] == ["undeliverable"] * 3
    assert all("gave up after 3 attempts" in reason and "451 4.2.2 mailbox full" in reason
               for _, _, reason in stuck)
    # 3 mails x 3 attempts, and nothing after the limit
    evaluate.evaluate(s, NOW)
    assert server.rcpt_seen.count("full@stuck.example") == 9


# 4. The connection fails after the message went: held until the claim is stale --------

def test_a_connection_dropped_before_the_answer_to_data_holds_the_mail_until_its_claim_is_stale(
        serve_function, database_url, faulty):
    """The server stored the message and dropped the connection before answering DATA:
    it may have the mail. The claim is kept for SEND_CLAIM_TIMEOUT_SECONDS (2 here), so
    the queue's quick retries send nothing; after it the same message goes again."""
    server = faulty(data=[DROP, "250 OK"])
    fn = _email_invoice(serve_function, database_url, server, SEND_CLAIM_TIMEOUT_SECONDS="2")
    invoice_id = finalized_invoice(database_url)
    first = _post(fn, invoice_id)
    assert first.status_code == 503 and "may" not in first.json().get("status", "")
    held = [_post(fn, invoice_id) for _ in range(3)]  # retries within the lease
    assert [r.status_code for r in held] == [503] * 3 and len(server.received) == 1
    assert mail_row(database_url, invoice_id)["attempts"] == 1
    time.sleep(2.1)
    r = _post(fn, invoice_id)
    assert (r.status_code, r.json()["status"]) == (200, "sent"), r.text
    first_copy, second_copy = server.messages()
    assert first_copy["Message-ID"] == second_copy["Message-ID"] == r.json()["message_id"]
