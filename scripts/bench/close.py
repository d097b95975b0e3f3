"""scripts/bench/close: time a month close over 10 million events and a month of capacity.

The data: `--events` function events in September 2026 across `--tenants`
tenants and `--functions` functions, stored with receive-usage's own insert
statement (chargeback.usage.ingest: the raw table plus the hourly and daily rollups
built from the rows it returned) in batches of a million; and a month of
hourly meter-capacity ticks for every tenant through the real tick store
(chargeback.capacity_store.record_tick). The database is an embedded
PostgreSQL in var/bench/ (fsync off; a fresh database each run).

Timed: aggregate-month's close of 2026-09 (read usage and capacity, price,
finalize and number every invoice, claim them for the hand-off; the gateway
call itself is replaced by a no-op), then the OpenFaaS docs' sample monthly
query restricted to the same month (a scan of every raw event), as the
baseline. Between runs the invoices are deleted so each run closes afresh.
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

from chargeback.billing import month_close
from chargeback.billing import store as billing_store
from chargeback.billing.month_close import Options
from chargeback.billing.periods import period, to_ns
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


def load_usage(settings, args) -> None:
    start_ns, end_ns = to_ns(PERIOD.start), to_ns(PERIOD.end)
    step_ns = (end_ns - start_ns - 2**20) // args.events
    for first in range(0, args.events, CHUNK):
        last = min(first + CHUNK, args.events) - 1
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
            ingest._insert(conn, f"bench-{first}", events)
        print(f"  events {first:>10,} .. {last:>10,} stored in "
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


def reset(settings) -> None:
    with db.transaction(settings) as conn:
        conn.execute("DELETE FROM openfaas_metering.invoices")
        conn.execute("DELETE FROM openfaas_metering.closed_periods")
        conn.execute("DELETE FROM openfaas_metering.invoice_number_counters")


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
    result = out["periods"][0]
    if result["drafts"]:
        raise SystemExit(f"bench: drafts: {result['drafts'][:3]}")
    return close_s, usage_s, capacity_s, len(result["invoices"])


def timed_baseline(settings) -> float:
    with db.transaction(settings) as conn:
        started = time.perf_counter()
        conn.execute(BASELINE, {"start": PERIOD.start, "end": PERIOD.end}).fetchall()
        return time.perf_counter() - started


def month_options(parser: argparse.ArgumentParser) -> None:
    """The generated month's size (scripts/bench/budgets evaluates the same month)."""
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--functions", type=int, default=20_000)


@contextmanager
def generated_month(args, database: str, **env: str) -> Iterator[Settings]:
    """An embedded PostgreSQL (fsync off) with a fresh `database` holding the generated
    month, vacuumed and analyzed: its settings; the server stops on leaving."""
    VAR.mkdir(parents=True, exist_ok=True)
    pg = EmbeddedPostgres(VAR / "pg", free_port(), durable=False).start()
    try:
        settings = load({"DATABASE_URL": pg.fresh_database(database), "DB_POOL_MAX": "2",
                         **env})
        print(f"loading {args.events:,} events ({args.tenants:,} tenants, "
              f"{args.functions:,} functions) and a month of capacity ...", flush=True)
        load_usage(settings, args)
        load_capacity(settings, args)
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        yield settings
    finally:
        db.close_all()
        pg.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench/close", description=__doc__.split("\n")[0])
    month_options(parser)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with generated_month(args, "bench_close") as settings:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            rows = conn.execute(
                """SELECT (SELECT count(*) FROM openfaas_metering.function_usage_hourly),
                          (SELECT count(*) FROM openfaas_metering.function_usage_daily)"""
            ).fetchone()
        print(f"rollups: {rows[0]:,} hourly rows, {rows[1]:,} daily rows")
        closes, baselines = [], []
        for run in range(args.runs):
            reset(settings)
            close_s, usage_s, capacity_s, invoices = timed_close(settings)
            baseline_s = timed_baseline(settings)
            closes.append(close_s)
            baselines.append(baseline_s)
            print(f"run {run + 1}: close {close_s:5.2f} s ({invoices:,} invoices finalized; "
                  f"of which reading the month's usage {usage_s:5.2f} s, capacity "
                  f"{capacity_s:5.2f} s), "
                  f"docs' query {baseline_s:5.2f} s", flush=True)
        close_s, baseline_s = statistics.median(closes), statistics.median(baselines)
        print(f"\nmonth close (median of {args.runs}): {close_s:.2f} s "
              f"(goal <= {GOAL_S:.0f} s: {'reached' if close_s <= GOAL_S else 'NOT reached'})")
        print(f"baseline, the docs' monthly query over the raw events: {baseline_s:.2f} s")
        print(f"ratio: {baseline_s / close_s:.1f}x (goal >= 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
