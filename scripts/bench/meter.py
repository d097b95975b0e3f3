"""scripts/bench/meter: meter-capacity's tick time on a large cluster, and its storage over time.

1. One tick on a generated cluster (5,000 nodes by default). The fixture API
   runs in its own process (so it does not share our GIL), the database is an
   embedded PostgreSQL in var/bench/ (fsync off, a fresh database each run).
   Before timing, one tick sets the baseline (the first tick bills nothing)
   and warms the client and the pool; each timed tick is then run_tick itself
   for a new minute (the slot's lock, list everything page by page, measure,
   record the tick, the tenants and the holdings in one transaction), failing
   unless it recorded 60 s; the listing and measuring are timed again alone,
   so the write is the difference. The rows stored are read back. The cluster does not change between ticks
   (steady state), so the rows written are the tick row alone. Baseline: the
   client's model deserialisation; storage baseline: the per-tick samples
   the previous design wrote (one row per holding per tick).
2. A simulated month (--tenants x --holdings, --change-per-hour of them
   changing units each hour), readings made in-process and recorded through
   capacity_store.record_tick: one day at one tick per minute (rows, write
   time per tick; the month's rows extrapolated as 30 days of the same), then
   a month at one tick per hour, which opens the same intervals (the same
   changes per hour) with fewer tick rows, to time capacity_usage over the
   whole month for every tenant.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
from devstack.pg import EmbeddedPostgres, free_port

from chargeback.capacity import holdings as capacity
from chargeback.capacity import store as capacity_store
from chargeback.capacity import tick as capacity_tick
from chargeback.core import db
from chargeback.core.settings import load

ROOT = Path(__file__).resolve().parents[2]
VAR = Path(os.environ.get("CHARGEBACK_VAR") or ROOT / "var") / "bench"
GOAL_S = 2.0


def start_kube_api(args, kubeconfig: Path) -> subprocess.Popen:
    size = f"{args.nodes},{args.namespaces},{args.pvcs},{args.load_balancers}"
    proc = subprocess.Popen([sys.executable, "-m", "devstack.kubeapi", "--generate", size,
                             "--kubeconfig", str(kubeconfig)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # its URL, once the cluster is generated and encoded
    if not line.startswith("http"):
        proc.kill()
        raise SystemExit("bench: the fixture Kubernetes API did not start")
    return proc


def timed(settings, at: datetime, decode_models: bool) -> dict:
    """One tick through capacity_tick.run_tick itself, timed whole; fails unless it recorded
    the minute and billed its 60 s. The listing and measuring are timed again on their own
    (measure_cluster, which run_tick calls), so the write is the difference."""
    started = time.perf_counter()
    body = capacity_tick.run_tick(settings, at, decode_models=decode_models)
    tick_s = time.perf_counter() - started
    if not body["recorded"] or body["billed_seconds"] != 60:
        sys.exit(f"bench: the tick at {at} did not record 60 s: {body}")
    started = time.perf_counter()
    reading = capacity_tick.measure_cluster(settings, decode_models=decode_models)
    read_s = time.perf_counter() - started
    return {"seconds": {"list + decode + measure": read_s,
                        "write (by difference)": max(0.0, tick_s - read_s), "tick": tick_s},
            "reading": reading, "body": body}


def stored_rows(url: str) -> tuple[int, int]:
    """Tick rows and holding rows in the database."""
    with psycopg.connect(url) as conn:
        return (conn.execute("SELECT count(*) FROM openfaas_metering.capacity_ticks"
                             ).fetchone()[0],
                conn.execute("SELECT count(*) FROM openfaas_metering.capacity_holdings"
                             ).fetchone()[0])


class SimulatedCluster:
    """tenants x holdings_each holdings; `change(n)` gives n random holdings new units."""

    METERS = (("node_hours", "m6i.4xlarge"), ("cpu_core_hours", ""), ("memory_gib_hours", ""),
              ("gpu_hours", "NVIDIA-H100-80GB-HBM3"), ("storage_gib_hours", "gp3"),
              ("loadbalancer_hours", ""))

    def __init__(self, tenants: int, holdings_each: int, seed: int = 7):
        self.rng = random.Random(seed)
        self.tenants = tuple(capacity.Tenant(f"tenant-{i:05d}") for i in range(tenants))
        self.held = {}
        for tenant in self.tenants:
            for k in range(holdings_each):
                meter, sku = self.METERS[k % len(self.METERS)]
                key = (tenant.namespace, meter, f"{sku}-{k}" if sku else str(k), k % 4 == 0)
                self.held[key] = Decimal(self.rng.choice([1, 2, 4, 8, "0.5", "1024.125"]))
        self.keys = list(self.held)

    def change(self, n: int) -> None:
        for key in self.rng.sample(self.keys, n):
            self.held[key] = self.held[key] + 1

    def reading(self) -> capacity.Reading:
        samples = tuple(capacity.Sample(*key, units) for key, units in self.held.items())
        return capacity.Reading(self.tenants, samples, 0, 0, ())


def simulate(url: str, cluster: SimulatedCluster, start: datetime, ticks: int,
             tick: timedelta, changes_per_tick: list[int], max_gap_seconds: int) -> dict:
    """Record `ticks` readings through record_tick; rows and write times."""
    write_s = []
    with psycopg.connect(url) as conn:
        for i in range(ticks):
            cluster.change(changes_per_tick[i % len(changes_per_tick)] if i else 0)
            reading = cluster.reading()
            started = time.perf_counter()
            with conn.transaction():
                outcome = capacity_store.record_tick(conn, start + i * tick, reading,
                                                     max_gap_seconds)
            write_s.append(time.perf_counter() - started)
            assert outcome.recorded
        rows = conn.execute("""SELECT (SELECT count(*) FROM openfaas_metering.capacity_ticks),
                                      (SELECT count(*) FROM openfaas_metering.capacity_holdings)
                            """).fetchone()
    return {"ticks": rows[0], "holdings": rows[1], "write_s": write_s}


def spread(total: int, parts: int) -> list[int]:
    """`total` changes spread evenly over `parts` ticks."""
    return [total * (i + 1) // parts - total * i // parts for i in range(parts)]


def month_query_s(url: str, month_start: datetime, runs: int = 3) -> tuple[float, int]:
    times = []
    with psycopg.connect(url) as conn:
        for _ in range(runs):
            started = time.perf_counter()
            rows = conn.execute("SELECT * FROM openfaas_metering.capacity_usage(%s, %s)",
                                (month_start, month_start + timedelta(days=30))).fetchall()
            times.append(time.perf_counter() - started)
    return statistics.median(times), len(rows)


def bench_month(pg: EmbeddedPostgres, args) -> None:
    holdings = args.tenants * args.holdings
    changes_per_hour = round(holdings * args.change_per_hour)
    start = datetime(2026, 9, 1, tzinfo=timezone.utc)
    print(f"\nsimulated cluster: {args.tenants:,} tenants x {args.holdings} holdings "
          f"= {holdings:,}, {changes_per_hour:,} changing per hour; record_tick, no Kubernetes",
          flush=True)
    url = pg.fresh_database("bench_meter_day")
    day = simulate(url, SimulatedCluster(args.tenants, args.holdings), start, 1441,
                   timedelta(minutes=1), spread(changes_per_hour, 60), 300)
    steady = day["write_s"][1:]
    per_day = day["holdings"] - holdings  # intervals opened by changes in a day
    month_rows = 30 * 1440 + 1 + holdings + 30 * per_day
    naive_rows = 30 * 1440 * holdings
    print(f"one day, a tick a minute: {day['ticks']:,} tick rows + {day['holdings']:,} interval "
          f"rows; write {statistics.median(steady) * 1000:.0f} ms median, "
          f"{sorted(steady)[int(len(steady) * 0.99)] * 1000:.0f} ms p99 per tick")
    print(f"a month (30 days of the same): {month_rows:,} rows; per-tick samples (the previous "
          f"storage): {naive_rows:,} rows; {naive_rows / month_rows:,.0f}x fewer")
    url = pg.fresh_database("bench_meter_month")
    month = simulate(url, SimulatedCluster(args.tenants, args.holdings), start, 30 * 24 + 1,
                     timedelta(hours=1), [changes_per_hour], 3600)
    query_s, result_rows = month_query_s(url, start)
    print(f"a month, a tick an hour (same changes per hour): {month['holdings']:,} interval rows "
          f"+ {month['ticks']:,} tick rows; capacity_usage(month) for every tenant: "
          f"{query_s:.2f} s for {result_rows:,} rows (median of 3); goal <= 1 s: "
          f"{'met' if query_s <= 1 else 'NOT met'}")


def _phases(seconds: dict) -> str:
    return ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items() if k != "tick")


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench/meter", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--namespaces", type=int, default=2000)
    parser.add_argument("--pvcs", type=int, default=20000)
    parser.add_argument("--load-balancers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="timed raw-JSON ticks (median shown)")
    parser.add_argument("--tenants", type=int, default=1000, help="simulated month: tenants")
    parser.add_argument("--holdings", type=int, default=16, help="simulated month: per tenant")
    parser.add_argument("--change-per-hour", type=float, default=0.01,
                        help="simulated month: fraction of holdings changing each hour")
    parser.add_argument("--only", choices=("tick", "month"), help="run one part")
    args = parser.parse_args()
    if args.only == "month":
        pg = EmbeddedPostgres(VAR / "pg", free_port(), durable=False).start()
        try:
            bench_month(pg, args)
        finally:
            pg.stop()
        return 0
    VAR.mkdir(parents=True, exist_ok=True)
    print(f"generating {args.nodes:,} nodes, {args.namespaces:,} namespaces, {args.pvcs:,} PVCs, "
          f"{args.load_balancers:,} LoadBalancers; starting the fixture API and PostgreSQL ...",
          flush=True)
    kube = start_kube_api(args, VAR / "kubeconfig")
    pg = EmbeddedPostgres(VAR / "pg", free_port(), durable=False).start()
    try:
        settings = load({"KUBECONFIG": str(VAR / "kubeconfig"),
                         "DATABASE_URL": pg.fresh_database("bench_meter"),
                         "EXCLUDE_NAMESPACES": "openfaas-system"})
        t0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
        capacity_tick.run_tick(settings, t0)  # baseline tick + warm-up
        before = stored_rows(settings.database_url)
        raw = [timed(settings, t0 + timedelta(minutes=i + 1), False) for i in range(args.runs)]
        after = stored_rows(settings.database_url)
        models = timed(settings, t0 + timedelta(minutes=args.runs + 1), True)
        raw_s = statistics.median(r["seconds"]["tick"] for r in raw)
        median_run = sorted(raw, key=lambda r: r["seconds"]["tick"])[len(raw) // 2]
        reading = median_run["reading"]
        print(f"cluster: {len(reading.tenants):,} tenants, {reading.dedicated_nodes:,} dedicated "
              f"nodes ({reading.not_ready_nodes} NotReady), {len(reading.samples):,} holdings, "
              f"page size {settings.kube_page_size}")
        # read back: the steady cluster adds one tick row per tick and no holding rows
        ticks_added, holdings_added = after[0] - before[0], after[1] - before[1]
        if ticks_added != args.runs or holdings_added != 0:
            sys.exit(f"bench: {args.runs} steady ticks stored {ticks_added} tick rows and "
                     f"{holdings_added} holding rows (expected {args.runs} and 0)")
        print(f"rows written per tick, steady state (read back): "
              f"{(ticks_added + holdings_added) / args.runs:g} (the tick); "
              f"per-tick samples (the previous storage): {len(reading.samples):,}")
        print(f"tick, raw JSON (median of {args.runs}): {raw_s:6.2f} s  "
              f"({_phases(median_run['seconds'])})  goal <= {GOAL_S:.0f} s: "
              f"{'met' if raw_s <= GOAL_S else 'NOT met'}")
        print(f"tick, client models (baseline):  {models['seconds']['tick']:6.2f} s  "
              f"({_phases(models['seconds'])})")
        read = "list + decode + measure"
        print(f"ratio: {models['seconds']['tick'] / raw_s:.1f}x (whole tick), "
              f"{models['seconds'][read] / median_run['seconds'][read]:.1f}x"
              " (listing + decoding + measuring)")
        if args.only is None:
            bench_month(pg, args)
    finally:
        db.close_all()
        kube.terminate()
        kube.wait(10)
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
