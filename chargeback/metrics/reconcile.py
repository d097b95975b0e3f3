"""Reconciliation: invocations billed from the webhook against the gateway's own counter.

The gateway's Prometheus counter gateway_function_invocation_total (labels
function_name="<fn>.<namespace>", code) is sampled and not fit to bill, but it
is a witness independent of the event-worker: if a webhook batch was lost,
the hour's billed invocations fall short of the counter's increase. Per
namespace, function and UTC hour the counter's increase is taken from its raw
samples (series.counter_increase: resets counted, gaps reported, nothing
extrapolated) and compared with function_usage_hourly; an hour is listed when
billed < witnessed - max(tolerance, tolerance_percent of witnessed). It records
nothing: drift.py records and announces what it lists.

    scripts/reconcile --from 2026-09-01 --to 2026-10-01 [--tolerance 5]
                      [--tolerance-percent 1]
"""
from __future__ import annotations

import argparse
import bisect
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from chargeback.core import db
from chargeback.core.settings import ConfigError, Settings, load
from chargeback.metrics import prometheus, series

COUNTER = "gateway_function_invocation_total"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

_BILLED = """
SELECT namespace, function_name, hour_start, invocations
  FROM openfaas_metering.function_usage_hourly
 WHERE hour_start >= %s AND hour_start < %s"""


@dataclass(frozen=True)
class Drift:
    namespace: str
    function_name: str
    hour_start: datetime
    billed: int
    witnessed: Decimal

    def as_json(self) -> dict:
        return {"namespace": self.namespace, "function": self.function_name,
                "hour": self.hour_start.isoformat(), "billed": self.billed,
                "witnessed": str(self.witnessed), "missing": str(self.witnessed - self.billed)}


def witnessed(settings: Settings, start: datetime, end: datetime
              ) -> tuple[dict[tuple[str, str, datetime], Decimal], list[dict]]:
    """{(namespace, function, hour): counter increase} over [start, end), and the gaps."""
    out: dict[tuple[str, str, datetime], Decimal] = defaultdict(Decimal)
    gaps = []
    reach = timedelta(seconds=settings.prometheus_max_gap_s)
    gap_s = Decimal(settings.prometheus_max_gap_s)
    day = start
    while day < end:   # a day of samples per query keeps each answer small
        upto = min(day + DAY, end)
        found = prometheus.samples(settings.prometheus_url, COUNTER, day - reach, upto + reach,
                                   timeout_s=settings.prometheus_timeout_s)
        for s in found:
            function, _, namespace = s.labels.get("function_name", "").rpartition(".")
            if not function or namespace in settings.exclude_namespaces:
                continue
            times = [t for t, _ in s.samples]
            hour = day
            while hour < upto:
                start_s = Decimal(int(hour.timestamp()))
                end_s = start_s + 3600
                # the hour's samples with the one before and the one after: all that
                # counter_increase reads of a day's series (a day's scan per hour otherwise)
                first = max(0, bisect.bisect_right(times, start_s) - 1)
                last = bisect.bisect_right(times, end_s) + 1
                increase, holes = series.counter_increase(s.samples[first:last], start_s,
                                                          end_s, gap_s)
                out[(namespace, function, hour)] += increase
                gaps += [{"namespace": namespace, "function": function,
                          "hour": hour.isoformat(), **g.as_json()} for g in holes]
                hour += HOUR
        day = upto
    return out, gaps


def reconcile(settings: Settings, start: datetime, end: datetime, tolerance: int | None = None,
              tolerance_percent: Decimal | None = None) -> dict:
    """The hours in [start, end) (whole UTC hours) where billed invocations fall short of
    the gateway's counter by more than the tolerance (default: RECONCILE_TOLERANCE,
    RECONCILE_TOLERANCE_PERCENT); and the counter's gaps. Records nothing (drift.py does)."""
    if not settings.prometheus_url:
        raise ConfigError("no PROMETHEUS_URL: the reconciliation reads the gateway's counter "
                          "from Prometheus")
    tolerance = settings.reconcile_tolerance if tolerance is None else tolerance
    if tolerance_percent is None:
        tolerance_percent = settings.reconcile_tolerance_percent
    seen, gaps = witnessed(settings, start, end)
    with db.transaction(settings) as conn:
        billed = {(ns, fn, hour): n for ns, fn, hour, n in conn.execute(_BILLED, (start, end))}
    drifts = []
    for key in sorted(seen, key=lambda k: (k[2], k[0], k[1])):
        count = billed.get(key, 0)
        allowed = max(Decimal(tolerance), seen[key] * tolerance_percent / 100)
        if count < seen[key] - allowed:
            drifts.append(Drift(*key, count, seen[key]))
    return {"from": start.isoformat(), "to": end.isoformat(), "tolerance": tolerance,
            "tolerance_percent": str(tolerance_percent), "hours_compared": len(seen),
            "drift": [d.as_json() for d in drifts], "gaps": gaps}


def _hour(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    if moment != moment.replace(minute=0, second=0, microsecond=0):
        raise argparse.ArgumentTypeError(f"{text}: expected a whole UTC hour")
    return moment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/reconcile", description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="start", type=_hour, required=True)
    parser.add_argument("--to", dest="end", type=_hour, required=True)
    parser.add_argument("--tolerance", type=int, default=None,
                        help="invocations an hour may miss without being listed "
                             "(default: RECONCILE_TOLERANCE, 5)")
    parser.add_argument("--tolerance-percent", type=Decimal, default=None,
                        help="... or this percent of the counter's increase, if more "
                             "(default: RECONCILE_TOLERANCE_PERCENT, 1)")
    args = parser.parse_args(argv)
    try:
        report = reconcile(load(), args.start, args.end, args.tolerance, args.tolerance_percent)
    except (ConfigError, prometheus.PrometheusUnavailable, db.DatabaseUnavailable) as exc:
        print(f"reconcile: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 1 if report["drift"] else 0


if __name__ == "__main__":
    sys.exit(main())
