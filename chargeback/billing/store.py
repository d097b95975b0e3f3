"""Postgres reads for month close, verify and export: usage and capacity per window.

Usage of a window [start, end) is exact to the nanosecond: whole UTC days
inside it come from function_usage_daily, whole UTC hours around them from
function_usage_hourly, and the edges (a zone that is not a whole number of
hours from UTC, a window cut at a price change) from the raw events by
`started_ns`. Capacity is read only through
openfaas_metering.capacity_usage(from, to), which splits ticks at the edges.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal, localcontext

import psycopg
from psycopg import sql

from chargeback.billing import event_meters
from chargeback.billing.event_meters import EventMeter
from chargeback.billing.periods import split_window, to_ns
from chargeback.billing.pricing import EXACT
from chargeback.core.meters import GB_SECONDS, GB_SECONDS_PER_BYTE_NS, INVOCATIONS

# capacity quantities are unit-hours to 1e-12 (unit-seconds / 3600 rarely ends)
HOURS_QUANTUM = Decimal("1e-12")
_MICROSECOND = timedelta(microseconds=1)

# Whole UTC days from the daily rollup, whole hours from the hourly one, the
# rest from raw events. `started` (microseconds, half up) only narrows the raw
# scan to the right partitions; `started_ns` decides.
# The rollups' stripe tables (sql/080), not the views that sum each key's stripes: these
# sums are the same without that grouping.
_USAGE = """
SELECT {keys}, sum(invocations), sum(gb_seconds)
  FROM (SELECT namespace, function_name, invocations, gb_seconds
          FROM openfaas_metering.function_usage_daily_stripes
         WHERE day_start >= %(days_from)s AND day_start < %(days_to)s
           AND (%(all)s OR namespace = ANY(%(namespaces)s))
        UNION ALL
        SELECT namespace, function_name, invocations, gb_seconds
          FROM openfaas_metering.function_usage_hourly_stripes
         WHERE ((hour_start >= %(hours_from)s AND hour_start < %(days_from)s)
             OR (hour_start >= %(days_to)s AND hour_start < %(hours_to)s))
           AND (%(all)s OR namespace = ANY(%(namespaces)s))
        UNION ALL
        SELECT namespace, function_name, 1, duration_ns::numeric * memory_bytes * %(k)s::numeric
          FROM openfaas_metering.function_usage
         WHERE ((started_ns >= %(start_ns)s AND started_ns < %(hours_from_ns)s
                 AND started BETWEEN %(start)s::timestamptz - %(us)s
                                 AND %(hours_from)s::timestamptz + %(us)s)
             OR (started_ns >= %(hours_to_ns)s AND started_ns < %(end_ns)s
                 AND started BETWEEN %(hours_to)s::timestamptz - %(us)s
                                 AND %(end)s::timestamptz + %(us)s))
           AND (%(all)s OR namespace = ANY(%(namespaces)s))) AS u
 GROUP BY {keys}"""
USAGE_BY_FUNCTION = sql.SQL(_USAGE).format(keys=sql.SQL("namespace, function_name"))
USAGE_BY_NAMESPACE = sql.SQL(_USAGE).format(keys=sql.SQL("namespace"))

CAPACITY = """
SELECT namespace, meter, sku, spot, unit_seconds
  FROM openfaas_metering.capacity_usage(%(start)s, %(end)s)
 WHERE %(all)s OR namespace = ANY(%(namespaces)s)"""


def window_params(start: datetime, end: datetime, namespaces: list[str] | None) -> dict:
    split = split_window(start, end)
    return {"start": start, "end": end, "hours_from": split.hours_from,
            "days_from": split.days_from, "days_to": split.days_to, "hours_to": split.hours_to, "start_ns": to_ns(start), "end_ns": to_ns(end),
            "hours_from_ns": to_ns(split.hours_from), "hours_to_ns": to_ns(split.hours_to),
            "k": GB_SECONDS_PER_BYTE_NS, "us": _MICROSECOND,
            "all": namespaces is None, "namespaces": namespaces or []}


def usage_by_function(conn: psycopg.Connection, start: datetime, end: datetime,
                      namespaces: list[str] | None = None
                      ) -> list[tuple[str, str, int, Decimal]]:
    """(namespace, function, invocations, exact GB-s) for events starting in [start, end)."""
    return conn.execute(USAGE_BY_FUNCTION, window_params(start, end, namespaces)).fetchall()


def capacity(conn: psycopg.Connection, start: datetime, end: datetime,
             namespaces: list[str] | None = None) -> list[tuple[str, str, str, bool, Decimal]]:
    """(namespace, meter, sku, spot, unit-hours) held in [start, end)."""
    with localcontext(EXACT):
        return [(ns, meter, sku, spot, (seconds / 3600).quantize(HOURS_QUANTUM))
                for ns, meter, sku, spot, seconds
                in conn.execute(CAPACITY, window_params(start, end, namespaces))]


def quantities(conn: psycopg.Connection, windows: list[tuple[datetime, datetime]],
               namespaces: list[str] | None = None, meters: dict[str, EventMeter] | None = None
               ) -> dict[str, dict[tuple[str, str, bool, int], Decimal]]:
    """namespace -> {(meter, sku, spot, window index): quantity} over the windows;
    `meters`: the custom meters of the price book the windows are priced with."""
    out: dict[str, dict] = defaultdict(dict)
    with localcontext(EXACT):
        for i, (start, end) in enumerate(windows):
            for ns, invocations, gb_seconds in conn.execute(
                    USAGE_BY_NAMESPACE, window_params(start, end, namespaces)):
                q = out[ns]
                q[(INVOCATIONS, "", False, i)] = q.get((INVOCATIONS, "", False, i), 0) \
                    + Decimal(invocations)
                q[(GB_SECONDS, "", False, i)] = q.get((GB_SECONDS, "", False, i), 0) \
                    + gb_seconds
            for ns, meter, sku, spot, hours in capacity(conn, start, end, namespaces):
                if hours:
                    out[ns][(meter, sku, spot, i)] = hours
    return _with_other_sources(conn, out, windows, namespaces, meters)


def _with_other_sources(conn: psycopg.Connection, out: dict, windows, namespaces,
                        meters: dict[str, EventMeter] | None) -> dict:
    """`out` with the custom event meters and the Prometheus meters added; both are
    read from what was stored as received (no rollup), so verify reads them the same."""
    for ns, got in event_meters.quantities(conn, meters or {}, windows, namespaces).items():
        out[ns].update(got)
    for ns, got in prometheus_quantities(conn, windows, namespaces).items():
        out[ns].update(got)
    return out


# Prometheus meters are stored per UTC hour: an hour belongs to the window it starts in.
_PROMETHEUS = """
SELECT namespace, meter, sku, sum(quantity)
  FROM openfaas_metering.prometheus_usage
 WHERE hour_start >= %(start)s AND hour_start < %(end)s
   AND (%(all)s OR namespace = ANY(%(namespaces)s))
 GROUP BY 1, 2, 3"""


def prometheus_quantities(conn: psycopg.Connection, windows: list[tuple[datetime, datetime]],
                          namespaces: list[str] | None
                          ) -> dict[str, dict[tuple[str, str, bool, int], Decimal]]:
    """namespace -> {(meter, sku, False, window index): quantity} read from Prometheus."""
    out: dict[str, dict] = defaultdict(dict)
    for i, (start, end) in enumerate(windows):
        for ns, meter, sku, quantity in conn.execute(_PROMETHEUS, {
                "start": start, "end": end, "all": namespaces is None,
                "namespaces": namespaces or []}):
            if quantity:
                out[ns][(meter, sku, False, i)] = quantity
    return out


# verify: the same quantities from the raw events alone (the audit trail), by started_ns
_RAW_USAGE = """
SELECT namespace, count(*), sum(duration_ns::numeric * memory_bytes * %(k)s::numeric)
  FROM openfaas_metering.function_usage
 WHERE started_ns >= %(start_ns)s AND started_ns < %(end_ns)s
   AND started BETWEEN %(start)s::timestamptz - %(us)s AND %(end)s::timestamptz + %(us)s
   AND (%(all)s OR namespace = ANY(%(namespaces)s))
 GROUP BY namespace"""


def quantities_raw(conn: psycopg.Connection, windows: list[tuple[datetime, datetime]],
                   namespaces: list[str] | None = None,
                   meters: dict[str, EventMeter] | None = None
                   ) -> dict[str, dict[tuple[str, str, bool, int], Decimal]]:
    """`quantities()` re-derived from the raw events and the capacity intervals, never
    the rollups: what `verify` checks the documents against."""
    out: dict[str, dict] = defaultdict(dict)
    with localcontext(EXACT):
        for i, (start, end) in enumerate(windows):
            for ns, invocations, gb_seconds in conn.execute(
                    _RAW_USAGE, window_params(start, end, namespaces)):
                out[ns][(INVOCATIONS, "", False, i)] = Decimal(invocations)
                out[ns][(GB_SECONDS, "", False, i)] = gb_seconds
            for ns, meter, sku, spot, hours in capacity(conn, start, end, namespaces):
                if hours:
                    out[ns][(meter, sku, spot, i)] = hours
    return _with_other_sources(conn, out, windows, namespaces, meters)


def first_activity(conn: psycopg.Connection) -> datetime | None:
    """The earliest instant anything billable may have happened: the first usage event
    (the raw table's key leads with started_ns, so this is an index lookup per
    partition) or the first tick that saw a tenant."""
    return conn.execute(
        """SELECT least((SELECT timestamptz 'epoch' + min(started_ns) / 1000 * interval '1 microsecond'
                           FROM openfaas_metering.function_usage),
                        (SELECT min(first_seen_at) FROM openfaas_metering.tenants))"""
    ).fetchone()[0]
