"""Month close against real PostgreSQL: events through the real ingest, capacity through
the real tick store, invoices read back from the tables."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from chargeback.billing import audit, month_close
from chargeback.billing.month_close import Options
from chargeback.core import db

from .billing_helpers import BOOK, NOW, NS, GiB, Recorder, close, event, send, settings_for, ticks
from .waiting import until


def invoices(settings):
    with db.transaction(settings) as conn:
        return {row[0]: row[1:] for row in conn.execute(
            """SELECT namespace || ' ' || period, status, number, total, currency, draft_reasons
                 FROM openfaas_metering.invoices""")}


def lines(settings, namespace, period):
    with db.transaction(settings) as conn:
        return conn.execute(
            """SELECT kind, meter, sku, spot, quantity, amount, adjustment_period
                 FROM openfaas_metering.invoice_lines JOIN openfaas_metering.invoices
                USING (invoice_id) WHERE namespace = %s AND period = %s ORDER BY line_no""",
            (namespace, period)).fetchall()


def gb_s(duration_ns, memory_bytes=GiB):
    return Decimal(duration_ns * memory_bytes) / Decimal(NS * GiB)


def usage_line(settings, namespace, period, meter="gb_seconds"):
    return next(((q, a) for kind, m, _, _, q, a, adj in lines(settings, namespace, period)
                 if m == meter and adj is None), None)


@pytest.mark.parametrize("tz, first, last, next_first", [
    ("UTC", "2026-09-01T00:00:00Z", "2026-09-30T23:59:59.999999999Z", "2026-10-01T00:00:00Z"),
    ("Asia/Kolkata", "2026-09-01T00:00:00+05:30", "2026-09-30T23:59:59.999999999+05:30",
     "2026-10-01T00:00:00+05:30"),
    ("Australia/Adelaide", "2026-09-01T00:00:00+09:30", "2026-09-30T23:59:59.999999999+09:30",
     "2026-10-01T00:00:00+09:30"),
    # DST starts in Adelaide on 2026-10-04: October begins at +09:30 and ends at +10:30
    ("Australia/Adelaide", "2026-10-01T00:00:00+09:30", "2026-10-31T23:59:59.999999999+10:30",
     "2026-11-01T00:00:00+10:30"),
    ("Europe/Berlin", "2026-10-01T00:00:00+02:00", "2026-10-31T23:59:59.999999999+01:00",
     "2026-11-01T00:00:00+01:00"),
])
def test_period_edges_are_exact_to_the_nanosecond_in_the_billing_zone(
        database_url, tmp_path, tz, first, last, next_first):
    s = settings_for(database_url, tmp_path, BILLING_TIMEZONE=tz)
    period = last[:7]
    # inside: the first ns, mid-month, the last ns; outside: the next month's first ns
    # and the ns before the month
    send(s, [event("acme", first, 1 * NS), event("acme", f"{period}-15T12:34:56.5Z", 2 * NS),
             event("acme", last, 4 * NS), event("acme", next_first, 8 * NS),
             event("acme", _minus_one_ns(first), 16 * NS)])
    close(s, period=period)
    assert usage_line(s, "acme", period, "invocations")[0] == 3
    assert usage_line(s, "acme", period)[0] == gb_s(7 * NS)


def _minus_one_ns(text):
    from chargeback.usage.events import parse_started
    ns = parse_started(text) - 1
    moment = datetime.fromtimestamp(ns // NS, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % NS:09d}Z"


def test_an_empty_month_closes_without_invoices(database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    send(s, [event("acme", "2026-08-10T10:00:00Z", NS)])
    out = close(s, period="2026-09")
    assert out["periods"] == [{"period": "2026-09", "closed": True, "invoices": [],
                               "drafts": [], "period_start": "2026-09-01T00:00:00+00:00",
                               "period_end": "2026-10-01T00:00:00+00:00",
                               "price_book_version": 1}]
    assert invoices(s) == {}


def test_the_hourly_run_creates_the_coming_months_partitions_ahead_of_ingest(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    with db.transaction(s) as conn:  # first use made them; take one away again
        next_month = conn.execute(
            "SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month',"
            " 'YYYY_MM')").fetchone()[0]
        conn.execute(f"DROP TABLE openfaas_metering.function_usage_{next_month}")
    close(s)
    with db.transaction(s) as conn:
        assert conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                            (f"openfaas_metering.function_usage_{next_month}",)).fetchone()[0]


def test_convergent_run_closes_every_past_month_from_the_first_usage_not_1970(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path, CLOSE_GRACE_HOURS="6")
    send(s, [event("acme", "2026-07-10T10:00:00Z", NS), event("acme", "2026-09-10T10:00:00Z", NS)])
    out = close(s, now=datetime(2026, 10, 1, 5, 59, tzinfo=timezone.utc))
    assert [p["period"] for p in out["periods"]] == ["2026-07", "2026-08"]  # Sept in its grace
    out = close(s, now=datetime(2026, 10, 1, 6, 0, tzinfo=timezone.utc))
    assert [p["period"] for p in out["periods"]] == ["2026-09"]
    assert close(s, now=datetime(2026, 10, 1, 7, 0, tzinfo=timezone.utc))["periods"] == []
    assert sorted(invoices(s)) == ["acme 2026-07", "acme 2026-09"]


def documents(settings, namespace, period):
    with db.transaction(settings) as conn:
        return conn.execute(
            """SELECT d.document_kind, d.number, d.total, c.number
                 FROM openfaas_metering.invoices d
                 LEFT JOIN openfaas_metering.invoices c ON c.invoice_id = d.corrects_invoice_id
                WHERE d.namespace = %s AND d.period = %s AND d.status <> 'draft'
                ORDER BY d.issued_at, d.correction_no NULLS FIRST""",
            (namespace, period)).fetchall()


def test_late_usage_of_a_closed_month_is_a_supplementary_invoice_referencing_it(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    send(s, [event("acme", "2026-08-10T10:00:00Z", 1000 * NS)])
    close(s, period="2026-08")
    send(s, [event("acme", "2026-08-20T10:00:00Z", 500 * NS),   # late: August is final
             event("acme", "2026-09-03T10:00:00Z", 100 * NS)])
    close(s, now=datetime(2026, 10, 2, tzinfo=timezone.utc))   # the hourly run
    close(s, now=datetime(2026, 10, 2, 1, tzinfo=timezone.utc))  # a re-run changes nothing
    # August re-priced whole: 1500 GB-s x 0.001 = 1.50, billed 1.00: 0.50 more
    assert documents(s, "acme", "2026-08") == [
        ("invoice", "INV-2026-000001", Decimal("1.00"), None),
        ("supplementary", "INV-2026-000002", Decimal("0.50"), "INV-2026-000001")]
    # September's invoice carries September only
    assert [(m, q) for kind, m, _, _, q, a, adj in lines(s, "acme", "2026-09")
            if m == "gb_seconds"] == [("gb_seconds", gb_s(100 * NS))]
    # late again: only the new part, once
    send(s, [event("acme", "2026-08-21T10:00:00Z", 200 * NS)])
    close(s, now=datetime(2026, 11, 2, tzinfo=timezone.utc))
    close(s, now=datetime(2026, 11, 2, 1, tzinfo=timezone.utc))
    got = documents(s, "acme", "2026-08")
    assert [(kind, total) for kind, _, total, _ in got] == [
        ("invoice", Decimal("1.00")), ("supplementary", Decimal("0.50")),
        ("supplementary", Decimal("0.20"))]


def test_an_unpriced_sku_keeps_only_that_tenant_in_draft(database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    slots = [datetime(2026, 9, 1, h, tzinfo=timezone.utc) for h in range(3)]
    ticks(s, "gpu-co", [("gpu_hours", "NVIDIA-B200", False, "8")], slots)
    send(s, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS)])
    out = close(s, period="2026-09")["periods"][0]
    assert out["drafts"] == [{"tenant": "gpu-co", "reasons": [
        "no price for gpu_hours NVIDIA-B200 in plan 'standard'"]}]
    assert [i["tenant"] for i in out["invoices"]] == ["acme"] and not out["closed"]
    assert invoices(s)["gpu-co 2026-09"][:2] == ("draft", None)


# a plan whose price list prices every GPU: the fix an operator makes for a draft
GPU_BOOK = BOOK.replace("  dinar: {", "  gpu: {currency: USD, price_list: gpu, tax_category: Z}\n"
                                      "  dinar: {").replace("  jpy:\n", """  gpu:
    currency: USD
    meters:
      gb_seconds: {"*": {unit_price: "0.001"}}
      invocations: {"*": {unit_price: "0.0001"}}
      gpu_hours: {"*": {unit_price: "5.00"}}
  jpy:
""")


def test_a_draft_with_lines_is_finalized_once_its_tenant_can_be_priced(database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=GPU_BOOK)
    slots = [datetime(2026, 9, 1, h, tzinfo=timezone.utc) for h in range(3)]
    ticks(s, "gpu-co", [("gpu_hours", "NVIDIA-B200", False, "8")], slots)  # 16 GPU-hours
    send(s, [event("gpu-co", "2026-09-10T10:00:00Z", 1000 * NS)])          # 1,000 GB-s
    assert close(s, period="2026-09")["periods"][0]["drafts"]  # no B200 price on 'standard'
    with db.transaction(s) as conn:  # the draft keeps the lines it could price
        assert conn.execute("SELECT count(*) FROM openfaas_metering.invoice_lines"
                            ).fetchone()[0] > 0
        conn.execute("UPDATE openfaas_metering.tenants SET plan_override = 'gpu'")
    [invoice] = close(s, period="2026-09")["periods"][0]["invoices"]
    # 16 x 5.00 + 1,000 x 0.001 + 1 x 0.0001 (0.00) = 81.00, no tax
    assert (invoice["number"], Decimal(invoice["total"])) == ("INV-2026-000001", Decimal("81.00"))


def test_a_draft_takes_no_number_so_the_next_final_document_takes_the_next_one(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=GPU_BOOK)
    slots = [datetime(2026, 9, 1, h, tzinfo=timezone.utc) for h in range(3)]
    ticks(s, "gpu-co", [("gpu_hours", "NVIDIA-B200", False, "8")], slots)
    send(s, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS)])
    first = close(s, period="2026-09")["periods"][0]  # gpu-co: a draft, acme: number 1
    assert [(i["tenant"], i["number"]) for i in first["invoices"]] == [
        ("acme", "INV-2026-000001")]
    assert [d["tenant"] for d in first["drafts"]] == ["gpu-co"]
    with db.transaction(s) as conn:
        conn.execute("UPDATE openfaas_metering.tenants SET plan_override = 'gpu'"
                     " WHERE namespace = 'gpu-co'")
    [later] = close(s, period="2026-09")["periods"][0]["invoices"]
    assert (later["tenant"], later["number"]) == ("gpu-co", "INV-2026-000002")  # no gap


def test_capacity_is_priced_with_spot_discount_and_a_mid_month_price_change(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    start = datetime(2026, 9, 15, 22, tzinfo=timezone.utc)
    ticks(s, "render", [("loadbalancer_hours", "", False, "1"),
                        ("node_hours", "g5", True, "2")],
          [start + timedelta(hours=h) for h in range(5)], plan="pro")
    close(s, period="2026-09")
    got = [(kind, m, spot, q, a) for kind, m, _, spot, q, a, _ in lines(s, "render", "2026-09")]
    # subscribed from the first tick (15 September): 16 of September's 30 days
    assert got == [
        ("capacity", "node_hours", True, Decimal(8), Decimal("3.20")),  # 8 x 1.00 - 60 %
        ("capacity", "loadbalancer_hours", False, Decimal(2), Decimal("0.20")),  # before 16th
        ("capacity", "loadbalancer_hours", False, Decimal(2), Decimal("0.10")),  # after
        ("base_fee", None, False, 1, Decimal("5.33")),     # 10.00 x 16/30
        ("commitment", None, False, 1, Decimal("23.17"))]  # 50.00 x 16/30 = 26.67 - 3.50
    assert invoices(s)["render 2026-09"][2] == Decimal("38.40")  # 32.00 + 20 % tax


def test_currency_minor_units_come_from_the_currency(database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    with db.transaction(s) as conn:
        conn.execute("INSERT INTO openfaas_metering.tenants (namespace, plan) VALUES"
                     " ('tokyo', 'yen'), ('kuwait', 'dinar')")
    send(s, [event("tokyo", "2026-09-10T10:00:00Z", 100 * NS),
             event("kuwait", "2026-09-10T10:00:00Z", 10 * NS)])
    close(s, period="2026-09")
    got = invoices(s)
    # 100 GB-s x 0.3333 = 33.33 -> 33 yen, tax 10 % = 3.3 -> 3
    assert (str(got["tokyo 2026-09"][2]), got["tokyo 2026-09"][3]) == ("36", "JPY")
    # 10 GB-s x 0.00033333 = 0.0033333 -> 0.003 dinar
    assert (str(got["kuwait 2026-09"][2]), got["kuwait 2026-09"][3]) == ("0.003", "KWD")


def test_verify_after_a_re_run_finds_no_difference_and_reports_late_usage(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    send(s, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS)])
    number = close(s, period="2026-09")["periods"][0]["invoices"][0]["number"]
    close(s, period="2026-09")
    report = audit.verify(s, number)
    assert (report["match"], report["differences"], report["late_usage"]) == (True, [], [])
    send(s, [event("acme", "2026-09-11T10:00:00Z", 1000 * NS)])
    report = audit.verify(s, number)
    assert report["match"] and len(report["late_usage"]) == 2
    with db.transaction(s) as conn:  # tampering (as superuser, triggers off) is found
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("UPDATE openfaas_metering.invoice_lines SET amount = amount + 1"
                     " WHERE line_no = 1")
    assert "stored lines do not match lines_sha256" in audit.verify(s, number)["differences"]


def test_export_traces_each_line_to_its_rows_per_function_per_day(database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    send(s, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS, function_name="a"),
             event("acme", "2026-09-10T11:00:00Z", 1000 * NS, function_name="b"),
             event("acme", "2026-09-12T10:00:00Z", 1000 * NS, function_name="a")])
    number = close(s, period="2026-09")["periods"][0]["invoices"][0]["number"]
    text = audit.export(s, number)
    # the form of the lines CSV: CRLF line ends, true/false, ISO dates
    assert text.endswith("\r\n") and text.count("\r\n") == text.count("\n")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["line_no", "kind", "meter", "sku", "spot", "day", "function_name",
                       "quantity", "unit"]
    gb = [(r[1], r[4], r[5], r[6], r[7]) for r in rows[1:] if r[2] == "gb_seconds"]
    assert gb == [("usage", "false", "2026-09-10", "a", "1000"),
                  ("usage", "false", "2026-09-10", "b", "1000"),
                  ("usage", "false", "2026-09-12", "a", "1000"),
                  # the closing row: the line's quantity, what its rows add up to
                  ("line_total", "false", "", "", "3000")]
    calls = [(r[1], r[7]) for r in rows[1:] if r[2] == "invocations"]
    # one call per function and day: a and b on the 10th, a on the 12th
    assert calls == [("usage", "1"), ("usage", "1"), ("usage", "1"), ("line_total", "3")]


def test_the_docs_monthly_query_agrees_with_the_invoice_within_the_bound(
        database_url, tmp_path):
    import random

    from chargeback.usage.events import OPENFAAS_DOCS_MONTHLY_QUERY
    s = settings_for(database_url, tmp_path)
    rng = random.Random(7)
    events = [event("acme", f"2026-09-{rng.randint(1, 30):02d}T10:{rng.randint(0, 59):02d}:"
                    f"{rng.randint(0, 59):02d}.{rng.randrange(10**9):09d}Z",
                    rng.randrange(1, 10**10), rng.choice([128, 512, 4096]) * 2**20,
                    function_name=f"f{i % 3}") for i in range(300)]
    send(s, events)
    close(s, period="2026-09")
    query = OPENFAAS_DOCS_MONTHLY_QUERY.replace(
        "u.started > now() - interval '30 days'",
        "u.started >= '2026-09-01T00:00:00Z' and u.started < '2026-10-01T00:00:00Z'")
    assert query != OPENFAAS_DOCS_MONTHLY_QUERY
    with db.transaction(s) as conn:
        docs = sum(row[4] for row in conn.execute(query))
    invoiced = usage_line(s, "acme", "2026-09")[0]
    bound = sum(Decimal("0.5e-6") * e["memory_bytes"] / GiB for e in events)
    assert abs(Decimal(docs) - invoiced) <= bound


def test_concurrent_runs_produce_one_set_of_invoices_queued_once(database_url, tmp_path):
    import threading
    s = settings_for(database_url, tmp_path)
    send(s, [event(f"t{i}", "2026-09-10T10:00:00Z", NS) for i in range(6)])
    recorder, barrier, outs = Recorder(), threading.Barrier(3), []

    def run():
        barrier.wait()
        outs.append(month_close.run(s, Options(), NOW, recorder))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    numbers = sorted(row[1] for row in invoices(s).values())
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 7)]
    assert sorted(json.loads(body)["invoice_id"] for _, body in recorder.calls) == sorted(
        i["invoice_id"] for out in outs for p in out["periods"] for i in p["invoices"])
    assert len(recorder.calls) == 6


def test_numbers_stay_gap_free_when_a_concurrent_finalization_rolls_back(
        database_url, tmp_path):
    import threading

    import psycopg

    from chargeback.billing import pricebook_store
    from chargeback.billing.periods import period
    s = settings_for(database_url, tmp_path)
    send(s, [event(f"t{i}", f"2026-0{m}-10T10:00:00Z", NS) for i in range(3) for m in (8, 9)])
    pricebook_store.ensure_file_loaded(s)
    with db.transaction(s) as conn:
        book = pricebook_store.latest(conn)
    august_numbered, september_pid, september_done = threading.Event(), [], []

    def september():
        august_numbered.wait()
        with psycopg.connect(database_url) as conn:
            september_pid.append(conn.info.backend_pid)
            september_done.append(month_close.close_period(conn, s, period("2026-09", "UTC"),
                                                           book))

    other = threading.Thread(target=september, daemon=True)
    other.start()
    with psycopg.connect(database_url) as conn, \
            psycopg.connect(database_url, autocommit=True) as watcher:
        first = month_close.close_period(conn, s, period("2026-08", "UTC"), book)
        assert [i["number"] for i in first.invoices][-1] == "INV-2026-000003"
        august_numbered.set()
        # Seen from a third session: September's backend waits on a lock that August's
        # open transaction holds. Today that is the close lock (wait_event 'advisory'),
        # taken before anything is read; without it, September would queue on the
        # counter row August's numbers locked (wait_event 'transactionid').
        waiting = until(lambda: september_pid and watcher.execute(
            """SELECT wait_event_type, wait_event FROM pg_stat_activity
                WHERE pid = %s AND %s = ANY(pg_blocking_pids(pid))""",
            (september_pid[0], conn.info.backend_pid)).fetchone(),
            "September's finalization to queue behind August's open transaction")
        assert waiting[0] == "Lock", waiting
        assert not september_done
        conn.rollback()           # forced: August never happened
    other.join(timeout=30)
    assert september_done, "September never finished after August rolled back"
    # September took the numbers August gave back, 1..3; August, closed again, the next.
    assert sorted(i["number"] for i in september_done[0].invoices) == [
        f"INV-2026-{n:06d}" for n in range(1, 4)]
    close(s, period="2026-08")
    got = {k: v[1] for k, v in invoices(s).items()}
    assert sorted(got.values()) == [f"INV-2026-{n:06d}" for n in range(1, 7)]
    assert sorted(got[f"t{i} 2026-09"] for i in range(3)) == [
        f"INV-2026-{n:06d}" for n in range(1, 4)]


@pytest.mark.parametrize("body, field", [
    (b'{"period": "2026-13"}', "period"), (b'{"tenant": "Not_A_Name"}', "tenant"),
    (b'{"dry_run": "yes"}', "dry_run"), (b'{"verify": 42}', "verify"),
    (b'{"colour": "red"}', "colour"), (b'{"export": "X", "period": "2026-09"}', "period"),
    (b'[1]', "body")])
def test_a_bad_option_answers_400_naming_the_field(body, field):
    from chargeback.core.responses import RequestError
    with pytest.raises(RequestError) as caught:
        month_close.parse_options(body)
    assert caught.value.status == 400 and caught.value.reason.startswith(f"{field}:")


def test_dry_run_shows_the_month_to_date_and_changes_nothing(database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    send(s, [event("acme", "2026-11-02T10:00:00Z", 1000 * NS),
             event("acme", "2026-11-24T13:00:00Z", 1000 * NS)])  # after NOW: not yet
    out = close(s, dry_run=True)
    assert (out["period"], out["month_to_date"]) == ("2026-11", True)
    assert out["invoices"][0]["total"] == "1.00"
    assert invoices(s) == {}
    with db.transaction(s) as conn:
        assert conn.execute("SELECT count(*) FROM openfaas_metering.tenants").fetchone()[0] == 0


def test_closing_a_month_that_has_not_ended_is_refused(database_url, tmp_path):
    from chargeback.core.responses import RequestError
    s = settings_for(database_url, tmp_path)
    with pytest.raises(RequestError, match="^period: 2026-11 has not ended"):
        close(s, period="2026-11")


def test_a_changed_price_book_file_is_a_new_version_and_old_invoices_keep_theirs(
        database_url, tmp_path):
    from .billing_helpers import BOOK
    s = settings_for(database_url, tmp_path)
    send(s, [event("acme", "2026-08-10T10:00:00Z", 1000 * NS)])
    close(s, period="2026-08")
    # a deployed file replaces the stored version only when the operator says so
    s2 = settings_for(database_url, tmp_path, book=BOOK.replace('"0.001"', '"0.002"'),
                      PRICEBOOK_FILE_WINS="true")
    send(s2, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS)])
    close(s2, period="2026-09")
    with db.transaction(s) as conn:
        versions = conn.execute("SELECT period, price_book_version FROM"
                                " openfaas_metering.invoices ORDER BY period").fetchall()
        kept = conn.execute("SELECT count(*) FROM openfaas_metering.price_book_versions"
                            ).fetchone()[0]
    assert (versions, kept) == ([("2026-08", 1), ("2026-09", 2)], 2)
    assert usage_line(s, "acme", "2026-09") == (gb_s(1000 * NS), Decimal("2.00"))


def test_prices_changed_with_the_command_win_over_an_older_deployed_file(
        database_url, tmp_path, monkeypatch, capsys):
    from chargeback.billing import pricebook_store

    from .billing_helpers import BOOK
    s = settings_for(database_url, tmp_path)        # the deployed file: 0.001 per GB-s
    pricebook_store.ensure_file_loaded(s)
    edited = tmp_path / "edited.yml"
    edited.write_text(BOOK.replace('"0.001"', '"0.003"'))
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert pricebook_store.main(["load", str(edited)]) == 0
    assert "price book version 2 (stored now" in capsys.readouterr().out
    assert pricebook_store.main(["load", str(edited)]) == 0
    assert "version 2 (already stored" in capsys.readouterr().out
    send(s, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS)])
    close(s, period="2026-09")
    assert usage_line(s, "acme", "2026-09") == (gb_s(1000 * NS), Decimal("3.00"))
    bad = tmp_path / "bad.yml"
    bad.write_text("plans: {}\n")
    assert pricebook_store.main(["load", str(bad)]) == 1
    assert "price_lists: expected a mapping" in capsys.readouterr().err


def test_the_daily_rollup_ingest_keeps_equals_the_hourly_one_exactly(database_url, tmp_path):
    import random
    s = settings_for(database_url, tmp_path)
    rng = random.Random(3)
    for _ in range(3):  # several deliveries: the daily rows are updated, not only inserted
        send(s, [event(f"t{rng.randint(0, 2)}", f"2026-09-{rng.randint(1, 3):02d}T"
                       f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00."
                       f"{rng.randrange(10**9):09d}Z", rng.randrange(1, 10**11),
                       rng.choice([128, 1024, 3000]) * 2**20, function_name=f"f{rng.randint(0, 2)}")
                 for _ in range(200)])
    with db.transaction(s) as conn:
        hourly = conn.execute(
            """SELECT date_trunc('day', hour_start AT TIME ZONE 'UTC'), namespace, function_name,
                      sum(invocations), sum(duration_ns), sum(gb_seconds)
                 FROM openfaas_metering.function_usage_hourly GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
        ).fetchall()
        daily = conn.execute(
            """SELECT day_start AT TIME ZONE 'UTC', namespace, function_name, invocations,
                      duration_ns, gb_seconds
                 FROM openfaas_metering.function_usage_daily ORDER BY 1, 2, 3""").fetchall()
    assert daily == hourly and len(daily) > 10


def test_a_new_tenants_usage_in_a_closed_month_is_invoiced_once_in_that_month(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    send(s, [event("acme", "2026-08-10T10:00:00Z", 1000 * NS)])
    close(s, period="2026-08")
    send(s, [event("newco", "2026-08-11T10:00:00Z", 1000 * NS)])  # late, and newco is new
    close(s, period="2026-09")
    close(s, now=datetime(2026, 12, 1, 12, tzinfo=timezone.utc))  # the hourly run, later
    close(s, period="2026-08")   # re-closing the closed month invoices nobody twice
    assert sorted(invoices(s)) == ["acme 2026-08", "newco 2026-08"]
    assert [(kind, q) for kind, m, _, _, q, a, adj in lines(s, "newco", "2026-08")
            if m == "gb_seconds"] == [("usage", gb_s(1000 * NS))]


def test_a_month_with_a_draft_invoices_a_new_tenant_there_not_as_late_usage(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    ticks(s, "gpu-co", [("gpu_hours", "NVIDIA-B200", False, "1")],
          [datetime(2026, 8, 1, h, tzinfo=timezone.utc) for h in range(2)])
    send(s, [event("acme", "2026-08-10T10:00:00Z", 1000 * NS)])
    close(s, period="2026-08")   # gpu-co stays a draft: August is not closed
    send(s, [event("newco", "2026-08-11T10:00:00Z", 1000 * NS)])
    close(s, period="2026-09")
    close(s, period="2026-08")
    got = invoices(s)
    assert got["newco 2026-08"][0] == "finalized" and "newco 2026-09" not in got


def test_a_re_run_changes_no_finalized_invoice(database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    send(s, [event(f"t{i}", "2026-09-10T10:00:00Z", (i + 1) * 1000 * NS) for i in range(3)])
    close(s, period="2026-09")

    def snapshot():
        with db.transaction(s) as conn:
            return conn.execute(
                """SELECT namespace, number, total, issued_at, computed_at, inputs_sha256,
                          lines_sha256, (SELECT count(*) FROM openfaas_metering.invoice_lines l
                                          WHERE l.invoice_id = i.invoice_id)
                     FROM openfaas_metering.invoices i ORDER BY namespace""").fetchall()
    before = snapshot()
    out = close(s, period="2026-09")
    assert out["periods"][0]["invoices"] == [] and snapshot() == before
    hourly = close(s, now=NOW)["periods"]  # the hourly run: only October, empty, is left
    assert [(p["period"], p["invoices"]) for p in hourly] == [("2026-10", [])]
    assert snapshot() == before and close(s, now=NOW)["periods"] == []


def test_late_usage_is_corrected_in_its_own_month_while_a_later_month_is_a_draft(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    send(s, [event("acme", "2026-07-10T10:00:00Z", 1000 * NS)])
    close(s, period="2026-07")
    ticks(s, "acme", [("gpu_hours", "NVIDIA-B200", False, "1")],
          [datetime(2026, 8, 1, h, tzinfo=timezone.utc) for h in range(2)])
    send(s, [event("acme", "2026-07-11T10:00:00Z", 500 * NS)])   # late July usage
    close(s, now=datetime(2026, 9, 2, tzinfo=timezone.utc))  # acme's August stays a draft
    close(s, now=datetime(2026, 9, 2, 1, tzinfo=timezone.utc))
    got = invoices(s)
    assert got["acme 2026-08"][0] == "draft"
    # July: 1.00 invoiced, then 500 GB-s more at July's 0.001 = 0.50, once
    assert [(k, t) for k, _, t, _ in documents(s, "acme", "2026-07")] == [
        ("invoice", Decimal("1.00")), ("supplementary", Decimal("0.50"))]


def test_the_export_of_a_supplementary_invoice_adds_up_to_its_quantity(database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    send(s, [event("acme", "2026-08-10T10:00:00Z", 1000 * NS, function_name="a")])
    close(s, period="2026-08")
    send(s, [event("acme", "2026-08-20T10:00:00Z", 500 * NS, function_name="b")])
    number = close(s, period="2026-08")["periods"][0]["invoices"][0]["number"]
    rows = [r.split(",") for r in audit.export(s, number).splitlines()[1:]]
    gb = [(r[1], r[5], r[6], Decimal(r[7])) for r in rows if r[2] == "gb_seconds"]
    # August as known now, what the invoice billed (negated), the correction's 500 GB-s
    assert gb == [("usage", "2026-08-10", "a", Decimal(1000)),
                  ("usage", "2026-08-20", "b", Decimal(500)),
                  ("billed_earlier", "", "", Decimal(-1000)),
                  ("line_total", "", "", Decimal(500))]
    assert sum(q for kind, _, _, q in gb if kind != "line_total") == gb_s(500 * NS)
    report = audit.verify(s, number)
    assert report["match"] and report["late_usage"] == []


