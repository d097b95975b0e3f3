"""scripts/bench/load: receive-usage under sustained load while the other functions work.

Self-contained: an embedded PostgreSQL (durable settings, in a temporary
directory), receive-usage, meter-capacity and aggregate-month behind the
local gateway, the fixture Kubernetes API (the fixture cluster). For
`--seconds` (60), `--senders` client threads post signed deliveries of
`--batch` events through the gateway, as fast as they are answered (or at
`--rate` events/s in total), retrying a 5xx or a broken connection as the
event-worker does; every `--replay-every`th delivery is an earlier one sent
again. Meanwhile meter-capacity ticks every `--tick-every` seconds (each call
names the next minute of a past day, ALLOW_CLOCK_OVERRIDE, so each records a
tick over the fixture cluster) and aggregate-month runs `{"dry_run": true}`
back to back. The naive baseline is the same senders against receive-usage
alone (nothing else working) for `--baseline-seconds`; baseline and mixed
load alternate in `--rounds` slices, so both meet the same database (the
same size of tables and indexes) on average.

It prints throughput, p50/p99 latency, errors (goal: zero), and checks that
the stored totals (raw rows, the hourly rollup's invocations and exact
GB-seconds) equal the unique events sent, exactly; it exits 1 on any error
or difference.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import requests
from devstack.kubeapi import FixtureKubeApi
from devstack.pg import EmbeddedPostgres, free_port
from devstack.runtime import Runtime
from devstack.stack import load
from devstack.usage_sim import WebhookSender, rfc3339

from chargeback.core import migrate
from chargeback.usage import webhook

ROOT = Path(__file__).resolve().parents[2]
SECRET = "bench-load-webhook-secret"
ADMIN_TOKEN = "bench-load-admin-token"
TENANTS = [f"load-{i}" for i in range(8)]
FUNCTIONS = ["resize", "thumbnail", "ocr", "api"]
MEMORY_BYTES = [128 * 2**20, 512 * 2**20, 2 * 2**30]


@dataclasses.dataclass
class Stream:
    """What a set of senders did; events counted as sent once (unique) and in total."""
    name: str
    seconds: float = 0.0
    round: int = 0  # run_senders calls so far (delivery ids stay unique across rounds)
    unique: list = dataclasses.field(default_factory=list)    # events, each once
    events_posted: int = 0                                    # every event in every 200
    latencies_s: list = dataclasses.field(default_factory=list)
    statuses: Counter = dataclasses.field(default_factory=Counter)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_s) or [0.0]
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)


class EventSource:
    """Unique events in the current UTC hour's past (their partition exists ahead)."""

    def __init__(self, start_ns: int):
        self.next = 0
        self.start_ns = start_ns
        self.lock = threading.Lock()

    def batch(self, size: int) -> list[dict]:
        with self.lock:
            first, self.next = self.next, self.next + size
        return [{"event": "function_usage", "namespace": TENANTS[n % len(TENANTS)],
                 "function_name": FUNCTIONS[n // 8 % len(FUNCTIONS)],
                 "started": rfc3339(self.start_ns + n * 1000),
                 "duration": 1_000_000 + n % 997 * 1000,
                 "memory_bytes": MEMORY_BYTES[n % len(MEMORY_BYTES)]}
                for n in range(first, first + size)]


def send_for(url: str, stream: Stream, source: EventSource, args, stop: threading.Event):
    """One sender: post deliveries until `stop`, retrying each until it is answered 200."""
    sender = WebhookSender(url, SECRET, timeout_s=60)
    sent_here: list[tuple[str, bytes]] = []
    count = 0
    interval = args.senders * args.batch / args.rate if args.rate else 0
    next_at = time.perf_counter()
    while not stop.is_set():
        count += 1
        replay = args.replay_every and count % args.replay_every == 0 and sent_here
        if replay:
            delivery_id, body = sent_here[len(sent_here) // 2]
            events = []
        else:
            events = source.batch(args.batch)
            body = json.dumps(events).encode()
            delivery_id = f"load-{stream.name}-{stream.round}-{threading.get_ident()}-{count}"
        signature = webhook.sign(body, SECRET)
        while True:  # the event-worker retries until it gets a 2xx
            started = time.perf_counter()
            try:
                r = sender.post(body, delivery_id=delivery_id, signature=signature)
                status = r.status_code
            except requests.RequestException:
                status = "connection error"
            with stream.lock:
                stream.statuses[status] += 1
                if status == 200:
                    stream.latencies_s.append(time.perf_counter() - started)
                    stream.events_posted += body.count(b'"event"')
                    stream.unique.extend(events)
            if status == 200:
                break
            time.sleep(0.2)
        if not replay:
            sent_here.append((delivery_id, body))
        if interval:
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))


def run_senders(url: str, stream: Stream, source: EventSource, args, seconds: float) -> Stream:
    stream.round += 1
    stop = threading.Event()
    threads = [threading.Thread(target=send_for, args=(url, stream, source, args, stop))
               for _ in range(args.senders)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    stream.seconds += time.perf_counter() - started
    return stream


def background(runtime: Runtime, args, stop: threading.Event, out: dict) -> list:
    """meter-capacity ticks and aggregate-month dry runs until `stop`."""
    meter = f"{runtime.gateway_url}/function/meter-capacity.openfaas-system"
    close = f"{runtime.gateway_url}/function/aggregate-month.openfaas-system"
    day = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0,
                                             microsecond=0) - timedelta(days=2)

    def ticks():
        session = requests.Session()
        while not stop.is_set():
            minute = out["next_minute"]  # carried over the rounds: each call a new minute
            started = time.perf_counter()
            r = session.post(meter, json={"now": (day + timedelta(minutes=minute)).isoformat()},
                             timeout=60)
            out["tick_s"].append(time.perf_counter() - started)
            recorded = r.status_code == 200 and r.json().get("recorded")
            out["ticks"][r.status_code if not recorded else "recorded"] += 1
            out["next_minute"] = minute + 1
            stop.wait(args.tick_every)

    def dry_runs():
        session = requests.Session()
        while not stop.is_set():
            started = time.perf_counter()
            r = session.post(close, json={"dry_run": True}, timeout=60,
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            out["dry_run_s"].append(time.perf_counter() - started)
            out["dry_runs"][r.status_code] += 1
            stop.wait(0.2)

    threads = [threading.Thread(target=ticks), threading.Thread(target=dry_runs)]
    for t in threads:
        t.start()
    return threads


def stored(database_url: str) -> tuple[int, int, Decimal]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT count(*) FROM openfaas_metering.function_usage").fetchone()[0]
        invocations, gb_s = conn.execute(
            "SELECT coalesce(sum(invocations), 0), coalesce(sum(gb_seconds), 0)"
            "  FROM openfaas_metering.function_usage_hourly").fetchone()
    return rows, invocations, gb_s


def exact_gb_s(events: list[dict]) -> Decimal:
    return sum((Decimal(e["duration"] * e["memory_bytes"]) / Decimal(10**9 * 2**30)
                for e in events), Decimal(0))


def p(values: list[float], q: float) -> float:
    ordered = sorted(values) or [0.0]
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench/load",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--baseline-seconds", type=float, default=20)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500, help="events per delivery")
    parser.add_argument("--rate", type=float, default=0,
                        help="events/s in total (0: as fast as answered)")
    parser.add_argument("--replay-every", type=int, default=10,
                        help="every Nth delivery of a sender is an earlier one again (0: none)")
    parser.add_argument("--tick-every", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=4,
                        help="baseline and mixed load alternate in this many slices (4)")
    args = parser.parse_args(argv)

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    out = {"ticks": Counter(), "dry_runs": Counter(), "tick_s": [], "dry_run_s": [],
           "next_minute": 0}
    with tempfile.TemporaryDirectory(prefix="chargeback-load-") as tmp:
        tmp_path = Path(tmp)
        pg = EmbeddedPostgres(tmp_path / "pg", free_port()).start()
        kube = FixtureKubeApi().start()
        runtime = None
        try:
            with psycopg.connect(pg.url) as conn:
                migrate.apply(conn)
            secrets = tmp_path / "secrets"
            secrets.mkdir()
            (secrets / "webhook-secret").write_text(SECRET)
            (secrets / "admin-token").write_text(ADMIN_TOKEN)
            (secrets / "database-url").write_text(pg.url)
            stack = load(ROOT / "stack.yml")
            stack = dataclasses.replace(stack, functions={
                n: stack.functions[n] for n in ("receive-usage", "meter-capacity",
                                                "aggregate-month")})
            runtime = Runtime(stack, build_root=tmp_path / "build", log_dir=tmp_path,
                              cron=False, function_env={
                                  "SECRETS_DIR": str(secrets), "DATABASE_URL": pg.url,
                                  "KUBECONFIG": str(kube.write_kubeconfig(
                                      tmp_path / "kubeconfig")),
                                  "ALLOW_CLOCK_OVERRIDE": "true",
                                  "MAX_GAP_SECONDS": "300"}).start()
            url = f"{runtime.gateway_url}/function/receive-usage.openfaas-system"
            now_ns = time.time_ns()
            hour_ns = 3600 * 10**9
            source = EventSource(now_ns - now_ns % hour_ns - 2 * hour_ns)

            print(f"load: {args.seconds:.0f} s of {args.senders} senders x {args.batch}-event "
                  f"deliveries through the gateway, meter-capacity ticking every "
                  f"{args.tick_every:g} s, aggregate-month dry runs back to back ...",
                  flush=True)
            print(f"baseline: {args.baseline_seconds:.0f} s of the same senders, receive-usage "
                  f"alone, in {args.rounds} slices alternating with the mixed load ...",
                  flush=True)
            mixed, alone = Stream("mixed"), Stream("alone")
            for _ in range(args.rounds):
                run_senders(url, alone, source, args, args.baseline_seconds / args.rounds)
                stop = threading.Event()
                workers = background(runtime, args, stop, out)
                run_senders(url, mixed, source, args, args.seconds / args.rounds)
                stop.set()
                for t in workers:
                    t.join()
            rows, invocations, gb_s = stored(pg.url)
            ticks_in_db = psycopg.connect(pg.url).execute(
                "SELECT count(*) FROM openfaas_metering.capacity_ticks").fetchone()[0]
        finally:
            if runtime:
                runtime.stop()
            kube.stop()
            pg.discard()

    unique = mixed.unique + alone.unique
    cpu = next((line.split(":", 1)[1].strip() for line in
                open("/proc/cpuinfo") if line.startswith("model name")), platform.machine())
    print(f"\nmachine: {os.cpu_count()} cores, {cpu}; Python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.1f} at the end (other work shares the cores)\n")
    print(f"{'run':<44} {'s':>5} {'events/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'requests':>9}"
          f" {'errors':>7}")
    for s, label in ((mixed, "receive-usage + meter ticks + dry runs"),
                     (alone, "baseline: receive-usage alone")):
        requests_ = sum(s.statuses.values())
        print(f"{label:<44} {s.seconds:>5.0f} {s.events_posted / s.seconds:>9,.0f} "
              f"{s.percentile_ms(0.5):>7.1f} {s.percentile_ms(0.99):>7.1f} {requests_:>9,}"
              f" {s.errors:>7}")
    print(f"\nratio, events/s under mixed load / alone: "
          f"{(mixed.events_posted / mixed.seconds) / (alone.events_posted / alone.seconds):.2f}x;"
          f" p99 {mixed.percentile_ms(0.99) / max(alone.percentile_ms(0.99), 1e-9):.2f}x")
    print(f"meter-capacity: {sum(out['ticks'].values())} calls {dict(out['ticks'])}, "
          f"{ticks_in_db} ticks stored; p50 {p(out['tick_s'], .5):.0f} ms, "
          f"p99 {p(out['tick_s'], .99):.0f} ms")
    print(f"aggregate-month dry runs: {sum(out['dry_runs'].values())} calls "
          f"{dict(out['dry_runs'])}; p50 {p(out['dry_run_s'], .5):.0f} ms, "
          f"p99 {p(out['dry_run_s'], .99):.0f} ms")
    posted = mixed.events_posted + alone.events_posted
    expected_gb_s = exact_gb_s(unique)
    print(f"\nevents posted {posted:,} (replays included), unique sent {len(unique):,}; "
          f"stored rows {rows:,}, rollup invocations {invocations:,}; "
          f"duplicated {max(0, rows - len(unique))}, lost {max(0, len(unique) - rows)}")
    print(f"GB-seconds: sent {expected_gb_s}, rollup {gb_s}: "
          f"{'equal' if gb_s == expected_gb_s else 'DIFFERENT'}")
    errors = mixed.errors + alone.errors + sum(
        n for k, n in out["ticks"].items() if k not in ("recorded", 200)) + sum(
        n for k, n in out["dry_runs"].items() if k != 200)
    ok = rows == invocations == len(unique) and gb_s == expected_gb_s
    print(f"errors: {errors} (goal 0); totals {'equal what was sent' if ok else 'WRONG'}")
    return 0 if ok and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
