"""Collect the Prometheus meters, one UTC hour at a time (meter-capacity calls this).

Every hour that ended at least PROMETHEUS_MAX_GAP_SECONDS ago (so the samples
that close it are scraped) and is not collected yet, back to
PROMETHEUS_BACKFILL_HOURS, is read once: its quantities per tenant and SKU and
its gaps are written in one transaction with the hour's row, so a run that
fails writes nothing and the next one does the hour; two replicas at once
write it once. A gap is stored as reported and billed as nothing.

- egress_gib: PROMETHEUS_EGRESS_SERIES (a counter of bytes sent, e.g. cAdvisor's
  container_network_transmit_bytes_total), per series by its `namespace`
  label, increase / 2^30;
- gpu_utilisation_hours: PROMETHEUS_GPU_SERIES (DCGM_FI_DEV_GPU_UTIL, percent per
  GPU, with the pod's `namespace` when dcgm-exporter maps pods), SKU its
  `modelName`; the utilisation held from sample to sample / 100, in hours.
"""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal, localcontext

import psycopg

from chargeback.core import db
from chargeback.core.meters import EGRESS_GIB, GPU_UTILISATION_HOURS
from chargeback.core.settings import Settings
from chargeback.metrics import prometheus, series

HOUR = timedelta(hours=1)
BYTES_PER_GIB = Decimal(2**30)
HOURS_QUANTUM = Decimal("1e-12")   # as capacity's unit-hours
_EXACT = 80                         # digits: bytes / 2^30 is a finite decimal

_DONE = """
SELECT hour_start FROM openfaas_metering.prometheus_hours
 WHERE meter = %s AND hour_start >= %s"""
_CLAIM = """
INSERT INTO openfaas_metering.prometheus_hours (meter, hour_start, series, gaps)
VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1"""
_STORE = """
INSERT INTO openfaas_metering.prometheus_usage (meter, hour_start, namespace, sku, quantity)
SELECT %s, %s, namespace, sku, quantity
  FROM unnest(%s::text[], %s::text[], %s::numeric[]) AS q (namespace, sku, quantity)"""


def due_hours(conn: psycopg.Connection, meter: str, now: datetime, settings: Settings
              ) -> list[datetime]:
    """The hours of `meter` to collect now, oldest first."""
    ready = now - timedelta(seconds=settings.prometheus_max_gap_s)
    last = ready.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0) - HOUR
    first = last - (settings.prometheus_backfill_hours - 1) * HOUR
    done = {h for (h,) in conn.execute(_DONE, (meter, first))}
    hours = [first + i * HOUR for i in range(settings.prometheus_backfill_hours)]
    return [h for h in hours if h not in done]


def hour_quantities(settings: Settings, meter: str, hour: datetime
                    ) -> tuple[dict[tuple[str, str], Decimal], int, list[dict]]:
    """({(namespace, sku): quantity}, series read, gaps) of `meter` in [hour, hour + 1 h)."""
    gap_s = Decimal(settings.prometheus_max_gap_s)
    reach = timedelta(seconds=settings.prometheus_max_gap_s)
    selector = (settings.prometheus_egress_series if meter == EGRESS_GIB
                else settings.prometheus_gpu_series)
    found = prometheus.samples(settings.prometheus_url, selector, hour - reach,
                               hour + HOUR + reach, timeout_s=settings.prometheus_timeout_s)
    start, end = Decimal(int(hour.timestamp())), Decimal(int((hour + HOUR).timestamp()))
    out: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    gaps = []
    with localcontext() as ctx:
        ctx.prec = _EXACT
        for s in found:
            namespace = s.labels.get("namespace", "")
            if not namespace or namespace in settings.exclude_namespaces:
                continue   # an idle GPU, the host's own traffic: no tenant's
            if meter == EGRESS_GIB:
                amount, holes = series.counter_increase(s.samples, start, end, gap_s)
                key, quantity = (namespace, ""), amount / BYTES_PER_GIB
            else:
                amount, holes = series.gauge_percent_seconds(s.samples, start, end, gap_s)
                key = (namespace, s.labels.get("modelName", ""))
                quantity = amount / 3600
            out[key] += quantity
            gaps += [{"series": _name(s.labels), **g.as_json()} for g in holes]
    if meter == GPU_UTILISATION_HOURS:
        out = {k: v.quantize(HOURS_QUANTUM) for k, v in out.items()}
    return {k: v for k, v in out.items() if v}, len(found), gaps


def _name(labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels.get('__name__', '')}{{{inner}}}"


def collect(settings: Settings, now: datetime) -> dict:
    """Collect every due hour of every Prometheus meter; the answer counts hours and gaps
    (no tenant, no figure), nothing without PROMETHEUS_URL. PrometheusUnavailable stops
    the run: the rest is next time."""
    if not settings.prometheus_url:
        return {}
    collected = gaps = 0
    for meter in (EGRESS_GIB, GPU_UTILISATION_HOURS):
        with db.transaction(settings) as conn:
            due = due_hours(conn, meter, now, settings)
        for hour in due:
            quantities, read, holes = hour_quantities(settings, meter, hour)
            with db.transaction(settings) as conn:
                if not conn.execute(_CLAIM, (meter, hour, read, json.dumps(holes))).fetchone():
                    continue   # another replica did this hour
                keys = sorted(quantities)
                conn.execute(_STORE, (meter, hour, [k[0] for k in keys], [k[1] for k in keys],
                                      [quantities[k] for k in keys]))
            collected += 1
            gaps += len(holes)
    return {"prometheus": {"hours_collected": collected, "gaps": gaps}}
