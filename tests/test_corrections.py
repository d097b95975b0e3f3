"""Corrections of closed months, one test per defect of the late-usage design they replace
(each fails on the adjustment-line code), against real PostgreSQL: events through the real
ingest, capacity through the real tick store, documents read back from the tables.

Tenants here are usage-only unless a test ticks them, so a month without usage bills
nothing and every figure is the month's usage priced by hand."""
from __future__ import annotations

import csv
import io
import threading
from datetime import datetime, timezone
from decimal import Decimal

import psycopg
import pytest

from chargeback.billing import audit, month_close, pricebook_store
from chargeback.billing.periods import period
from chargeback.core import db

from .billing_helpers import NS, close, event, on_plan, send, settings_for
from .corrections_helpers import BOOK, DEC_2, NOV_2, OCT_2


def billed(settings, namespace):
    """(number, total, currency, tax) of every finalized document of the tenant, in order."""
    with db.transaction(settings) as conn:
        return conn.execute(
            """SELECT number, total, currency, tax FROM openfaas_metering.invoices
                WHERE namespace = %s AND status <> 'draft' ORDER BY issued_at, number""",
            (namespace,)).fetchall()


def total_billed(settings, namespace) -> Decimal:
    return sum((row[1] for row in billed(settings, namespace)), Decimal(0))


def test_late_usage_under_commitment_owes_nothing_more(database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=BOOK)
    on_plan(s, "acme", "committed")
    send(s, [event("acme", "2026-09-10T10:00:00Z", 10_000 * NS)])   # 1.10 of usage
    close(s, OCT_2)
    # September: 1.10 usage + 250.00 base fee + 298.90 top-up to the 300.00 commitment
    assert total_billed(s, "acme") == Decimal("550.00")
    send(s, [event("acme", "2026-09-20T10:00:00Z", 20_000 * NS)])   # late: 2.20, still under
    close(s, NOV_2)   # October: nothing at all for acme
    # September re-priced: 3.30 usage + 250.00 + 296.70 top-up = 550.00: nothing more owed
    assert total_billed(s, "acme") == Decimal("550.00")
    assert len(billed(s, "acme")) == 1


def test_changing_the_billing_timezone_bills_no_closed_month_again(database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=BOOK)
    send(s, [event("acme", "2026-09-10T10:00:00Z", 30_000 * NS),
             event("acme", "2026-09-30T20:00:00Z", 1_000 * NS),   # Oct 1 01:30 in Kolkata
             event("acme", "2026-10-10T10:00:00Z", 2_000 * NS)])
    close(s, OCT_2)
    assert total_billed(s, "acme") == Decimal("31.00")
    kolkata = settings_for(database_url, tmp_path, book=BOOK, BILLING_TIMEZONE="Asia/Kolkata")
    out = close(kolkata, NOV_2)
    # October starts where September ended (UTC midnight), so 2.00 more, nothing twice
    assert total_billed(s, "acme") == Decimal("33.00")
    assert [(p["period"], p.get("transitional"), p["period_start"]) for p in out["periods"]] \
        == [("2026-10", True, "2026-10-01T00:00:00+00:00")]


def test_utc_to_kolkata_to_utc_bills_every_nanosecond_once(database_url, tmp_path):
    edges = ["2026-09-30T18:29:59.999999999Z", "2026-09-30T18:30:00Z",
             "2026-09-30T23:59:59.999999999Z", "2026-10-01T00:00:00Z",
             "2026-10-31T18:29:59.999999999Z", "2026-10-31T18:30:00Z",
             "2026-10-31T23:59:59.999999999Z", "2026-11-01T00:00:00Z", "2026-11-15T00:00:00Z"]
    # event i lasts 2^i seconds at 1 GiB: each month's GB-s say which events it holds
    utc = settings_for(database_url, tmp_path, book=BOOK)
    send(utc, [event("acme", at, 2**i * NS) for i, at in enumerate(edges)])
    close(utc, OCT_2)
    close(settings_for(database_url, tmp_path, book=BOOK, BILLING_TIMEZONE="Asia/Kolkata"),
          NOV_2)
    close(utc, DEC_2)
    with db.transaction(utc) as conn:
        got = dict(conn.execute(
            """SELECT i.period, sum(l.quantity) FROM openfaas_metering.invoice_lines l
                 JOIN openfaas_metering.invoices i USING (invoice_id)
                WHERE l.meter = 'gb_seconds' GROUP BY 1"""))
        bounds = conn.execute("SELECT period, period_start, period_end FROM"
                              " openfaas_metering.closed_periods ORDER BY 1").fetchall()
    # September (UTC): events 0-2; October (Kolkata, from UTC midnight): 3-4;
    # November (UTC again, from Kolkata's October end): 5-8
    assert got == {"2026-09": 1 + 2 + 4, "2026-10": 8 + 16, "2026-11": 32 + 64 + 128 + 256}
    assert all(a[2] == b[1] for a, b in zip(bounds, bounds[1:]))  # no gap, no overlap


def test_late_usage_reprices_every_later_piece_of_the_month(database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=BOOK)
    on_plan(s, "acme", "changing")
    # the 1000 GB-s allowance runs over the month: 500 GB-s after the price change, free
    send(s, [event("acme", "2026-09-20T10:00:00Z", 500 * NS)])
    close(s, OCT_2)
    assert total_billed(s, "acme") == Decimal("0.00")
    # 1000 GB-s late, before the change: they take the allowance, so the 500 GB-s after
    # the change are billed now: 500 x 0.002 = 1.00
    send(s, [event("acme", "2026-09-05T10:00:00Z", 1000 * NS)])
    close(s, NOV_2)
    assert total_billed(s, "acme") == Decimal("1.00")


def test_late_usage_in_graduated_tiers_is_never_over_billed(database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=BOOK)
    on_plan(s, "acme", "graduated")
    send(s, [event("acme", "2026-09-20T10:00:00Z", 1000 * NS)])   # tier 1 at 0.02: 20.00
    close(s, OCT_2)
    assert total_billed(s, "acme") == Decimal("20.00")
    # 1000 late GB-s before the change fill tier 1 at 0.01 (10.00), pushing the later
    # 1000 into tier 2 at 0.002 (2.00): the month is 12.00, so 8.00 is credited
    send(s, [event("acme", "2026-09-05T10:00:00Z", 1000 * NS)])
    close(s, NOV_2)
    assert total_billed(s, "acme") == Decimal("12.00")
    assert [(n[:3], t) for n, t, _, _ in billed(s, "acme")] == [
        ("INV", Decimal("20.00")), ("CN-", Decimal("-8.00"))]


def test_volume_tier_late_usage_is_a_credit_note_never_a_negative_invoice(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=BOOK)
    on_plan(s, "acme", "volume")
    send(s, [event("acme", "2026-09-10T10:00:00Z", 5000 * NS)])   # 5000 x 2.95 = 14750.00
    close(s, OCT_2)
    send(s, [event("acme", "2026-09-11T10:00:00Z", 1 * NS)])      # 5001 x 2.60 = 13002.60
    close(s, NOV_2)
    got = billed(s, "acme")
    assert [(n, t) for n, t, _, _ in got] == [("INV-2026-000001", Decimal("14750.00")),
                                              ("CN-2026-000001", Decimal("-1747.40"))]
    with db.transaction(s) as conn:
        negative = conn.execute("SELECT number FROM openfaas_metering.invoices"
                                " WHERE total < 0").fetchall()
    assert all(number.startswith("CN-") for (number,) in negative)


def test_a_correction_keeps_its_months_currency_and_tax_after_a_plan_change(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=BOOK)
    send(s, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS)])   # USD, 0 % tax: 1.00
    close(s, OCT_2)
    on_plan(s, "acme", "euro")                                     # EUR, 19 % from October
    send(s, [event("acme", "2026-09-20T10:00:00Z", 500 * NS),      # late September: 0.50 USD
             event("acme", "2026-10-10T10:00:00Z", 1000 * NS)])    # 1.00 EUR + 0.19 tax
    close(s, NOV_2)
    got = sorted((currency, total, tax) for _, total, currency, tax in billed(s, "acme"))
    assert got == [("EUR", Decimal("1.19"), Decimal("0.19")),
                   ("USD", Decimal("0.50"), Decimal("0.00")),
                   ("USD", Decimal("1.00"), Decimal("0.00"))]
    with db.transaction(s) as conn:
        assert conn.execute("SELECT count(*) FROM openfaas_metering.invoices"
                            " WHERE status = 'draft'").fetchone()[0] == 0


def test_a_second_correction_owes_the_tax_left_after_every_earlier_document(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=BOOK)
    on_plan(s, "acme", "euro")                       # 0.001 EUR per GB-s, 19 % tax
    send(s, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS)])
    close(s, OCT_2)                                  # 1.00 + 0.19 tax
    send(s, [event("acme", "2026-09-11T10:00:00Z", 1000 * NS)])
    close(s, NOV_2)  # the month is 2.00 + 0.38: 1.00 + 0.19 more
    send(s, [event("acme", "2026-09-12T10:00:00Z", 1000 * NS)])
    close(s, DEC_2)  # the month is 3.00 + 0.57; billed 2.00 + 0.38 (both documents): 1.00 + 0.19
    got = [(n[:4], total, tax) for n, total, _, tax in billed(s, "acme")]
    assert got == [("INV-", Decimal("1.19"), Decimal("0.19"))] * 3
    # the month's documents add up to the month priced whole: 3.00 + 0.57 = 3.57
    assert total_billed(s, "acme") == Decimal("3.57")


def test_two_periods_closing_at_once_bill_late_usage_once(database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=BOOK)
    send(s, [event("acme", "2026-08-10T10:00:00Z", 1000 * NS)])
    close(s, datetime(2026, 9, 2, tzinfo=timezone.utc))            # August: 1.00
    send(s, [event("acme", "2026-08-20T10:00:00Z", 500 * NS),      # late August: 0.50
             event("acme", "2026-09-10T10:00:00Z", 100 * NS),
             event("acme", "2026-10-10T10:00:00Z", 100 * NS)])
    pricebook_store.ensure_file_loaded(s)
    with db.transaction(s) as conn:
        book = pricebook_store.latest(conn)
    barrier, errors = threading.Barrier(3), []

    def close_on_its_own_connection(name):
        try:
            with psycopg.connect(database_url) as conn:
                barrier.wait()
                month_close.close_period(conn, s, period(name, "UTC"), book)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=close_on_its_own_connection, args=(name,))
               for name in ("2026-09", "2026-10")]
    for t in threads:
        t.start()
    # and the hourly run beside them, which also corrects August
    barrier.wait()
    close(s, NOV_2)
    for t in threads:
        t.join()
    close(s, NOV_2)
    assert errors == []
    # 1.00 + 0.50 (August) + 0.10 + 0.10
    assert total_billed(s, "acme") == Decimal("1.70")


def test_the_hourly_run_beside_an_operator_request_corrects_once(database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=BOOK)
    send(s, [event("acme", "2026-08-10T10:00:00Z", 1000 * NS)])
    close(s, datetime(2026, 9, 2, tzinfo=timezone.utc))
    send(s, [event("acme", "2026-08-20T10:00:00Z", 500 * NS)])
    barrier = threading.Barrier(2)

    def operator():
        barrier.wait()
        close(s, NOV_2, period="2026-08")

    other = threading.Thread(target=operator)
    other.start()
    barrier.wait()
    close(s, NOV_2)
    other.join()
    assert total_billed(s, "acme") == Decimal("1.50")


def test_a_price_book_loaded_before_the_first_start_is_the_one_used(
        database_url, tmp_path, monkeypatch, capsys):
    s = settings_for(database_url, tmp_path, book=BOOK)   # the deployed file: 0.001 per GB-s
    mine = tmp_path / "my-prices.yml"
    mine.write_text(BOOK.replace('"0.001"', '"0.003"'))
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert pricebook_store.main(["load", str(mine)]) == 0          # fresh install: first act
    assert "price book version 1 (stored now" in capsys.readouterr().out
    send(s, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS)])
    out = close(s, OCT_2)                                          # the functions start
    assert total_billed(s, "acme") == Decimal("3.00")
    assert (out["price_book_version"], out["periods"][0]["price_book_version"]) == (1, 1)
    # the operator lets the deployed file win: it becomes the version in force
    wins = settings_for(database_url, tmp_path, book=BOOK, PRICEBOOK_FILE_WINS="true")
    send(s, [event("acme", "2026-10-10T10:00:00Z", 1000 * NS)])
    out = close(wins, NOV_2)
    assert out["periods"][0]["price_book_version"] == 2
    assert total_billed(s, "acme") == Decimal("4.00")


def test_verify_sees_over_billing_by_reading_the_raw_events(database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=BOOK)
    send(s, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS)])
    with db.transaction(s) as conn:   # a rollup that says more than the raw events
        conn.execute("UPDATE openfaas_metering.function_usage_daily_stripes"
                     " SET gb_seconds = gb_seconds + 500")
    number = close(s, OCT_2)["periods"][0]["invoices"][0]["number"]
    report = audit.verify(s, number)
    assert not report["match"]
    assert any("below what was billed" in d for d in report["differences"])


def test_the_usage_csv_is_the_one_stored_at_finalization(database_url, tmp_path):
    import hashlib

    from chargeback.documents import rendered as documents
    s = settings_for(database_url, tmp_path, book=BOOK)
    send(s, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS, function_name="a")])
    invoice = close(s, OCT_2)["periods"][0]["invoices"][0]
    before = audit.export(s, invoice["number"])
    send(s, [event("acme", "2026-09-10T11:00:00Z", 500 * NS, function_name="b")])  # late
    assert audit.export(s, invoice["number"]) == before
    assert "b" not in [row.split(",")[6] for row in before.splitlines()]
    attached = documents.rerender(s, invoice["invoice_id"]).attachments[-1]
    assert attached.data == before.encode()
    report = audit.verify(s, invoice["number"])
    assert report["usage_csv_sha256"] == hashlib.sha256(before.encode()).hexdigest()


def test_the_usage_csv_formatted_by_postgres_equals_the_day_by_day_one(database_url, tmp_path):
    from chargeback.billing import export
    s = settings_for(database_url, tmp_path, book=BOOK)
    send(s, [event("acme", f"2026-09-{d:02d}T{h:02d}:00:00.5Z", (d * 7 + h) * NS + 123,
                   function_name=f"f{(d + h) % 3}") for d in (1, 2, 30) for h in (0, 13)]
         + [event("beta", "2026-09-03T00:00:00Z", 5 * NS)])
    acme = next(i for i in close(s, OCT_2)["periods"][0]["invoices"] if i["tenant"] == "acme")
    with db.transaction(s) as conn:
        lines = [export.CsvLine(n, kind, m, "", False, unit, start, end, q)
                 for n, kind, m, unit, start, end, q in conn.execute(
                     """SELECT line_no, kind, meter, unit, price_from, price_to, quantity
                          FROM openfaas_metering.invoice_lines JOIN openfaas_metering.invoices
                         USING (invoice_id) WHERE namespace = 'acme' AND meter IS NOT NULL
                         ORDER BY line_no""")]
        docs = {"acme": (False, lines), "beta": (False, [])}
        fast = export.build_csvs(conn, "UTC", docs)
        slow = export.build_csvs(conn, "UTC", docs, sql_days=False)
        # the same lines as a correction's: each gets its billed_earlier row too
        as_correction = {"acme": (True, lines)}
        fast_correction = export.build_csvs(conn, "UTC", as_correction)
        slow_correction = export.build_csvs(conn, "UTC", as_correction, sql_days=False)
    # the header, 3 days x 2 functions a day for GB-s and for invocations, a closing row
    # per line
    assert fast == slow and fast["acme"].count("\r\n") == 1 + 2 * 6 + 2
    # and the one stored at finalization (built, hashed and stored by PostgreSQL)
    assert audit.export(s, acme["number"]) == slow["acme"]
    assert fast_correction == slow_correction
    assert fast_correction["acme"].count("\r\n") == 1 + 2 * 6 + 2 + 2
    # nothing billed earlier than the lines themselves: those rows are 0
    assert fast_correction["acme"].count(",billed_earlier,") == 2


# UTC: the rows PostgreSQL formats from whole days; Kolkata: the rows Python reads
@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
def test_usage_written_while_the_close_runs_is_billed_with_its_rows(
        database_url, tmp_path, monkeypatch, zone):
    from chargeback.billing import export
    s = settings_for(database_url, tmp_path, book=BOOK, BILLING_TIMEZONE=zone)
    send(s, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS, function_name="a")])
    store_csvs, attempts = export.store_csvs, []

    def a_delivery_commits_first(conn, tz, documents):
        # the first attempt: a late delivery commits after the close priced the month
        # and before it reads the rows behind its CSVs
        if not attempts:
            send(s, [event("acme", "2026-09-10T11:00:00Z", 500 * NS, function_name="b")])
        attempts.append(tz)
        return store_csvs(conn, tz, documents)

    monkeypatch.setattr(export, "store_csvs", a_delivery_commits_first)
    [invoice] = close(s, OCT_2)["periods"][0]["invoices"]
    assert len(attempts) == 2   # the first attempt saw the rows move: nothing of it kept
    rows = list(csv.DictReader(io.StringIO(audit.export(s, invoice["number"]))))
    for line_no in {r["line_no"] for r in rows}:
        [total] = [r for r in rows if r["line_no"] == line_no and r["kind"] == "line_total"]
        shown = [r for r in rows if r["line_no"] == line_no and r["kind"] != "line_total"]
        assert sum(Decimal(r["quantity"]) for r in shown) == Decimal(total["quantity"])
    assert {r["function_name"] for r in rows if r["day"]} == {"a", "b"}  # billed now
    report = audit.verify(s, invoice["number"])
    assert report["match"] and report["late_usage"] == [], report
