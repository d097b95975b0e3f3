"""The month-to-date estimate (tenant-portal, budgets) is priced by the month close's code."""
from datetime import datetime, timedelta, timezone

from chargeback.billing import estimate, month_close
from chargeback.billing.periods import period
from chargeback.core import db

from .billing_helpers import NS, event, send, settings_for, ticks


def _close(s, name):
    return month_close.run(s, month_close.Options(period=name),
                           datetime(2026, 10, 2, tzinfo=timezone.utc))


def test_the_estimate_of_an_ended_month_equals_its_invoice_on_every_plan(database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    send(s, [event("plain", "2026-09-10T10:00:00Z", 1000 * NS),
             event("yen-co", "2026-09-11T10:00:00Z", 7777 * NS)])
    slots = [datetime(2026, 9, 15, 22, tzinfo=timezone.utc) + timedelta(hours=h) for h in range(5)]
    ticks(s, "render", [("loadbalancer_hours", "", False, "1"), ("node_hours", "g5", True, "2")],
          slots, plan="pro")
    ticks(s, "yen-co", [], slots[:1], plan="yen")
    after = datetime(2026, 10, 1, 0, 0, 1, tzinfo=timezone.utc)
    with db.transaction(s) as conn:
        got = {e.draft.namespace: (e.draft.subtotal, e.draft.tax, e.draft.total)
               for e in estimate.month_to_date(conn, s, after, p=period("2026-09", "UTC"))}
    closed = {i["tenant"]: i for i in _close(s, "2026-09")["periods"][0]["invoices"]}
    with db.transaction(s) as conn:
        rows = {ns: (sub, tax, total) for ns, sub, tax, total in conn.execute(
            "SELECT namespace, subtotal, tax, total FROM openfaas_metering.invoices"
            " WHERE period = '2026-09' AND status = 'finalized'")}
    assert set(closed) == set(rows) == {"plain", "render", "yen-co"}
    assert got == rows


def test_the_projection_prices_the_run_rate_through_the_same_tiers(database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    # 10 days into a 30-day month: 1000 GB-s so far, 3000 projected (at 0.001: 3.00)
    send(s, [event("acme", "2026-09-05T10:00:00Z", 1000 * NS)])
    now = datetime(2026, 9, 11, tzinfo=timezone.utc)
    with db.transaction(s) as conn:
        [e] = estimate.month_to_date(conn, s, now, ["acme"])
        assert conn.execute("SELECT count(*) FROM openfaas_metering.tenants").fetchone()[0] == 0
    assert e.period.name == "2026-09" and e.as_of == now
    gb = [line for line in e.draft.lines if line.meter == "gb_seconds"]
    assert [line.amount for line in gb] == [e.draft.subtotal - sum(
        line.amount for line in e.draft.lines if line.meter != "gb_seconds")]
    assert str(e.draft.total) == "1.00"
    # invocations: 1 (within the allowance of 10) -> 3 projected, still free
    assert str(e.projected_total) == "3.00"


def test_after_a_timezone_change_the_estimate_starts_where_the_last_closed_month_ended(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    # 2026-09-30T20:00Z is 1 October 01:30 in Kolkata, but September (UTC) billed it
    send(s, [event("acme", "2026-09-30T20:00:00Z", 1000 * NS),
             event("acme", "2026-10-10T10:00:00Z", 2000 * NS)])
    _close(s, "2026-09")
    kolkata = settings_for(database_url, tmp_path, BILLING_TIMEZONE="Asia/Kolkata")
    now = datetime(2026, 10, 20, tzinfo=timezone.utc)
    with db.transaction(kolkata) as conn:
        [e] = estimate.month_to_date(conn, kolkata, now, ["acme"])
    # the transitional October: from September's end (UTC midnight) to Kolkata's month end
    assert (e.period.start, e.period.end) == (datetime(2026, 10, 1, tzinfo=timezone.utc),
                                              datetime(2026, 10, 31, 18, 30, tzinfo=timezone.utc))
    # only October's 2,000 GB-s at 0.001, not September's 1,000 again
    assert str(e.draft.total) == "2.00"


def test_a_subscribed_tenant_without_usage_this_month_is_estimated_at_its_base_fee(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    # listed by meter-capacity on 1 September, holding nothing billable since
    ticks(s, "quiet", [], [datetime(2026, 9, 1, tzinfo=timezone.utc)], plan="pro")
    with db.transaction(s) as conn:
        [e] = estimate.month_to_date(conn, s, datetime(2026, 10, 11, tzinfo=timezone.utc),
                                     ["quiet"])
    # plan pro in October, all 31 days: base fee 10.00, and the commitment (50.00, which
    # tops up usage, not the base fee) a top-up of 50.00 over no usage; 60.00 + 20 % tax
    assert e.period.name == "2026-10" and str(e.draft.total) == "72.00"
