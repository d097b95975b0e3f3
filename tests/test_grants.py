"""Credits the operator grants: applied at close before tax as a "Credit applied" line,
the earliest expiry first, never below zero, the rest carried over; expiries recorded;
corrections re-apply the grants as they stood for the month; credit.balance_low.
Real PostgreSQL, the real close.

Figures: the `euro` plan of corrections_helpers.BOOK (0.001 EUR per GB-s, 19 % tax,
half-up)."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from chargeback.billing import grants, payment_requests
from chargeback.billing.invoicing import Line
from chargeback.core import db
from chargeback.core.responses import RequestError

from .billing_helpers import NS, close, event, on_plan, send, settings_for
from .corrections_helpers import BOOK, DEC_2, NOV_2, OCT_2


def d(text: str) -> Decimal:
    return Decimal(text)


def line(amount, meter=None):
    return Line("usage", "x", d("1"), "x", d(amount), meter=meter)


def test_grants_give_in_turn_never_more_than_the_subtotal_nor_a_meters_lines():
    lines = [line("8.00", "gb_seconds"), line("2.00", "invocations"), line("5.00")]
    applied = grants.apply(lines, [
        {"grant_id": "g1", "available": "3.00", "meter": "invocations"},   # 2.00 of its meter
        {"grant_id": "g2", "available": "10.00"},                          # 10.00
        {"grant_id": "g3", "available": "9.00"}])                          # 15 - 12 = 3.00
    assert applied.total == d("15.00")
    assert applied.by_grant == {"g1": d("2.00"), "g2": d("10.00"), "g3": d("3.00")}


def give(s, **grant):
    body = json.dumps({"grant": grant}).encode()
    return payment_requests.apply(s, *payment_requests.parse(body), OCT_2)


def documents(s):
    with db.transaction(s) as conn:
        return {(period, kind): (total, [(k, desc, amount) for k, desc, amount in conn.execute(
                    """SELECT kind, description, amount FROM openfaas_metering.invoice_lines
                        WHERE invoice_id = %s ORDER BY line_no""", (invoice_id,))])
                for period, kind, total, invoice_id in conn.execute(
                    """SELECT period, document_kind, total, invoice_id
                         FROM openfaas_metering.invoices WHERE status <> 'draft'""")}


def low_events(s):
    with db.transaction(s) as conn:
        return [data for (data,) in conn.execute(
            "SELECT data FROM openfaas_metering.webhook_events WHERE type = "
            "'credit.balance_low'")]


def test_a_grant_is_a_line_before_tax_its_rest_carries_over_and_expires(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=BOOK, GATEWAY_URL="http://127.0.0.1:9",
                     CREDIT_BALANCE_LOW="10.00")
    on_plan(s, "acme", "euro")
    give(s, tenant="acme", amount="30.00", currency="EUR", reason="welcome")
    give(s, tenant="acme", amount="5.00", currency="EUR", reason="apology",
         expires_at="2026-10-01T00:00:00Z")
    send(s, [event("acme", "2026-09-10T10:00:00Z", 3_000 * NS)])      # 3.00
    send(s, [event("acme", "2026-10-10T10:00:00Z", 40_000 * NS)])     # 40.00
    close(s, OCT_2)
    close(s, NOV_2)
    got = documents(s)
    # September: 3.00, the apology (expiring first) gives 3.00: 0.00, no tax; its 2.00
    # left expires on 1 October
    assert got[("2026-09", "invoice")] == (d("0.00"), [
        ("usage", "Function compute", d("3.00")), ("usage", "Function invocations", d("0.00")),
        ("credit", "Credit applied", d("-3.00"))])
    # October: 40.00, the welcome grant's 30.00: 10.00 + 19 % = 11.90
    assert got[("2026-10", "invoice")][0] == d("11.90")
    assert got[("2026-10", "invoice")][1][-1] == ("credit", "Credit applied", d("-30.00"))
    with db.transaction(s) as conn:
        expired = conn.execute(
            """SELECT g.reason, e.amount FROM openfaas_metering.credit_grant_expiries e
                 JOIN openfaas_metering.credit_grants g USING (grant_id)""").fetchall()
    assert expired == [("apology", d("2.00"))]
    # the balance fell from 32.00 to 0 at the October close: one credit.balance_low
    [low] = low_events(s)
    assert (low["tenant"], low["currency"], low["balance"]) == ("acme", "EUR", "0.00")
    # late September usage: the month re-priced with the grants as they stood for it
    # (the apology's 3.00): 4.00 - 3.00 = 1.00 + 0.19 = 1.19 more
    send(s, [event("acme", "2026-09-20T10:00:00Z", 1_000 * NS)])
    close(s, DEC_2)
    assert documents(s)[("2026-09", "supplementary")][0] == d("1.19")
    assert len(low_events(s)) == 1
    with db.transaction(s) as conn:
        used = dict(conn.execute(
            """SELECT g.reason, sum(u.amount) FROM openfaas_metering.credit_grant_uses u
                 JOIN openfaas_metering.credit_grants g USING (grant_id) GROUP BY 1"""))
    assert used == {"apology": d("3.00"), "welcome": d("30.00")}


def test_a_grant_in_another_currency_or_for_another_plan_gives_nothing(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=BOOK, GATEWAY_URL="http://127.0.0.1:9")
    on_plan(s, "acme", "euro")
    give(s, tenant="acme", amount="30.00", currency="USD", reason="wrong currency")
    give(s, tenant="acme", amount="30.00", currency="EUR", reason="other plan",
         plan="standard")
    send(s, [event("acme", "2026-09-10T10:00:00Z", 3_000 * NS)])      # 3.00 + 0.57
    close(s, OCT_2)
    assert documents(s)[("2026-09", "invoice")][0] == d("3.57")


@pytest.mark.parametrize("grant, status, field", [
    ({"tenant": "nobody", "amount": "1.00", "currency": "EUR", "reason": "x"}, 404,
     "grant.tenant"),
    ({"tenant": "acme", "amount": "1.001", "currency": "EUR", "reason": "x"}, 400,
     "grant.amount: EUR has 2 decimals"),
    ({"tenant": "acme", "amount": "1.00", "currency": "eur", "reason": "x"}, 400,
     "grant.currency"),
    ({"tenant": "acme", "amount": "1.00", "currency": "EUR", "reason": ""}, 400,
     "grant.reason"),
    ({"tenant": "acme", "amount": "1.00", "currency": "EUR", "reason": "x",
      "expires_at": "2027-01-01"}, 400, "grant.expires_at"),
    ({"tenant": "acme", "amount": "1.00", "currency": "EUR", "reason": "x",
      "meter": "beer"}, 400, "grant.meter"),
])
def test_a_bad_grant_is_refused_naming_the_field(database_url, tmp_path, grant, status,
                                                 field):
    s = settings_for(database_url, tmp_path, book=BOOK)
    on_plan(s, "acme", "euro")
    with pytest.raises(RequestError) as refused:
        give(s, **grant)
    assert refused.value.status == status and field in str(refused.value)
