"""Meters over custom events (CloudEvents), declared in the price book's `meters:`.

    meters:
      llm_tokens:
        event_type: com.example.llm.completion   # the CloudEvent `type` it reads
        aggregation: sum            # sum | count | max | unique_count | latest
        value_property: $.tokens    # a JSON path in `data` (not for count)
        group_by: [$.model]         # the SKU: these properties' values, joined by "/"
        unit: tokens
        description: LLM tokens     # or {en: ..., de: ...}; English goes on the invoice

A meter's quantity over a window is computed from the stored events when the
window is priced (an index on type and time), so declaring a meter later
counts the events sent before it too, and month close, estimates, the portal
and `verify` read the same figure. Values are the JSON numbers as sent, exact
(jsonb numbers are NUMERIC); an event whose value is not a number counts for
count only. sum and count add up across windows; max, unique_count and latest
do not, so they are taken over the whole period and put in its last window
(priced at the price in force at the period's end).
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg
from psycopg import sql

from chargeback.billing.periods import to_ns

AGGREGATIONS = ("sum", "count", "max", "unique_count", "latest")
ADDITIVE = ("sum", "count")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_PATH = re.compile(r"(?:\$\.)?([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)")


class MeterError(ValueError):
    """A meter declaration is unusable; the message names the key."""


@dataclass(frozen=True)
class EventMeter:
    name: str
    event_type: str
    aggregation: str
    value_path: tuple[str, ...] | None
    group_by: tuple[tuple[str, ...], ...]
    unit: str
    description: str    # English, as invoices store it


def _path(value, where: str) -> tuple[str, ...]:
    match = _PATH.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise MeterError(f"{where}: expected a JSON path like $.tokens or $.usage.input")
    return tuple(match[1].split("."))


def parse(raw, known: tuple[str, ...]) -> dict[str, EventMeter]:
    """The `meters:` section (None: no custom meters); `known`: the built-in meter names."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise MeterError("meters: expected a mapping of meter name to declaration")
    out = {}
    for name, decl in raw.items():
        where = f"meters.{name}"
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in known:
            raise MeterError(f"{where}: a meter name is lower case [a-z0-9_] and not one of "
                             f"the built-in meters")
        if not isinstance(decl, dict):
            raise MeterError(f"{where}: expected a mapping")
        unknown = set(decl) - {"event_type", "aggregation", "value_property", "group_by",
                               "unit", "description"}
        if unknown:
            raise MeterError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        event_type = decl.get("event_type")
        if not isinstance(event_type, str) or not event_type.strip():
            raise MeterError(f"{where}.event_type: expected the CloudEvent type")
        aggregation = decl.get("aggregation")
        if aggregation not in AGGREGATIONS:
            raise MeterError(f"{where}.aggregation: expected one of {', '.join(AGGREGATIONS)}")
        value = decl.get("value_property")
        if aggregation == "count":
            if value is not None:
                raise MeterError(f"{where}.value_property: count takes none")
            value_path = None
        else:
            value_path = _path(value, f"{where}.value_property")
        group_by = decl.get("group_by", [])
        if not isinstance(group_by, list):
            raise MeterError(f"{where}.group_by: expected a list of JSON paths")
        unit = decl.get("unit")
        if not isinstance(unit, str) or not unit.strip():
            raise MeterError(f"{where}.unit: expected the unit prices are quoted in")
        description = decl.get("description", name)
        if isinstance(description, dict):
            description = description.get("en")
        if not isinstance(description, str) or not description.strip():
            raise MeterError(f"{where}.description: expected text (or {{en: text, ...}})")
        out[name] = EventMeter(name, event_type, aggregation, value_path,
                               tuple(_path(g, f"{where}.group_by[{i}]")
                                     for i, g in enumerate(group_by)),
                               unit.strip(), description.strip())
    return out


# `data #> path` is the JSON value; a number's text cast to numeric is exact.
_NUMBER = ("CASE WHEN jsonb_typeof(data #> {path}) = 'number' "
           "THEN (data #>> {path})::numeric END")
_AGGREGATE = {"sum": "sum({v})", "count": "count(*)", "max": "max({v})",
              "unique_count": "count(DISTINCT data #>> {path})",
              "latest": "(array_agg({v} ORDER BY time_ns DESC, source DESC, event_id DESC)"
                        " FILTER (WHERE {v} IS NOT NULL))[1]"}
_QUANTITY = """
SELECT namespace, {sku} AS sku, {aggregate} AS quantity
  FROM openfaas_metering.custom_events
 WHERE type = %(type)s AND time_ns >= %(start_ns)s AND time_ns < %(end_ns)s
   AND (%(all)s OR namespace = ANY(%(namespaces)s))
 GROUP BY 1, 2"""


def _query(meter: EventMeter) -> sql.Composed:
    path = sql.Literal(list(meter.value_path or ()))
    value = sql.SQL(_NUMBER).format(path=path)
    aggregate = sql.SQL(_AGGREGATE[meter.aggregation]).format(v=value, path=path)
    sku = (sql.SQL("concat_ws('/', {})").format(sql.SQL(", ").join(
        sql.SQL("coalesce(data #>> {}, '')").format(sql.Literal(list(g)))
        for g in meter.group_by)) if meter.group_by else sql.SQL("''"))
    return sql.SQL(_QUANTITY).format(sku=sku, aggregate=aggregate)


def quantities(conn: psycopg.Connection, meters: dict[str, EventMeter],
               windows: list[tuple[datetime, datetime]], namespaces: list[str] | None
               ) -> dict[str, dict[tuple[str, str, bool, int], Decimal]]:
    """namespace -> {(meter, sku, False, window index): quantity} for the custom meters."""
    out: dict[str, dict] = defaultdict(dict)
    if not windows:
        return out
    for meter in meters.values():
        spans = (list(enumerate(windows)) if meter.aggregation in ADDITIVE
                 else [(len(windows) - 1, (windows[0][0], windows[-1][1]))])
        query = _query(meter)
        for index, (start, end) in spans:
            for ns, sku, quantity in conn.execute(query, {
                    "type": meter.event_type, "start_ns": to_ns(start), "end_ns": to_ns(end),
                    "all": namespaces is None, "namespaces": namespaces or []}):
                if quantity:
                    out[ns][(meter.name, sku, False, index)] = Decimal(quantity)
    return out
