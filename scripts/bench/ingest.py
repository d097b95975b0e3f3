"""scripts/bench/ingest: receive-usage throughput over HTTP, against two baselines.

Self-contained: an embedded PostgreSQL (durable: fsync and synchronous_commit
on, in a temporary directory), receive-usage served by the template's own
server (`--replicas` of it, called round-robin) behind the local gateway,
signed 1,000-event deliveries sent by several client threads.

Three workloads, each with 4 and 16 senders (`--threads`):
- month: consecutive slices of a simulated month (5 tenants, 15 functions),
  so concurrent deliveries rarely touch the same rollup hour;
- live: what the event-worker flushes on a live system: every delivery holds
  events that started within the last minute, over 7 namespaces x 53
  functions, so every concurrent delivery adds to the same hour and day;
- cloudevents (not run unless asked: `--workloads cloudevents`): 1,000 custom
  usage events per CloudEvents batch, token counts of 7 tenants
  (ingest_cloudevents.py), with baselines of their own on the same events.
Each round measures events/s and p50/p99 per delivery straight to the
function and through the gateway, then, in the same round and on the same
workload, inserts the events the way the OpenFaaS docs' Go example does (one
prepared INSERT per event, one transaction per batch) and as bare COPY into
the docs' table (the ceiling of storing them at all). At the end it reads back
what receive-usage stored (every raw row, the hourly and the daily rollups)
and exits 1 unless it equals what was sent, exactly. It prints every round,
the median of the rounds, the ratios and the CPU each component used per
1,000 events.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import ingest_cloudevents as cloudevents
import psycopg
from devstack.pg import EmbeddedPostgres, free_port
from devstack.runtime import Runtime
from devstack.stack import load
from devstack.usage_sim import MS, Delivery, MiB, WebhookSender, simulate_month, usage_event

from chargeback.core import migrate
from chargeback.core.meters import GB_SECONDS_PER_BYTE_NS
from chargeback.usage import webhook
from chargeback.usage.events import parse_started

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
BARE_COPY = ("COPY bench_baseline.function_usage (namespace, function_name, duration, "
             "started_at, ram_bytes) FROM STDIN")
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
    wal_bytes: int | None = None  # WAL PostgreSQL wrote during the run

    def cpu_ms_per_1000(self, component: str) -> float:
        return 1000 * self.cpu_s[component] / (self.events / 1000)

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def deliveries(rng: random.Random, month: date, batches: int, size: int,
               tag: str) -> list[Delivery]:
    # In start order, as the event-worker flushes them: a batch spans every
    # tenant and function but only the last hour or so.
    events = simulate_month(rng, month, batches * size)
    return [Delivery(f"bench-{tag}-{i}", events[i * size:(i + 1) * size])
            for i in range(batches)]


# The live workload's tenants: 7 namespaces x 53 functions; tenants' shares and
# functions' weights fall off as a real tenant set does (a few busy ones).
LIVE_FUNCTIONS = [(f"tenant-{n}", f"fn-{f:02d}", 128 * MiB << (f % 4))
                  for n in range(7) for f in range(53)]
LIVE_WEIGHTS = [1 / (1 + n) / (1 + f) for n in range(7) for f in range(53)]


def live_deliveries(rng: random.Random, batches: int, size: int, tag: str) -> list[Delivery]:
    """Deliveries as the event-worker flushes them on a live system: every
    event started within the last minute, so all of them fall in the current
    hour (and day) of the same functions."""
    now_ns = time.time_ns()
    chosen = rng.choices(LIVE_FUNCTIONS, LIVE_WEIGHTS, k=batches * size)
    events, seen = [], set()
    for namespace, function_name, memory_bytes in chosen:
        while True:
            identity = (rng.randrange(now_ns - 60 * 10**9, now_ns - 10**6), namespace,
                        function_name, max(MS, int(rng.lognormvariate(0, 1.2) * 50 * MS)),
                        memory_bytes)
            if identity not in seen:
                seen.add(identity)
                break
        events.append(identity)
    events.sort()
    rendered = [usage_event(ns, fn, started, duration, memory)
                for started, ns, fn, duration, memory in events]
    return [Delivery(f"bench-{tag}-{i}", rendered[i * size:(i + 1) * size])
            for i in range(batches)]


class Ledger:
    """What receive-usage was sent, summed as it must be stored: raw rows per
    (namespace, function, hour) as a count and a sum of a 60-bit hash of each
    event's identity, the hourly and daily rollups as exact integers."""

    # the same identity hash, computed by PostgreSQL over the stored rows
    RAW = """
        SELECT namespace, function_name, started_ns / 3600000000000, count(*),
               sum(('x' || substr(md5(concat_ws('|', namespace, function_name, started_ns,
                                                 duration_ns, memory_bytes)), 1, 15)
                   )::bit(60)::bigint)
          FROM openfaas_metering.function_usage GROUP BY 1, 2, 3"""
    ROLLUP = """
        SELECT namespace, function_name,
               (extract(epoch FROM {start})::bigint) / {seconds}, invocations, duration_ns,
               gb_seconds
          FROM openfaas_metering.{table}"""

    def __init__(self):
        self.raw: dict[tuple, list[int]] = {}
        self.hourly: dict[tuple, list[int]] = {}
        self.daily: dict[tuple, list[int]] = {}

    def add(self, batch: list[Delivery]) -> None:
        for delivery in batch:
            for e in delivery.events:
                ns, fn, d, m = (e["namespace"], e["function_name"], e["duration"],
                                e["memory_bytes"])
                started_ns = parse_started(e["started"])
                digest = hashlib.md5(f"{ns}|{fn}|{started_ns}|{d}|{m}".encode()).hexdigest()
                row = self.raw.setdefault((ns, fn, started_ns // 3_600_000_000_000), [0, 0])
                row[0] += 1
                row[1] += int(digest[:15], 16)
                for table, key in (
                        (self.hourly, (ns, fn, started_ns // 3_600_000_000_000)),
                        (self.daily, (ns, fn, started_ns // 86_400_000_000_000))):
                    row = table.setdefault(key, [0, 0, 0])
                    row[0] += 1
                    row[1] += d
                    row[2] += d * m

    def differences(self, conn: psycopg.Connection) -> list[str]:
        """What the database holds that differs from what was sent (empty: equal)."""
        out = []
        raw = {(ns, fn, h): [n, int(s)] for ns, fn, h, n, s in conn.execute(self.RAW)}
        out += [f"raw rows of {k}: stored {raw.get(k)}, sent {self.raw.get(k)}"
                for k in sorted(set(raw) | set(self.raw)) if raw.get(k) != self.raw.get(k)]
        for name, sent, start, seconds in (("function_usage_hourly", self.hourly,
                                            "hour_start", 3600),
                                           ("function_usage_daily", self.daily,
                                            "day_start", 86400)):
            expected = {k: (n, d, b * GB_SECONDS_PER_BYTE_NS) for k, (n, d, b) in sent.items()}
            stored = {(ns, fn, i): (n, d, g) for ns, fn, i, n, d, g in conn.execute(
                self.ROLLUP.format(start=start, seconds=seconds, table=name))}
            out += [f"{name} {k}: stored {stored.get(k)}, sent {expected.get(k)}"
                    for k in sorted(set(stored) | set(expected))
                    if stored.get(k) != expected.get(k)]
        return out


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU time used so far by each of these processes (Linux /proc)."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return out


def cpu_used(processes: dict[str, Callable[[], list[int]]], before: dict) -> dict[str, float]:
    """CPU seconds each group used since `before` (cpu_seconds per group): processes
    that ended meanwhile (a closed connection's backend) are left out, not subtracted."""
    used = {}
    for key, pids in processes.items():
        now = cpu_seconds(pids())
        used[key] = sum(t - before[key].get(pid, 0.0) for pid, t in now.items())
    return used


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


def webhook_options(delivery: Delivery, secret: str) -> dict:
    """WebhookSender.post's keywords for a signed event-worker delivery."""
    return {"delivery_id": delivery.delivery_id, "signature": webhook.sign(delivery.body, secret)}


def send_all(urls: list[str], batch: list[Delivery], threads: int, name: str,
             processes: dict[str, Callable[[], list[int]]],
             options: Callable[[Delivery, str], dict] = webhook_options) -> Result:
    """Post every delivery (delivery i to urls[i % len(urls)]) from `threads` senders.

    CPU: each process group's, and the senders' own (their threads' CPU time);
    the gateway runs as threads of this process, so its share is this
    process's CPU minus the senders'.
    """
    signed = [(d, options(d, SECRET)) for d in batch]
    local, sender_cpu_s, lock = threading.local(), [], threading.Lock()

    def post(i: int) -> float:
        delivery, keywords = signed[i]
        url = urls[i % len(urls)]
        senders = getattr(local, "senders", None)
        if senders is None:
            senders = local.senders = {}
        if url not in senders:
            senders[url] = WebhookSender(url, SECRET)
        cpu_started, started = time.thread_time(), time.perf_counter()
        r = senders[url].post(delivery.body, **keywords)
        elapsed = time.perf_counter() - started
        with lock:
            sender_cpu_s.append(time.thread_time() - cpu_started)
        if r.status_code != 200 or r.json()["accepted"] != len(delivery.events):
            raise RuntimeError(f"{name}: delivery {delivery.delivery_id}: {r.status_code} "
                               f"{r.text[:200]}")
        return elapsed

    before = {k: cpu_seconds(pids()) for k, pids in processes.items()}
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        latencies = list(pool.map(post, range(len(signed))))
    wall = time.perf_counter() - started
    cpu = cpu_used(processes, before)
    cpu["sender"] = sum(sender_cpu_s)
    cpu["gateway"] = max(0.0, cpu.pop("this process") - cpu["sender"])
    return Result(name, sum(len(d.events) for d in batch), wall, latencies, cpu)


def each_delivery(database_url: str, batch: list[Delivery], threads: int, name: str,
                  store: Callable[[psycopg.Connection, Delivery], None],
                  processes: dict[str, Callable[[], list[int]]]) -> Result:
    """Run store(conn, delivery) for every delivery, one transaction each, `threads`
    connections; CPU of the database (and of this process, as the sender)."""
    local, connections = threading.local(), []

    def run(i: int) -> float:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = psycopg.connect(database_url, autocommit=True)
            connections.append(conn)
        started = time.perf_counter()
        with conn.transaction():
            store(conn, batch[i])
        return time.perf_counter() - started

    before = {k: cpu_seconds(pids()) for k, pids in processes.items()}
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        latencies = list(pool.map(run, range(len(batch))))
    wall = time.perf_counter() - started
    cpu = cpu_used(processes, before)
    cpu["sender"] = cpu.pop("this process")
    for conn in connections:
        conn.close()
    return Result(name, sum(len(d.events) for d in batch), wall, latencies, cpu)


def insert_per_event(conn: psycopg.Connection, delivery: Delivery) -> None:
    with conn.cursor() as cur:
        for e in delivery.events:  # one statement per event, as in the docs
            cur.execute(BASELINE_INSERT, (e["namespace"], e["function_name"], e["duration"],
                                          e["started"], e["memory_bytes"]), prepare=True)


def copy_rows(delivery: Delivery) -> str:
    """The delivery as COPY text for the docs' table (rendered before timing)."""
    return "".join(f"{e['namespace']}\t{e['function_name']}\t{e['duration'] // 1000} us\t"
                   f"{e['started']}\t{e['memory_bytes']}\n" for e in delivery.events)


def bare_copy(rendered: dict[str, str], statement: str
              ) -> Callable[[psycopg.Connection, Delivery], None]:
    def store(conn: psycopg.Connection, delivery: Delivery) -> None:
        with conn.cursor().copy(statement) as copy:
            copy.write(rendered[delivery.delivery_id])
    return store


def wal_lsn(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0]


class WaitSampler:
    """--waits: what receive-usage's backends are doing, sampled from
    pg_stat_activity every 10 ms while a run lasts (wait event, or CPU when
    active and not waiting), and for lock waits which statement waits."""

    SAMPLE = """
        SELECT CASE WHEN wait_event IS NULL THEN 'CPU' ELSE wait_event_type || ':' || wait_event
               END, CASE WHEN wait_event_type = 'Lock' THEN left(regexp_replace(
                   query, '\\s+', ' ', 'g'), 60) ELSE '' END
          FROM pg_stat_activity
         WHERE state = 'active' AND pid <> pg_backend_pid()
           AND application_name NOT LIKE 'bench%%' AND backend_type = 'client backend'"""

    def __init__(self, url: str):
        self.url, self.counts, self.samples = url, Counter(), 0
        self.stop = threading.Event()

    def __enter__(self):
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True, application_name="bench-waits") as c:
            while not self.stop.wait(0.01):
                self.counts.update(c.execute(self.SAMPLE).fetchall())
                self.samples += 1

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def report(self) -> str:
        busy = sum(self.counts.values()) or 1
        return "; ".join(f"{what}{' (' + q + ')' if q else ''} {n / busy:.0%}"
                         for (what, q), n in self.counts.most_common(6)) + (
            f" [{busy / max(1, self.samples):.1f} active backends on average]")


WORKLOADS = ("month", "live", "cloudevents")
DEFAULT_WORKLOADS = ("month", "live")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench/ingest",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=150,
                        help="deliveries per run (the per-event INSERT baseline takes a "
                             "third of them)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="the median is printed")
    parser.add_argument("--threads", default="4,16",
                        help="client threads (senders), comma-separated: one run each")
    parser.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS),
                        help=f"comma-separated, of {', '.join(WORKLOADS)}")
    parser.add_argument("--waitress-threads", type=int, default=4)
    parser.add_argument("--waits", action="store_true",
                        help="sample receive-usage's backends' wait events during each run")
    parser.add_argument("--replicas", type=int, default=None,
                        help="receive-usage replicas (default: stack.yml's "
                             "com.openfaas.scale.min)")
    args = parser.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    args.workloads = [w for w in args.workloads.split(",") if w]
    if not set(args.workloads) <= set(WORKLOADS):
        parser.error(f"--workloads: {args.workloads} not all of {WORKLOADS}")

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the gateway's access log
    rng = random.Random(4)
    rounds: list[dict[str, Result]] = []
    ledger, ce_ledger = Ledger(), cloudevents.CloudEventsLedger()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="chargeback-bench-") as tmp:
        tmp_path = Path(tmp)
        pg = EmbeddedPostgres(tmp_path / "pg", free_port()).start()
        runtime = None
        try:
            with psycopg.connect(pg.url, autocommit=True) as conn:
                migrate.apply(conn)
                conn.execute(BASELINE_SCHEMA)
                cloudevents.prepare(conn)
                durable = conn.execute("SELECT current_setting('fsync'), "
                                       "current_setting('synchronous_commit')").fetchone()
            secrets = tmp_path / "secrets"
            secrets.mkdir()
            (secrets / "webhook-secret").write_text(SECRET)
            (secrets / "database-url").write_text(pg.url)
            stack = load(ROOT / "stack.yml")
            fn = stack.functions["receive-usage"]
            args.replicas = args.replicas or fn.min_replicas
            fn = dataclasses.replace(fn, labels={**fn.labels,
                                                 "com.openfaas.scale.min": str(args.replicas)})
            stack = dataclasses.replace(stack, functions={fn.name: fn})
            runtime = Runtime(stack, build_root=tmp_path / "build", log_dir=tmp_path,
                              cron=False, function_env={
                                  "SECRETS_DIR": str(secrets), "DATABASE_URL": pg.url,
                                  "WAITRESS_THREADS": str(args.waitress_threads),
                                  "DB_POOL_MAX": str(args.waitress_threads)}).start()
            urls = {"direct": [p.url for p in runtime.replicas[fn.name]],
                    "gateway": [f"{runtime.gateway_url}/function/receive-usage.openfaas-system"]}
            processes = {
                "function": lambda: [p.proc.pid for p in runtime.replicas[fn.name]],
                "postgres": lambda: postgres_pids(pg),
                "this process": lambda: [os.getpid()],
            }
            pg_only = {k: processes[k] for k in ("postgres", "this process")}
            print(f"{args.rounds} rounds of {args.workloads} x {args.threads} senders x "
                  f"(straight, gateway), {args.batches} deliveries of {args.batch_size} "
                  "events each, and the baselines ...", flush=True)
            warm_up = deliveries(rng, date(2025, 12, 1), 10, args.batch_size, "warm-up")
            ledger.add(warm_up)
            send_all(urls["direct"], warm_up, args.threads[0], "warm-up", processes)
            months = iter(range(10**6))

            def batch(workload: str, tag: str) -> list[Delivery]:
                if workload == "live":
                    return live_deliveries(rng, args.batches, args.batch_size, tag)
                if workload == "cloudevents":
                    return cloudevents.deliveries(rng, args.batches, args.batch_size, tag)
                number = next(months)  # a fresh month each run: 2024-01, 2024-02, ...
                return deliveries(rng, date(2024 + number // 12, number % 12 + 1, 1),
                                  args.batches, args.batch_size, tag)

            for number in range(args.rounds):
                print(f"round {number + 1}:", flush=True)
                runs = {}
                for workload in args.workloads:
                    first = None
                    for threads in args.threads:
                        for path in ("direct", "gateway"):
                            key = f"{workload}/{threads}/{path}"
                            sent = batch(workload, f"{number}-{key}")
                            (ce_ledger if workload == "cloudevents" else ledger).add(sent)
                            first = first or sent
                            wal_before = wal_lsn(pg.url)
                            with (WaitSampler(pg.url) if args.waits
                                  else contextlib.nullcontext()) as waits:
                                runs[key] = send_all(
                                    urls[path], sent, threads,
                                    f"{workload}, {threads} senders, "
                                    f"{'straight' if path == 'direct' else 'gateway'}",
                                    processes, cloudevents.post_options
                                    if workload == "cloudevents" else webhook_options)
                            runs[key].wal_bytes = wal_lsn(pg.url) - wal_before
                            print(f"  {key}: {runs[key].events_per_s:,.0f}/s, p99 "
                                  f"{runs[key].percentile_ms(0.99):.0f} ms", flush=True)
                            if waits:
                                print(f"    PostgreSQL: {waits.report()}", flush=True)
                    # the baselines on the round's first deliveries of this workload, 4
                    # connections, into the docs' table (no HTTP)
                    same = first
                    custom = workload == "cloudevents"
                    rendered = {d.delivery_id: (cloudevents.copy_rows if custom else copy_rows)(d)
                                for d in same}
                    runs[f"{workload}/baseline"] = each_delivery(
                        pg.url, same[:max(1, args.batches // 3)], 4,
                        f"{workload}, baseline: INSERT per event",
                        cloudevents.insert_per_event if custom else insert_per_event, pg_only)
                    runs[f"{workload}/copy"] = each_delivery(
                        pg.url, same, 4, f"{workload}, bare COPY",
                        bare_copy(rendered, cloudevents.BARE_COPY if custom else BARE_COPY),
                        pg_only)
                    print(f"  {workload}: INSERT per event "
                          f"{runs[f'{workload}/baseline'].events_per_s:,.0f}/s, bare COPY "
                          f"{runs[f'{workload}/copy'].events_per_s:,.0f}/s", flush=True)
                rounds.append(runs)
            with psycopg.connect(pg.url) as conn:
                differences = ledger.differences(conn) + ce_ledger.differences(conn)
                disk_bytes = conn.execute(
                    "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
                    " WHERE inhparent = 'openfaas_metering.function_usage'::regclass"
                    ).fetchone()[0]
                stripe_rows = [conn.execute(
                    f"SELECT count(*) FROM openfaas_metering.function_usage_{table}_stripes"
                    ).fetchone()[0] for table in ("hourly", "daily")]
        finally:
            if runtime:
                runtime.stop()
            pg.discard()
    report(args, rounds, durable, load_before, os.getloadavg())
    if differences:
        print(f"\nFAILED: what receive-usage stored differs from what was sent "
              f"({len(differences)} keys), e.g.:\n  " + "\n  ".join(differences[:10]))
        return 1
    events = sum(n for n, _ in ledger.raw.values())
    print(f"\nread back: every raw row ({events:,}), "
          f"{len(ledger.hourly):,} hourly and {len(ledger.daily):,} daily rollup rows "
          f"equal what was sent (stored as {stripe_rows[0]:,} and {stripe_rows[1]:,} "
          "stripe rows)")
    print(f"function_usage on disk (rows and indexes): {disk_bytes / events:.0f} bytes "
          "per event")
    if ce_ledger.events:
        print(f"read back: {sum(ce_ledger.events.values()):,} CloudEvents stored once each, "
              f"tokens per tenant exact")
    return 0


def report(args, rounds: list[dict[str, Result]], durable: tuple, load_before: tuple,
           load_after: tuple) -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in
                open("/proc/cpuinfo") if line.startswith("model name")), platform.machine())
    print(f"\nmachine: {os.cpu_count()} cores, {cpu}; Python {platform.python_version()}; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
          f"fsync={durable[0]}, synchronous_commit={durable[1]}")
    print(f"{args.replicas} replica(s) with WAITRESS_THREADS={args.waitress_threads}; "
          f"{args.batches} x {args.batch_size}-event signed deliveries per run; baselines "
          f"with 4 connections; median of {len(rounds)} rounds (the run whose events/s is "
          "the median)\n")
    median = {key: sorted((r[key] for r in rounds), key=lambda r: r.events_per_s)[
        len(rounds) // 2] for key in rounds[0]}
    print(f"{'run':<42} {'events/s':>9} {'range':>17} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'x INSERT':>8} {'of COPY':>7}")
    for key, result in median.items():
        rates = [r[key].events_per_s for r in rounds]
        workload = key.split("/")[0]
        ratios = [r[key].events_per_s / r[f"{workload}/baseline"].events_per_s
                  for r in rounds]
        copies = [r[key].events_per_s / r[f"{workload}/copy"].events_per_s for r in rounds]
        print(f"{result.name:<42} {result.events_per_s:>9,.0f} "
              f"{min(rates):>8,.0f}-{max(rates):<8,.0f} {result.percentile_ms(0.50):>7.1f} "
              f"{result.percentile_ms(0.99):>7.1f} {statistics.median(ratios):>7.1f}x "
              f"{statistics.median(copies):>7.0%}")
    print("\n(x INSERT, of COPY: medians over the rounds of the run's events/s against the "
          "same round's baselines on the same workload)")
    print("\nCPU time per 1,000 events (ms, median run; every process shares the cores):")
    components = ("sender", "gateway", "function", "postgres")
    print(f"  {'run':<40} " + " ".join(f"{c:>9}" for c in components) + "   WAL kB")
    for result in median.values():
        print(f"  {result.name:<40} " + " ".join(
            f"{result.cpu_ms_per_1000(c):>9.2f}" if c in result.cpu_s else f"{'-':>9}"
            for c in components) + (f" {result.wal_bytes / result.events:>8.1f}"
                                    if result.wal_bytes is not None else f" {'-':>8}"))


if __name__ == "__main__":
    sys.exit(main())
