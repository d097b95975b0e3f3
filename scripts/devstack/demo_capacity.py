"""The capacity section of the demo: September 2026 metered through meter-capacity, then a summary.

It calls the function through the gateway exactly as cron-connector would,
except that each call names its time (`{"now": ...}`) so that a month passes
in seconds: one tick an hour from 2026-09-01T00:00Z (the baseline) to
2026-10-01T00:00Z, 721 calls. Two settings make that possible and must be
given to meter-capacity when the runtime starts (FUNCTION_ENV):
ALLOW_CLOCK_OVERRIDE=true (off by default, never in stack.yml) and
MAX_GAP_SECONDS=3600 (an hour between ticks; the default cap is 5 minutes).
The cluster is whatever meter-capacity's KUBECONFIG points at: scripts/up's
fixture API serves scripts/devstack/fixtures/cluster/ (helix-ai on dedicated
8x H100 nodes, render-farm on spot nodes with PVCs and a LoadBalancer,
webshop on shared nodes only, vision-lab on GKE spot L4 and MIG).

The runtime's own cron must not tick meter-capacity on the real clock while
this runs (start it with cron=False): a real-time tick is later than September,
and ticks older than the latest one are refused.

scripts/demo runs it as one of its sections (devstack.demo.SECTIONS).
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import requests

MONTH_START = datetime(2026, 9, 1, tzinfo=timezone.utc)
MONTH_END = datetime(2026, 10, 1, tzinfo=timezone.utc)
TICK = timedelta(hours=1)
FUNCTION_ENV = {"ALLOW_CLOCK_OVERRIDE": "true", "MAX_GAP_SECONDS": "3600"}
FUNCTION = "meter-capacity.openfaas-system"


class DemoError(RuntimeError):
    pass


def meter_month(gateway_url: str, session: requests.Session | None = None) -> dict[str, int]:
    """Tick meter-capacity hourly through September 2026; counts of recorded/already-metered."""
    session = session or requests.Session()
    counts = {"recorded": 0, "already": 0}
    at = MONTH_START
    while at <= MONTH_END:
        r = session.post(f"{gateway_url}/function/{FUNCTION}",
                         json={"now": at.isoformat().replace("+00:00", "Z")}, timeout=60)
        try:
            body = r.json()
        except ValueError:
            body = {"error": r.text[:200]}
        if r.status_code != 200:
            raise DemoError(f"meter-capacity at {at:%Y-%m-%d %H:%M}Z answered {r.status_code}: "
                            f"{body.get('error', body)} (it needs {FUNCTION_ENV})")
        if body["recorded"]:
            counts["recorded"] += 1
            if body.get("previous_slot") and body["max_gap_seconds"] < TICK.total_seconds():
                raise DemoError(f"meter-capacity caps gaps at {body['max_gap_seconds']} s: "
                                "start it with MAX_GAP_SECONDS=3600")
        elif body["reason"] == "already metered":
            counts["already"] += 1  # a second run over the same database changes nothing
        else:
            raise DemoError(f"meter-capacity refused {at:%Y-%m-%d %H:%M}Z: {body['reason']} "
                            "(the database has ticks after September 2026, e.g. from a cron "
                            "on the real clock: use a fresh database and cron=False)")
        at += TICK
    return counts


_MONTHLY = """
SELECT namespace, meter, sku, spot, unit_seconds / 3600 AS hours
  FROM openfaas_metering.capacity_usage(%s, %s)
 ORDER BY namespace, meter, sku, spot
"""


def _hours(value: Decimal) -> str:
    return f"{value:,.0f}" if value == value.to_integral_value() else f"{value:,.2f}"


def summary(database_url: str) -> list[str]:
    """Per tenant: node-, GPU-, CPU-, memory-, storage- and LB-hours for September, from Postgres."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(_MONTHLY, (MONTH_START, MONTH_END)).fetchall()
    tenants = sorted({row[0] for row in rows})  # tenants that held anything in September
    per: dict[str, dict] = defaultdict(lambda: defaultdict(Decimal))
    gpus: dict[str, list[str]] = defaultdict(list)
    for namespace, meter, sku, spot, hours in rows:
        per[namespace][meter] += hours
        if spot and meter == "node_hours":
            per[namespace]["spot_node_hours"] += hours
        if meter == "gpu_hours":
            gpus[namespace].append(f"{_hours(hours)} {sku}{' (spot)' if spot else ''}")
    lines = [f"{'tenant':<12} {'node-h':>7} {'spot':>5} {'core-h':>8} {'mem GiB-h':>11} "
             f"{'storage GiB-h':>14} {'LB-h':>5}  GPU-h by SKU"]
    for ns in tenants:
        m = per[ns]
        lines.append(f"{ns:<12} {_hours(m['node_hours']):>7} {_hours(m['spot_node_hours']):>5} "
                     f"{_hours(m['cpu_core_hours']):>8} {_hours(m['memory_gib_hours']):>11} "
                     f"{_hours(m['storage_gib_hours']):>14} {_hours(m['loadbalancer_hours']):>5}"
                     f"  {gpus[ns][0] if gpus[ns] else '-'}")
        lines += [f"{'':<68}  {more}" for more in gpus[ns][1:]]
    return lines


def run(gateway_url: str, database_url: str, out: Callable[[str], None] = print) -> None:
    """Meter September 2026 through the gateway, then print what each tenant held."""
    started = time.monotonic()
    out(f"meter-capacity ticked hourly through the gateway, {MONTH_START:%Y-%m-%d %H:%M}Z to "
        f"{MONTH_END:%Y-%m-%d %H:%M}Z (the first tick is the baseline)")
    counts = meter_month(gateway_url)
    out(f"{counts['recorded']} ticks recorded, {counts['already']} already metered "
        f"({time.monotonic() - started:.1f} s)")
    for line in summary(database_url):
        out(line)
    out("NotReady nodes and nodes labelled for unknown tenants are not billed; "
        "spot hours are marked for discounting.")
