"""scripts/bench/close: time a month close over 10 million events and a month of capacity.

The data: `--events` function events in September 2026 across `--tenants`
tenants and `--functions` functions, stored with receive-usage's own insert
statement (chargeback.usage.ingest: the raw table plus the hourly and daily rollups
built from the rows it returned) in batches of a million; and a month of
hourly meter-capacity ticks for every tenant through the real tick store
(chargeback.capacity_store.record_tick). The database is an embedded
PostgreSQL in var/bench/ (fsync off; a fresh database each run).

Before September, `--history-months` earlier months of `--history-events`
events each are stored and closed (their rollups aged by a day first, as if
ingested long ago); after September's events, one late event of August for
`--late-share` of the tenants arrives.

Timed, each run: (1) aggregate-month's close of 2026-09 alone (read usage
and capacity, price, finalize and number every invoice with its usage CSV,
claim them for the hand-off; the gateway call itself is replaced by a no-op);
(2) the hourly run that closes 2026-09 beside the 12 closed months, which
also corrects August for the late tenants (supplementary invoices) and must
not re-read the other eleven; then the OpenFaaS docs' sample monthly query
restricted to September (a scan of every raw event), as the baseline.
Between runs September's documents and August's corrections are deleted.
After each run what was stored is read back and checked against the docs'
query per tenant (GB-s within its half-microsecond-per-event bound,
invocations exactly), for September and for August with its corrections,
and every finalized document's usage CSV is looked up under its SHA-256 and
hashed again; a mismatch fails the benchmark.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
from devstack.pg import EmbeddedPostgres, free_port

from chargeback.billing import export, month_close
from chargeback.billing import store as billing_store
from chargeback.billing.month_close import Options
from chargeback.billing.periods import period, preceding, to_ns
from chargeback.capacity import store as capacity_store
from chargeback.capacity.holdings import Reading, Sample, Tenant
from chargeback.core import db
from chargeback.core.settings import Settings, load
from chargeback.usage import ingest
from chargeback.usage.events import OPENFAAS_DOCS_MONTHLY_QUERY, months_of

ROOT = Path(__file__).resolve().parents[2]
VAR = Path(os.environ.get("CHARGEBACK_VAR") or ROOT / "var") / "bench"
GOAL_S = 5.0
PERIOD = period("2026-09", "UTC")
CHUNK = 1_000_000

# Deterministic pseudo-random events, generated in SQL: event i of the chunk
# starts at an even spread over the month plus jitter, in one of the
# functions (each function belongs to one tenant), 1 ms to ~16 s, 128 MiB to 2 GiB.
_STAGE = """
INSERT INTO usage_staging (namespace, function_name, started_ns, duration_ns, memory_bytes)
SELECT 'tenant-' || (f %% %(tenants)s), 'fn-' || f,
       %(start_ns)s + (i * %(step_ns)s) + (hashint8(i) & 1048575),
       1000000 + (abs(hashint8(i * 7)) %% 16000000000),
       (128::bigint << (abs(hashint8(i * 13)) %% 5)) * 1048576
  FROM (SELECT i, abs(hashint8(i * 31)) %% %(functions)s AS f
          FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i) AS g"""

BASELINE = OPENFAAS_DOCS_MONTHLY_QUERY.replace(
    "u.started > now() - interval '30 days'",
    "u.started >= %(start)s and u.started < %(end)s")


class NoGateway:
    """The hand-off without HTTP: the benchmark times the close, not the gateway."""

    def invoke_async(self, function, body=b"", **kwargs):
        return "bench"


def load_usage(settings, args, p=PERIOD, count=None) -> None:
    count = count or args.events
    start_ns, end_ns = to_ns(p.start), to_ns(p.end)
    step_ns = (end_ns - start_ns - 2**20) // count
    for first in range(0, count, CHUNK):
        last = min(first + CHUNK, count) - 1
        started = time.perf_counter()
        with db.transaction(settings) as conn:
            conn.execute(ingest._ENSURE_PARTITIONS, (months_of([start_ns, end_ns - 1]),))
            conn.execute(ingest._STAGING)
            conn.execute(_STAGE, {"tenants": args.tenants, "functions": args.functions,
                                  "start_ns": start_ns, "step_ns": step_ns,
                                  "first": first, "last": last})
            # receive-usage sums the rollups from the events it holds: read them back
            events = conn.execute("SELECT namespace, function_name, started_ns, duration_ns,"
                                  " memory_bytes FROM usage_staging").fetchall()
            ingest._insert(conn, f"bench-{p.name}-{first}", events)
        print(f"  {p.name} events {first:>10,} .. {last:>10,} stored in "
              f"{time.perf_counter() - started:5.1f} s", flush=True)


def load_capacity(settings, args) -> None:
    tenants = tuple(Tenant(f"tenant-{t}") for t in range(args.tenants))
    samples = []
    for t in range(args.tenants):
        ns = f"tenant-{t}"
        samples += [Sample(ns, "storage_gib_hours", "standard-rwo", False, Decimal(100 + t % 50)),
                    Sample(ns, "loadbalancer_hours", "", False, Decimal(1))]
        if t % 10 == 0:
            samples += [Sample(ns, "node_hours", "e2-standard-8", t % 20 == 0, Decimal(2)),
                        Sample(ns, "cpu_core_hours", "", t % 20 == 0, Decimal(16)),
                        Sample(ns, "memory_gib_hours", "", t % 20 == 0, Decimal(64))]
    reading = Reading(tenants, tuple(samples), dedicated_nodes=args.tenants // 5,
                      not_ready_nodes=0, warnings=())
    slots = int((PERIOD.end - PERIOD.start) / timedelta(hours=1)) + 1
    started = time.perf_counter()
    for h in range(slots):
        with db.transaction(settings) as conn:
            capacity_store.record_tick(conn, PERIOD.start + timedelta(hours=h), reading, 3600)
    print(f"  {slots} hourly ticks of {len(samples):,} samples stored in "
          f"{time.perf_counter() - started:5.1f} s", flush=True)


HISTORY_NOW = datetime(2026, 9, 2, tzinfo=timezone.utc)   # the history closes before Sept
HOURLY_NOW = datetime(2026, 10, 2, tzinfo=timezone.utc)   # the run that closes September
LATE = period("2026-08", "UTC")


def load_history(settings, args) -> None:
    """12 earlier months stored, aged and closed (what a year of operation leaves)."""
    months, p = [], LATE
    for _ in range(args.history_months):
        months.append(p)
        p = preceding(p)
    for p in reversed(months):
        load_usage(settings, args, p, args.history_events)
    with db.transaction(settings) as conn:
        conn.execute("UPDATE openfaas_metering.function_usage_daily_stripes"
                     " SET updated_at = updated_at - interval '1 day'")
    started = time.perf_counter()
    out = month_close.run(settings, Options(), HISTORY_NOW, NoGateway())
    print(f"  {len(out['periods'])} months of history closed in "
          f"{time.perf_counter() - started:5.1f} s", flush=True)


def load_late(settings, args) -> list[str]:
    """One late August event for every tenth (--late-share) tenant, through ingest: a
    batch job of 500,000 GB-s, beyond the shipped price book's monthly allowance."""
    step = max(1, round(1 / args.late_share))
    late = [f"tenant-{t}" for t in range(0, args.tenants, step)]
    with db.transaction(settings) as conn:
        conn.execute(ingest._STAGING)
        conn.execute(
            """INSERT INTO usage_staging
               SELECT ns, 'fn-late', %s + n * 1000, 500000000000000, 1073741824
                 FROM unnest(%s::text[]) WITH ORDINALITY AS u(ns, n)""",
            (to_ns(LATE.start) + 86_400 * 10**9 * 20, late))
        events = conn.execute("SELECT namespace, function_name, started_ns, duration_ns,"
                              " memory_bytes FROM usage_staging").fetchall()
        ingest._insert(conn, "bench-late", events)
    return late


def reset(settings, august_checked_at) -> None:
    """September not closed, August's corrections undone and August last checked at
    `august_checked_at` (numbers are not reused)."""
    with db.transaction(settings) as conn:
        # finalized documents cannot be deleted (sql/050): the bench's own database,
        # as its superuser, with the triggers off for this reset only
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("DELETE FROM openfaas_metering.invoices"
                     " WHERE period = %s OR document_kind <> 'invoice'", (PERIOD.name,))
        # and their usage CSVs, so the next run stores them again
        conn.execute("""DELETE FROM openfaas_metering.document_usage_csvs c
                         WHERE NOT EXISTS (SELECT FROM openfaas_metering.invoices i
                                            WHERE i.usage_csv_sha256 = c.sha256)""")
        conn.execute("DELETE FROM openfaas_metering.closed_periods WHERE period = %s",
                     (PERIOD.name,))
        conn.execute("UPDATE openfaas_metering.closed_periods SET usage_checked_at = %s"
                     " WHERE period = %s", (august_checked_at, LATE.name))


_STORED = """
SELECT i.namespace, sum(l.quantity) FILTER (WHERE l.meter = 'invocations'),
       sum(l.quantity) FILTER (WHERE l.meter = 'gb_seconds')
  FROM openfaas_metering.invoices i JOIN openfaas_metering.invoice_lines l USING (invoice_id)
 WHERE i.period = %(period)s AND i.status <> 'draft'
 GROUP BY 1"""

_DOCS_BY_NAMESPACE = """
SELECT namespace, sum(total_invocations), sum(total_gb_seconds), sum(bound)
  FROM ({docs}) AS q
  JOIN (SELECT namespace, sum(0.5e-6 * memory_bytes / 1073741824.0) AS bound
          FROM openfaas_metering.function_usage
         WHERE started >= %(start)s AND started < %(end)s GROUP BY 1) AS b USING (namespace)
 GROUP BY 1"""


# finalized documents of the period whose usage CSV is missing or not what its hash says
_CSV_MISSING = f"""
SELECT i.number FROM openfaas_metering.invoices i
 WHERE i.period = %(period)s AND i.status <> 'draft'
   AND encode(sha256(convert_to({export.STORED_CSV}, 'UTF8')), 'hex')
       IS DISTINCT FROM i.usage_csv_sha256"""


def cross_check(settings, p) -> int:
    """What the documents of `p` bill per tenant against the docs' query, and that each
    has its usage CSV; the number of tenants checked. Exits on a mismatch."""
    docs = BASELINE.strip().rstrip(";").replace("u.namespace,", "u.namespace AS namespace,")
    query = _DOCS_BY_NAMESPACE.replace("{docs}", docs)
    with db.transaction(settings) as conn:
        stored = {ns: (inv, gb) for ns, inv, gb in conn.execute(_STORED, {"period": p.name})}
        expected = conn.execute(query, {"start": p.start, "end": p.end}).fetchall()
        no_csv = conn.execute(_CSV_MISSING, {"period": p.name}).fetchall()
    if no_csv:
        raise SystemExit(f"bench: {p.name}: {len(no_csv)} documents without their usage "
                         f"CSV, e.g. {no_csv[0][0]}")
    bad = [(ns, inv, gb, stored.get(ns)) for ns, inv, gb, bound in expected
           if ns not in stored or stored[ns][0] != inv
           or abs(Decimal(gb) - stored[ns][1]) > Decimal(bound)]
    if bad or len(stored) != len(expected):
        raise SystemExit(f"bench: {p.name}: stored documents disagree with the docs' query "
                         f"for {len(bad)} tenants, e.g. {bad[:2]}")
    return len(expected)


def timed_close(settings) -> tuple[float, float, float, int]:
    with db.transaction(settings) as conn:
        started = time.perf_counter()
        conn.execute(billing_store.USAGE_BY_NAMESPACE,
                     billing_store.window_params(PERIOD.start, PERIOD.end, None)).fetchall()
        usage_s = time.perf_counter() - started
        started = time.perf_counter()
        billing_store.capacity(conn, PERIOD.start, PERIOD.end)
        capacity_s = time.perf_counter() - started
    started = time.perf_counter()
    out = month_close.run(settings, Options(period=PERIOD.name),
                          datetime(2026, 11, 1, tzinfo=timezone.utc), NoGateway())
    close_s = time.perf_counter() - started
    [result] = [p for p in out["periods"] if p["period"] == PERIOD.name]
    if result["drafts"]:
        raise SystemExit(f"bench: drafts: {result['drafts'][:3]}")
    return close_s, usage_s, capacity_s, len(result["invoices"])


def timed_baseline(settings) -> float:
    with db.transaction(settings) as conn:
        started = time.perf_counter()
        conn.execute(BASELINE, {"start": PERIOD.start, "end": PERIOD.end}).fetchall()
        return time.perf_counter() - started


def timed_hourly(settings) -> tuple[float, list[str], int]:
    """The hourly run after September: corrects August, closes September."""
    started = time.perf_counter()
    out = month_close.run(settings, Options(), HOURLY_NOW, NoGateway())
    hourly_s = time.perf_counter() - started
    corrections = sum(1 for p in out["periods"] for i in p["invoices"] if i.get("corrects"))
    return hourly_s, [p["period"] for p in out["periods"]], corrections


def month_options(parser: argparse.ArgumentParser, history: bool = False) -> None:
    """The generated month's size (scripts/bench/budgets evaluates the same month);
    `history`: also the closed months before it and late usage for some tenants."""
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--functions", type=int, default=20_000)
    if history:
        parser.add_argument("--history-months", type=int, default=12)
        parser.add_argument("--history-events", type=int, default=200_000,
                            help="events in each earlier month")
        parser.add_argument("--late-share", type=float, default=0.10,
                            help="share of tenants with late usage of the month before")


@contextmanager
def generated_month(args, database: str, **env: str) -> Iterator[Settings]:
    """An embedded PostgreSQL (fsync off) with a fresh `database` holding the generated
    month (and, with --history-months, the closed months before it and late usage:
    `args.late` names those tenants), vacuumed and analyzed: its settings; the server
    stops on leaving."""
    VAR.mkdir(parents=True, exist_ok=True)
    pg = EmbeddedPostgres(VAR / "pg", free_port(), durable=False).start()
    history = getattr(args, "history_months", 0)
    try:
        # loading ages a year of rollups in one statement: beyond the 15 s default bound
        settings = load({"DATABASE_URL": pg.fresh_database(database), "DB_POOL_MAX": "2",
                         "DB_STATEMENT_TIMEOUT": "600", **env})
        print(f"loading {history} closed months, {args.events:,} events ({args.tenants:,} tenants, "
              f"{args.functions:,} functions) and a month of capacity ...", flush=True)
        if history:
            load_history(settings, args)
        load_usage(settings, args)
        load_capacity(settings, args)
        args.late = load_late(settings, args) if history else []
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        yield settings
    finally:
        db.close_all()
        pg.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench/close", description=__doc__.split("\n")[0])
    month_options(parser, history=True)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with generated_month(args, "bench_close") as settings:
        late = args.late
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            rows = conn.execute(
                """SELECT (SELECT count(*) FROM openfaas_metering.function_usage_hourly),
                          (SELECT count(*) FROM openfaas_metering.function_usage_daily)"""
            ).fetchone()
        print(f"rollups: {rows[0]:,} hourly rows, {rows[1]:,} daily rows")
        with db.transaction(settings) as conn:
            august_checked_at = conn.execute(
                "SELECT usage_checked_at FROM openfaas_metering.closed_periods"
                " WHERE period = %s", (LATE.name,)).fetchone()[0]
        closes, hourlies, baselines = [], [], []
        for run in range(args.runs):
            # (1) September alone: August counts as checked (no late usage to look at)
            reset(settings, datetime.max.replace(tzinfo=timezone.utc))
            close_s, usage_s, capacity_s, invoices = timed_close(settings)
            reset(settings, august_checked_at)
            hourly_s, settled, corrections = timed_hourly(settings)
            if settled != ["2026-08", PERIOD.name] or corrections != len(late):
                raise SystemExit(f"bench: the hourly run settled {settled} with {corrections}"
                                 f" corrections; expected August ({len(late)}) and September")
            checked = cross_check(settings, PERIOD) + cross_check(settings, LATE)
            baseline_s = timed_baseline(settings)
            closes.append(close_s)
            hourlies.append(hourly_s)
            baselines.append(baseline_s)
            print(f"run {run + 1}: close {close_s:5.2f} s ({invoices:,} invoices finalized; "
                  f"of which reading the month's usage {usage_s:5.2f} s, capacity "
                  f"{capacity_s:5.2f} s); with {args.history_months} closed months and "
                  f"{corrections} late tenants {hourly_s:5.2f} s; docs' query "
                  f"{baseline_s:5.2f} s; {checked:,} tenant-months read back and matched",
                  flush=True)
        close_s, baseline_s = statistics.median(closes), statistics.median(baselines)
        hourly_s = statistics.median(hourlies)
        print(f"\nmonth close (median of {args.runs}): {close_s:.2f} s "
              f"(goal <= {GOAL_S:.0f} s: {'reached' if close_s <= GOAL_S else 'NOT reached'})")
        print(f"with {args.history_months} closed months and late usage for "
              f"{len(late)} tenants: {hourly_s:.2f} s "
              f"(goal <= {GOAL_S:.0f} s: {'reached' if hourly_s <= GOAL_S else 'NOT reached'})")
        print(f"baseline, the docs' monthly query over the raw events: {baseline_s:.2f} s")
        print(f"ratio: {baseline_s / close_s:.1f}x; with history and corrections "
              f"{baseline_s / hourly_s:.1f}x (goal >= 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
