"""scripts/bench/ingest: receive-usage throughput over HTTP, against a naive baseline.

Self-contained: an embedded PostgreSQL (durable settings, in a temporary
directory), receive-usage served by the template's own server behind the
local gateway, signed 1,000-event deliveries sent by several client threads.
It measures events/s and p50/p99 batch latency straight to the function and
through the gateway, then inserts the same events the way the OpenFaaS docs'
Go example does (one prepared INSERT per event, one transaction per batch)
and prints both and the ratio.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from datetime import date
from pathlib import Path

import psycopg

from chargeback import migrate, webhook
from devstack.pg import EmbeddedPostgres, free_port
from devstack.runtime import Runtime
from devstack.stack import load
from devstack.usage_sim import Delivery, WebhookSender, simulate_month

ROOT = Path(__file__).resolve().parents[2]
SECRET = "bench-webhook-secret"

# The schema and statement of the OpenFaaS docs (seeds/001: "Example insert statement").
BASELINE_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS bench_baseline;
CREATE TABLE IF NOT EXISTS bench_baseline.function_usage (
    id SERIAL PRIMARY KEY,
    namespace TEXT NOT NULL,
    function_name TEXT NOT NULL,
    duration interval NOT NULL,
    started_at TIMESTAMP NOT NULL,
    ram_bytes BIGINT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
)"""
# The docs' statement, with psycopg's %s where Go's database/sql has $1..$5.
BASELINE_INSERT = """INSERT INTO
    bench_baseline.function_usage (namespace, function_name, duration, started_at, ram_bytes)
    VALUES
    (%s, %s, make_interval(secs => %s::NUMERIC / 1000000000), %s, %s)"""


@dataclasses.dataclass
class Result:
    name: str
    events: int
    wall_s: float
    latencies_s: list[float]
    cpu_s: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def deliveries(rng: random.Random, month: date, batches: int, size: int) -> list[Delivery]:
    # In start order, as the event-worker flushes them: a batch spans every
    # tenant and function but only the last hour or so.
    events = simulate_month(rng, month, batches * size)
    return [Delivery(f"bench-{month:%Y%m}-{i}", events[i * size:(i + 1) * size])
            for i in range(batches)]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def postgres_pids(pg: EmbeddedPostgres) -> list[int]:
    """The postmaster and all its children (backends, WAL writer, checkpointer...)."""
    postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError):
            pass
    return pids


def send_all(url: str, batch: list[Delivery], threads: int, name: str,
             processes: dict[str, Callable[[], list[int]]]) -> Result:
    signed = [(d, webhook.sign(d.body, SECRET)) for d in batch]
    local = threading.local()

    def post(i: int) -> float:
        delivery, signature = signed[i]
        if not hasattr(local, "sender"):
            local.sender = WebhookSender(url, SECRET)
        started = time.perf_counter()
        r = local.sender.post(delivery.body, delivery_id=delivery.delivery_id,
                              signature=signature)
        elapsed = time.perf_counter() - started
        if r.status_code != 200 or r.json()["accepted"] != len(delivery.events):
            raise RuntimeError(f"{name}: delivery {delivery.delivery_id}: {r.status_code} "
                               f"{r.text[:200]}")
        return elapsed

    before = {k: cpu_seconds(pids()) for k, pids in processes.items()}
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        latencies = list(pool.map(post, range(len(signed))))
    wall = time.perf_counter() - started
    cpu = {k: cpu_seconds(pids()) - before[k] for k, pids in processes.items()}
    return Result(name, sum(len(d.events) for d in batch), wall, latencies, cpu)


def baseline(database_url: str, batch: list[Delivery], threads: int) -> Result:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(BASELINE_SCHEMA)
    local, connections = threading.local(), []

    def insert(i: int) -> float:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = psycopg.connect(database_url, autocommit=True)
            connections.append(conn)
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            for e in batch[i].events:  # one statement per event, as in the docs
                cur.execute(BASELINE_INSERT, (e["namespace"], e["function_name"],
                                              e["duration"], e["started"], e["memory_bytes"]),
                            prepare=True)
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        latencies = list(pool.map(insert, range(len(batch))))
    wall = time.perf_counter() - started
    for conn in connections:
        conn.close()
    return Result("baseline: INSERT per event (docs' Go), no HTTP",
                  sum(len(d.events) for d in batch), wall, latencies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench/ingest",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=150, help="1,000-event deliveries per run")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4, help="client threads (senders)")
    parser.add_argument("--waitress-threads", type=int, default=4)
    args = parser.parse_args(argv)

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the gateway's access log
    rng = random.Random(4)
    with tempfile.TemporaryDirectory(prefix="chargeback-bench-") as tmp:
        tmp_path = Path(tmp)
        pg = EmbeddedPostgres(tmp_path / "pg", free_port()).start()
        runtime = None
        try:
            with psycopg.connect(pg.url) as conn:
                migrate.apply(conn)
            secrets = tmp_path / "secrets"
            secrets.mkdir()
            (secrets / "webhook-secret").write_text(SECRET)
            (secrets / "database-url").write_text(pg.url)
            stack = load(ROOT / "stack.yml")
            stack = dataclasses.replace(
                stack, functions={"receive-usage": stack.functions["receive-usage"]})
            runtime = Runtime(stack, build_root=tmp_path / "build", log_dir=tmp_path,
                              cron=False, function_env={
                                  "SECRETS_DIR": str(secrets), "DATABASE_URL": pg.url,
                                  "WAITRESS_THREADS": str(args.waitress_threads),
                                  "DB_POOL_MAX": str(args.waitress_threads)}).start()
            direct = runtime.processes["receive-usage"].url
            via_gateway = f"{runtime.gateway_url}/function/receive-usage.openfaas-system"

            print(f"preparing {3 * args.batches} deliveries of {args.batch_size} events ...",
                  flush=True)
            warm, runs = deliveries(rng, date(2026, 7, 1), 10, args.batch_size), {}
            direct_batch = deliveries(rng, date(2026, 8, 1), args.batches, args.batch_size)
            gateway_batch = deliveries(rng, date(2026, 9, 1), args.batches, args.batch_size)
            processes = {
                "function": lambda: [runtime.processes["receive-usage"].proc.pid],
                "postgres": lambda: postgres_pids(pg),
                "client+gateway": lambda: [os.getpid()],  # the gateway is a thread here
            }
            send_all(direct, warm, args.threads, "warm-up", processes)
            print("sending straight to the function ...", flush=True)
            runs["direct"] = send_all(direct, direct_batch, args.threads,
                                      "receive-usage, straight to the function", processes)
            print("sending through the local gateway ...", flush=True)
            runs["gateway"] = send_all(via_gateway, gateway_batch, args.threads,
                                       "receive-usage, through the local gateway", processes)
            print("baseline ...", flush=True)
            runs["baseline"] = baseline(pg.url, direct_batch, args.threads)
        finally:
            if runtime:
                runtime.stop()
            pg.discard()

    cpu = next((line.split(":", 1)[1].strip() for line in
                open("/proc/cpuinfo") if line.startswith("model name")), platform.machine())
    print(f"\nmachine: {os.cpu_count()} cores, {cpu}; Python {platform.python_version()}; "
          f"{args.threads} client threads, WAITRESS_THREADS={args.waitress_threads}; "
          f"{args.batches} x {args.batch_size}-event signed deliveries per run\n")
    print(f"{'run':<48} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for result in runs.values():
        print(f"{result.name:<48} {result.events_per_s:>10,.0f} "
              f"{result.percentile_ms(0.50):>8.1f} {result.percentile_ms(0.99):>8.1f}")
    print("\nCPU time per 1,000 events (ms), all processes share the machine's cores:")
    for key in ("direct", "gateway"):
        result = runs[key]
        print(f"  {result.name:<46} " + ", ".join(
            f"{name} {1000 * seconds / (result.events / 1000):.1f}"
            for name, seconds in result.cpu_s.items()))
    base = runs["baseline"].events_per_s
    print()
    for key, label in (("direct", "straight to the function"), ("gateway", "through the gateway")):
        print(f"ratio, {label + ' / baseline:':<36} {runs[key].events_per_s / base:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
