"""scripts/bench/meter: time one meter-capacity tick on a large generated cluster.

The fixture API runs in its own process (so it does not share our GIL), the
database is an embedded PostgreSQL in var/bench/ (fsync off, a fresh database
each run). Before timing, one tick sets the baseline (the first tick bills
nothing) and warms the client and the pool; each timed tick is then a full
tick for a new minute: list everything page by page, measure, write the
tick, the tenants and the samples in one transaction.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from chargeback import capacity, capacity_store, capacity_tick, db, kube
from chargeback.settings import load
from devstack.pg import EmbeddedPostgres, free_port

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
    """One full tick, made of the same calls as capacity_tick.run_tick, each timed."""
    seconds = {}
    started = time.perf_counter()
    slot = capacity_tick.tick_slot(at)
    with db.transaction(settings) as conn:
        assert capacity_store.already_metered(conn, slot) is None
    cluster = kube.read_cluster(settings, decode_models=decode_models)
    seconds["list + decode"] = time.perf_counter() - started
    reading = capacity.measure(cluster.namespaces, cluster.nodes, cluster.persistentvolumeclaims,
                               cluster.services, capacity_tick.rules(settings))
    seconds["measure"] = time.perf_counter() - started - sum(seconds.values())
    with db.transaction(settings) as conn:
        outcome = capacity_store.record_tick(conn, slot, reading, settings.max_gap_seconds)
    seconds["write"] = time.perf_counter() - started - sum(seconds.values())
    seconds["tick"] = time.perf_counter() - started
    assert outcome.recorded
    return {"seconds": seconds, "reading": reading, "samples": outcome.samples}


def _phases(seconds: dict) -> str:
    return ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items() if k != "tick")


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench/meter", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--namespaces", type=int, default=2000)
    parser.add_argument("--pvcs", type=int, default=20000)
    parser.add_argument("--load-balancers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="timed raw-JSON ticks (median shown)")
    args = parser.parse_args()
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
        raw = [timed(settings, t0 + timedelta(minutes=i + 1), False) for i in range(args.runs)]
        models = timed(settings, t0 + timedelta(minutes=args.runs + 1), True)
        raw_s = statistics.median(r["seconds"]["tick"] for r in raw)
        median_run = sorted(raw, key=lambda r: r["seconds"]["tick"])[len(raw) // 2]
        reading = median_run["reading"]
        print(f"cluster: {len(reading.tenants):,} tenants, {reading.dedicated_nodes:,} dedicated "
              f"nodes ({reading.not_ready_nodes} NotReady), {median_run['samples']:,} samples "
              f"per tick, page size {settings.kube_page_size}")
        print(f"tick, raw JSON (median of {args.runs}): {raw_s:6.2f} s  "
              f"({_phases(median_run['seconds'])})  goal <= {GOAL_S:.0f} s: "
              f"{'met' if raw_s <= GOAL_S else 'NOT met'}")
        print(f"tick, client models (baseline):  {models['seconds']['tick']:6.2f} s  "
              f"({_phases(models['seconds'])})")
        print(f"ratio: {models['seconds']['tick'] / raw_s:.1f}x (whole tick), "
              f"{models['seconds']['list + decode'] / median_run['seconds']['list + decode']:.1f}x"
              " (listing + decoding)")
    finally:
        db.close_all()
        kube.terminate()
        kube.wait(10)
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
