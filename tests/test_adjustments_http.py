"""Void, reissue and credit end to end: aggregate-month and the real email-invoice behind
the local gateway, real PostgreSQL, a real aiosmtpd server that receives the mails.

Figures: the `euro` plan of corrections_helpers.BOOK (0.001 EUR per GB-s, 19 % tax, half-up).
acme: 11,500 GB-s = 11.50 + 2.19 = 13.69; beta: 2,000 GB-s = 2.00 + 0.38 = 2.38."""
from __future__ import annotations

import dataclasses
import time
from decimal import Decimal

import pytest
import requests

from chargeback.core import db

from .billing_helpers import NS, event, on_plan, send, settings_for
from .conftest import ADMIN
from .corrections_helpers import BOOK
from .invoices import MAIL_ENV
from .waiting import until


@pytest.fixture
def billing(local_runtime, product_stack, database_url, secrets_dir, smtp, tmp_path):
    """(aggregate-month's URL, settings, the runtime) with September closed and its two
    mails received."""
    settings = settings_for(database_url, tmp_path, book=BOOK)
    for ns, gb_seconds in (("acme", 11_500), ("beta", 2_000)):
        on_plan(settings, ns, "euro")
        send(settings, [event(ns, "2026-09-10T10:00:00Z", gb_seconds * NS)])
    with db.transaction(settings) as conn:
        conn.execute("UPDATE openfaas_metering.tenants SET email = namespace || '@example.com'")
    stack = dataclasses.replace(product_stack, functions={
        name: product_stack.functions[name] for name in ("aggregate-month", "email-invoice")})
    runtime = local_runtime(stack, cron=False, function_env={
        "DATABASE_URL": database_url, "PRICEBOOK_FILE": settings.pricebook_file,
        "SECRETS_DIR": str(secrets_dir), "SMTP_URL": smtp.url, **MAIL_ENV})
    url = f"{runtime.gateway_url}/function/aggregate-month.openfaas-system"
    closed = requests.post(url, json={"period": "2026-09"}, headers=ADMIN, timeout=60)
    assert [i["number"] for i in closed.json()["periods"][0]["invoices"]] == [
        "INV-2026-000001", "INV-2026-000002"]
    mails(smtp, 2)
    return url, settings, runtime


def mails(smtp, count, timeout_s=30):
    """{subject: (recipient, text part)} of every mail, once `count` have arrived."""
    deadline = time.monotonic() + timeout_s
    while len(smtp.received) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(smtp.received) == count, [m.message["Subject"] for m in smtp.received]
    return {m.message["Subject"]: (m.rcpt_tos, m.message.get_body(("plain",)).get_content())
            for m in smtp.received}


def post(url, body, headers=ADMIN):
    return requests.post(url, json=body, headers=headers, timeout=60)


def test_void_and_reissue_and_a_partial_credit_through_the_gateway_each_mailed_once(
        billing, smtp):
    url, settings, runtime = billing
    void = post(url, {"void": "INV-2026-000001", "reason": "order_change",
                      "note": "moved to the annual plan", "reissue": True})
    assert void.status_code == 200, void.text
    body = void.json()
    assert body["credit_note"]["number"] == "CN-2026-000001"
    assert Decimal(body["credit_note"]["total"]) == Decimal("-13.69")
    assert body["reissue"]["number"] == "INV-2026-000003"
    assert Decimal(body["reissue"]["total"]) == Decimal("13.69")   # same month, same terms
    credit = post(url, {"credit": "INV-2026-000002", "lines": [{"line": 1, "amount": "1.50"}],
                        "reason": "product_unsatisfactory"})
    assert credit.status_code == 200, credit.text
    # 1.50 + 0.29 (1.50 x 19 % = 0.285, half-up)
    assert Decimal(credit.json()["credit_note"]["total"]) == Decimal("-1.79")
    over = post(url, {"credit": "INV-2026-000002", "lines": [{"line": 1, "amount": "0.51"}],
                      "reason": "other"})
    assert over.status_code == 409 and over.json()["error"].startswith(
        "lines[0].amount: 0.51 EUR is more than is left of line 1 (0.50 EUR)")
    received = mails(smtp, 5)
    notes = {s: v for s, v in received.items() if "CN-2026-" in s}
    assert len(notes) == 2
    (to, text), = [v for s, v in notes.items() if "CN-2026-000001" in s]
    assert to == ["acme@example.com"]
    assert "Corrects invoice INV-2026-000001" in text and "reason: order change" in text
    assert "-€13.69" in text or "−€13.69" in text
    # a credit note owes nothing: no due date, no "Payment due"
    assert "Nothing to pay" in text and "Payment due" not in text and "due " not in text
    (to, text), = [v for s, v in notes.items() if "CN-2026-000002" in s]
    assert to == ["beta@example.com"] and "Corrects invoice INV-2026-000002" in text
    (to, text), = [v for s, v in received.items() if "INV-2026-000003" in s]
    assert to == ["acme@example.com"] and "Replaces invoice INV-2026-000001" in text
    # every document and both chains verify; the credit note's usage CSV is exported
    for number in ("INV-2026-000001", "INV-2026-000002", "INV-2026-000003", "CN-2026-000001",
                   "CN-2026-000002"):
        report = post(url, {"verify": number}).json()
        assert report["match"] is True and report["chain"]["intact"] is True, report
    export = post(url, {"export": "CN-2026-000001"})
    assert export.status_code == 200 and export.text.startswith("line_no,kind,meter")
    # nothing more was mailed: each document once. Every hand-off to email-invoice has
    # run to its end (the gateway's queue is idle and no call is in a function), so no
    # other mail is on its way
    until(runtime.gateway.idle, "the gateway's asynchronous calls to finish")
    assert len(smtp.received) == 5


def test_without_the_token_void_and_credit_are_401_and_bad_input_is_400_or_404(billing, smtp):
    url, settings, _ = billing
    for body in ({"void": "INV-2026-000001", "reason": "other"},
                 {"credit": "INV-2026-000001", "lines": [{"line": 1, "amount": "1.00"}],
                  "reason": "other"}):
        for headers in ({}, {"Authorization": "Bearer not-the-token"}):
            r = post(url, body, headers)
            assert r.status_code == 401 and r.text.count("\n") <= 1, r.text
            assert r.json()["error"].startswith(f"{next(iter(body))} needs the operator's token")
    for body, status, reason in (
            ({"void": "INV-2026-000001", "reason": "too expensive"}, 400, "reason: expected"),
            ({"void": "INV-2026-000001"}, 400, "reason: expected"),
            ({"void": "INV-2026-000001", "reason": "other", "lines": []}, 400, "lines: not an"),
            ({"credit": "INV-2026-000001", "lines": [{"line": 1, "amount": 1.5}],
              "reason": "other"}, 400, "lines[0].amount: expected a positive decimal string"),
            ({"void": "INV-2026-000001", "reason": "other", "price_book_version": 1}, 400,
             "price_book_version: only with"),
            ({"void": "INV-2099-000001", "reason": "other"}, 404, "void: no document"),
            ({"void": "INV-2026-000001", "reason": "other", "reissue": True,
              "price_book_version": 99}, 404, "price_book_version: no price book version 99")):
        r = post(url, body)
        assert r.status_code == status and r.json()["error"].startswith(reason), (body, r.text)
    # nothing was issued by any of those, and no mail went out beyond September's two
    with db.transaction(settings) as conn:
        assert conn.execute("SELECT count(*) FROM openfaas_metering.invoices").fetchone()[0] == 2
    assert len(smtp.received) == 2


def test_a_payment_through_the_gateway_needs_the_admin_token_and_sets_the_status(billing):
    url, settings, _ = billing
    body = {"payment": {"invoice": "INV-2026-000002", "amount": "1.00", "date": "2026-10-05",
                        "reference": "TX-77"}}
    assert post(url, body, headers={}).status_code == 401
    # beta's 2.38: 1.00 paid, 1.38 open
    answer = post(url, body).json()
    assert (answer["invoice"]["status"], answer["invoice"]["open"]) == ("partially_paid", "1.38")
    bad = post(url, {"payment": {**body["payment"], "amount": "-1"}})
    assert bad.status_code == 400 and bad.json()["error"].startswith("payment.amount")
    with db.transaction(settings) as conn:
        assert conn.execute("SELECT sum(amount) FROM openfaas_metering.payments"
                            ).fetchone()[0] == Decimal("1.00")
