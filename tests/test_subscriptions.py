"""Subscriptions: base fee and minimum commitment follow the time a namespace exists,
prorated by days in its first and last month; usage-only tenants pay them only in
months with usage. Capacity through the real tick store, the real hourly close."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from chargeback.billing import month_close
from chargeback.core import db

from .billing_helpers import NS, Recorder, event, on_plan, send, settings_for
from .subscription_helpers import FLAT_BOOK, tick


def documents(settings):
    with db.transaction(settings) as conn:
        return {(ns, p): (total, [d for (d,) in conn.execute(
                    """SELECT description FROM openfaas_metering.invoice_lines
                        WHERE invoice_id = %s AND kind IN ('base_fee', 'commitment')
                        ORDER BY line_no""", (invoice_id,))])
                for ns, p, total, invoice_id in conn.execute(
                    """SELECT namespace, period, total, invoice_id
                         FROM openfaas_metering.invoices WHERE status <> 'draft'""")}


def test_base_fee_and_commitment_follow_the_subscription_prorated_by_days(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path)   # plan pro: base fee 10.00, commitment 50.00,
    tick(s, datetime(2026, 9, 19, tzinfo=timezone.utc), ("render",))       # tax 20 %
    tick(s, datetime(2026, 9, 19, 1, tzinfo=timezone.utc), ("render",))
    # the namespace is gone at the first tick that no longer lists it: 10 November
    tick(s, datetime(2026, 11, 10, tzinfo=timezone.utc), ())
    send(s, [event("walkin", "2026-09-10T10:00:00Z", 1000 * NS)])   # never seen by a tick
    on_plan(s, "walkin", "pro")
    month_close.run(s, month_close.Options(), datetime(2026, 12, 2, tzinfo=timezone.utc),
                    Recorder())
    got = documents(s)
    assert got == {
        # 19-30 September: 12 of 30 days: 4.00 + a commitment of 20.00, no usage; +20 %
        ("render", "2026-09"): (Decimal("28.80"), ["Base fee, plan pro, 12 of 30 days",
                                                   "Minimum commitment 20.00 USD, 12 of 30"
                                                   " days: top-up"]),
        # October: a whole month without usage still owes its base fee and commitment
        ("render", "2026-10"): (Decimal("72.00"), ["Base fee, plan pro",
                                                   "Minimum commitment 50.00 USD: top-up"]),
        # 1-9 November: 9 of 30 days: 3.00 + 15.00, +20 %
        ("render", "2026-11"): (Decimal("21.60"), ["Base fee, plan pro, 9 of 30 days",
                                                   "Minimum commitment 15.00 USD, 9 of 30"
                                                   " days: top-up"]),
        # usage only: the month with usage, whole: 1.00 + 10.00 + 49.00 top-up, +20 %
        ("walkin", "2026-09"): (Decimal("72.00"), ["Base fee, plan pro",
                                                   "Minimum commitment 50.00 USD: top-up"]),
    }


def test_a_correction_below_the_minimum_waits_and_is_not_lost(database_url, tmp_path):
    s = settings_for(database_url, tmp_path, CORRECTION_MIN_AMOUNT="1.00")
    send(s, [event("acme", "2026-08-10T10:00:00Z", 1000 * NS)])       # 1.00
    month_close.run(s, month_close.Options(), datetime(2026, 9, 2, tzinfo=timezone.utc),
                    Recorder())
    send(s, [event("acme", "2026-08-20T10:00:00Z", 500 * NS)])        # 0.50 late: held
    out = month_close.run(s, month_close.Options(), datetime(2026, 10, 2, tzinfo=timezone.utc),
                          Recorder())
    assert [(p["period"], p.get("held")) for p in out["periods"]][0] == (
        "2026-08", [{"tenant": "acme", "corrects": "INV-2026-000001", "total": "0.50",
                     "currency": "USD", "reasons": ["below CORRECTION_MIN_AMOUNT"]}])
    # still held at the next close, with nothing new
    out = month_close.run(s, month_close.Options(), datetime(2026, 10, 2, 1, tzinfo=timezone.utc),
                          Recorder())
    assert out["periods"][0]["held"][0]["total"] == "0.50"
    send(s, [event("acme", "2026-08-21T10:00:00Z", 600 * NS)])        # 1.10 owed now
    month_close.run(s, month_close.Options(), datetime(2026, 11, 2, tzinfo=timezone.utc),
                    Recorder())
    with db.transaction(s) as conn:
        got = conn.execute("""SELECT document_kind, total FROM openfaas_metering.invoices
                               WHERE period = '2026-08' ORDER BY issued_at""").fetchall()
    assert got == [("invoice", Decimal("1.00")), ("supplementary", Decimal("1.10"))]


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def totals(settings) -> dict[str, Decimal]:
    with db.transaction(settings) as conn:
        return dict(conn.execute("""SELECT period, total FROM openfaas_metering.invoices
                                     WHERE namespace = 'render' AND status <> 'draft'"""))


def test_a_namespace_listed_again_months_later_is_billed_only_for_the_days_it_ran(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=FLAT_BOOK)
    tick(s, utc(2026, 8, 1), ("render",), plan="flat")
    tick(s, utc(2026, 8, 10, 12), ())                  # removed: gone from 10 Aug 12:00Z
    month_close.run(s, month_close.Options(), utc(2026, 9, 2), Recorder())
    month_close.run(s, month_close.Options(), utc(2026, 10, 2), Recorder())
    tick(s, utc(2026, 10, 15), ("render",), plan="flat")   # listed again
    month_close.run(s, month_close.Options(), utc(2026, 11, 2), Recorder())
    # September read again (asked by name): nothing to bill, no late "new tenant" invoice
    month_close.run(s, month_close.Options(period="2026-09"), utc(2026, 11, 2), Recorder())
    assert totals(s) == {
        # 1-10 Aug: 10 of 31 days: 10 x 10/31 = 3.2258 -> 3.23; 50 x 10/31 = 16.129 -> 16.13;
        # 19.36 + 19 % (3.6784 -> 3.68) = 23.04
        "2026-08": Decimal("23.04"),
        # September: not subscribed a single day, no usage: no invoice
        # 15-31 Oct: 17 of 31 days: 10 x 17/31 = 5.4839 -> 5.48; 50 x 17/31 = 27.419 -> 27.42;
        # 32.90 + 19 % (6.251 -> 6.25) = 39.15
        "2026-10": Decimal("39.15"),
    }


def test_a_namespace_gone_and_back_within_a_month_is_billed_for_both_stretches(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=FLAT_BOOK)
    tick(s, utc(2026, 11, 1), ("render",), plan="flat")
    tick(s, utc(2026, 11, 5, 12), ())                   # gone: 1-5 Nov begun, 5 days
    tick(s, utc(2026, 11, 20, 12), ("render",), plan="flat")   # back: 20-30 Nov, 11 days
    month_close.run(s, month_close.Options(), utc(2026, 12, 2), Recorder())
    # 16 of 30 days: 10 x 16/30 = 5.333 -> 5.33; 50 x 16/30 = 26.667 -> 26.67;
    # 32.00 + 19 % (6.08) = 38.08
    assert totals(s) == {"2026-11": Decimal("38.08")}
    assert documents(s)[("render", "2026-11")][1] == [
        "Base fee, plan flat, 16 of 30 days",
        "Minimum commitment 26.67 EUR, 16 of 30 days: top-up"]
