"""The Postgres side of receive-usage: store a validated batch once, in one transaction.

Per delivery: an advisory lock on the delivery (so two replicas given the same
delivery at once store it once), a replay check, one set-based INSERT into
function_usage of the batch sent as one array per column, and the
hourly and daily rollups updated by exactly the rows that insert stored
(summed by the function), in a rollup stripe no other running transaction
holds. Either all of it commits or none of it does.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from operator import itemgetter

import psycopg
from psycopg import sql
from psycopg.errors import DeadlockDetected, SerializationFailure, UniqueViolation

from chargeback.core import db
from chargeback.core.meters import GB_SECONDS_PER_BYTE_NS
from chargeback.core.settings import Settings
from chargeback.usage.events import (
    Batch,
    UsageEvent,
    daily_rollups,
    hourly_rollups,
    months_of,
)
# a delivery with rejected events is reported through the outbox, in its own transaction
from chargeback.webhooks import outbox as webhook_outbox

log = logging.getLogger("chargeback")

# A deadlock or serialization failure between replicas is retried here, at
# once; anything else that is transient becomes a 503 and the sender retries.
# (psycopg's DeadlockDetected and SerializationFailure are not subclasses of
# its TransactionRollback, which is SQLSTATE 40000 only.)
_ATTEMPTS = 3
_RETRIED_HERE = (DeadlockDetected, SerializationFailure)

_LOCK_DELIVERY = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"

_FIND_DELIVERY = """
SELECT accepted, duplicates, excluded FROM openfaas_metering.usage_deliveries
 WHERE delivery_id = %s AND body_sha256 = %s"""

_FIND_REJECTED = """
SELECT event_index, reason FROM openfaas_metering.usage_rejected_events
 WHERE delivery_id = %s AND body_sha256 = %s ORDER BY event_index"""

_ENSURE_PARTITIONS = "SELECT openfaas_metering.ensure_function_usage_partitions(%s::date[])"

# A per-session staging table of the events' shape (ON COMMIT DELETE ROWS).
# receive-usage no longer stages (see _INSERT); scripts/bench/close generates
# a month of events into it in SQL and hands them to _insert.
_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS usage_staging (
    namespace     text   NOT NULL,
    function_name text   NOT NULL,
    started_ns    bigint NOT NULL,
    duration_ns   bigint NOT NULL,
    memory_bytes  bigint NOT NULL
) ON COMMIT DELETE ROWS"""

# The batch arrives as one array literal per column (written by _event_columns;
# a temporary staging table filled by COPY cost a file truncation at every
# commit, about a tenth of the ingest backends' time on live traffic).
# Rows are inserted in the primary key's order so that replicas inserting
# overlapping batches take their locks in the same order. `started` is
# truncated to the microsecond Postgres holds, so the row, its partition and
# its rollup hour (the UTC hour of the exact start) always agree; `duration`
# is rounded half up (values are >= 0), which keeps the docs' query within
# half a microsecond per event of the exact GB-seconds.
# {skip_duplicates} is empty on the first attempt (see _insert); the second
# skips duplicates and returns the rows it stored, for their rollups.
_INSERT = sql.SQL("""
INSERT INTO openfaas_metering.function_usage
    (namespace, function_name, started, started_ns, duration, duration_ns,
     memory_bytes, delivery_id)
SELECT namespace, function_name,
       timestamptz '1970-01-01 00:00:00+00' + (started_ns / 1000) * interval '1 microsecond',
       started_ns,
       ((duration_ns + 500) / 1000) * interval '1 microsecond',
       duration_ns, memory_bytes, %(delivery_id)s
  FROM unnest(%(namespace)s::text[], %(function_name)s::text[], %(started_ns)s::bigint[],
              %(duration_ns)s::bigint[], %(memory_bytes)s::bigint[])
       AS e (namespace, function_name, started_ns, duration_ns, memory_bytes)
 ORDER BY started_ns, namespace COLLATE "C", function_name COLLATE "C", duration_ns,
          memory_bytes
{skip_duplicates}""")
_INSERT_ALL = _INSERT.format(skip_duplicates=sql.SQL(""))
_INSERT_NEW = _INSERT.format(skip_duplicates=sql.SQL(
    "ON CONFLICT DO NOTHING\n"
    "RETURNING namespace, function_name, started_ns, duration_ns, memory_bytes"))

# The rollups of exactly the rows stored, summed by the function
# (usage.hourly_rollups, exact integers), added hour by hour and day by day to
# the rows of one stripe no other running transaction holds
# (sql/080_rollup_stripes.sql), so concurrent deliveries of the same hour do
# not wait for each other's commits; readers read the views, which sum the
# stripes. The stripe is taken last, after the raw rows are stored, so that it
# is held for the shortest time (and a transaction waiting on another's raw
# rows holds none); rows are upserted in key order.
# (Aggregating the inserted rows in PostgreSQL instead cost it about 1.5 ms
# of CPU per 1,000 events more; summing here costs the function less.)
_ROLL_UP = """
WITH stripe AS MATERIALIZED (
    SELECT openfaas_metering.take_rollup_stripe() AS stripe
), rolled_up AS (
    INSERT INTO openfaas_metering.function_usage_hourly_stripes AS h
        (namespace, function_name, hour_start, stripe, invocations, duration_ns, gb_seconds)
    SELECT namespace, function_name,
           timestamptz '1970-01-01 00:00:00+00' + hour_index * interval '1 hour', stripe,
           invocations, duration_ns, byte_ns * %(gb_seconds_per_byte_ns)s::numeric
      FROM unnest(%(h_namespace)s::text[], %(h_function_name)s::text[],
                  %(h_index)s::bigint[], %(h_invocations)s::bigint[],
                  %(h_duration_ns)s::numeric[], %(h_byte_ns)s::numeric[])
           AS r (namespace, function_name, hour_index, invocations, duration_ns, byte_ns),
           stripe
     ORDER BY namespace COLLATE "C", function_name COLLATE "C", hour_index
    ON CONFLICT (namespace, function_name, hour_start, stripe) DO UPDATE
       SET invocations = h.invocations + excluded.invocations,
           duration_ns = h.duration_ns + excluded.duration_ns,
           gb_seconds  = h.gb_seconds + excluded.gb_seconds,
           updated_at  = now()
    RETURNING 1
)
INSERT INTO openfaas_metering.function_usage_daily_stripes AS d
    (day_start, namespace, function_name, stripe, invocations, duration_ns, gb_seconds)
SELECT timestamptz '1970-01-01 00:00:00+00' + day_index * interval '1 day',
       namespace, function_name, stripe, invocations, duration_ns,
       byte_ns * %(gb_seconds_per_byte_ns)s::numeric
  FROM unnest(%(d_namespace)s::text[], %(d_function_name)s::text[],
              %(d_index)s::bigint[], %(d_invocations)s::bigint[],
              %(d_duration_ns)s::numeric[], %(d_byte_ns)s::numeric[])
       AS r (namespace, function_name, day_index, invocations, duration_ns, byte_ns),
       stripe
 ORDER BY day_index, namespace COLLATE "C", function_name COLLATE "C"
ON CONFLICT (day_start, namespace, function_name, stripe) DO UPDATE
   SET invocations = d.invocations + excluded.invocations,
       duration_ns = d.duration_ns + excluded.duration_ns,
       gb_seconds  = d.gb_seconds + excluded.gb_seconds,
       updated_at  = now()"""

_RECORD_DELIVERY = """
INSERT INTO openfaas_metering.usage_deliveries
    (delivery_id, body_sha256, events, accepted, duplicates, excluded, rejected)
VALUES (%s, %s, %s, %s, %s, %s, %s)"""

# One row per namespace of the delivery, all in one statement.
_RECORD_NAMESPACES = """
INSERT INTO openfaas_metering.usage_delivery_namespaces
    (namespace, delivery_id, body_sha256, accepted, duplicates, excluded)
SELECT namespace, %s, %s, accepted, duplicates, excluded
  FROM unnest(%s::text[], %s::integer[], %s::integer[], %s::integer[])
       AS per_namespace (namespace, accepted, duplicates, excluded)"""

_COPY_REJECTED = ("COPY openfaas_metering.usage_rejected_events (delivery_id, body_sha256,"
                  " event_index, namespace, reason, event_json) FROM STDIN")

_QUARANTINE = """
INSERT INTO openfaas_metering.usage_quarantined_deliveries
    (delivery_id, body_sha256, event_type, reason, body)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (delivery_id, body_sha256) DO NOTHING"""


_COUNT_OTHER = """
INSERT INTO openfaas_metering.webhook_other_events AS o
    (event_type, day, deliveries, events, last_delivery_id)
VALUES (%s, (now() AT TIME ZONE 'UTC')::date, 1, %s, %s)
ON CONFLICT (event_type, day) DO UPDATE
   SET deliveries = o.deliveries + 1,
       events = o.events + excluded.events,
       last_received_at = now(),
       last_delivery_id = excluded.last_delivery_id"""
MAX_EVENT_TYPE_CHARS = 100
REJECTED_REASONS_SHOWN = 5  # in the usage.rejected webhook


@dataclass
class Summary:
    """What a delivery did; a replay gets the original summary back (replayed=True)."""

    delivery: str
    accepted: int = 0
    duplicates: int = 0
    excluded: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    replayed: bool = False

    def as_json(self) -> dict:
        return {"delivery": self.delivery, "accepted": self.accepted,
                "duplicates": self.duplicates, "excluded": self.excluded,
                "rejected": [{"index": i, "reason": r} for i, r in self.rejected]}


def store(settings: Settings, delivery_id: str, body_sha256: str, batch: Batch) -> Summary:
    """Store `batch` for this delivery exactly once; return what it did.

    Raises db.DatabaseUnavailable when the database is not there or the
    transaction failed for a transient reason: then nothing was written.
    Once committed, this replica may fold past rollup stripes (now and then).
    """
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with db.transaction(settings) as conn:
                summary = _store(conn, delivery_id, body_sha256, batch)
            break
        except db.DatabaseUnavailable as exc:
            if not isinstance(exc.__cause__, _RETRIED_HERE) or attempt == _ATTEMPTS:
                raise
    fold_stripes_now_and_then(settings)
    return summary


def _store(conn: psycopg.Connection, delivery_id: str, body_sha256: str,
           batch: Batch) -> Summary:
    conn.execute(_LOCK_DELIVERY, (f"usage-delivery:{delivery_id}:{body_sha256}",))
    found = conn.execute(_FIND_DELIVERY, (delivery_id, body_sha256)).fetchone()
    if found:
        rejected = conn.execute(_FIND_REJECTED, (delivery_id, body_sha256)).fetchall()
        return Summary(delivery_id, *found, rejected=[tuple(r) for r in rejected],
                       replayed=True)

    accepted_by_ns: dict[str, int] = {}
    if batch.events:
        conn.execute(_ENSURE_PARTITIONS, (months_of([e.started_ns for e in batch.events]),))
        accepted_by_ns = _insert(conn, delivery_id, batch.events)

    sent_by_ns = Counter(map(itemgetter(0), batch.events))  # by namespace
    accepted = sum(accepted_by_ns.values())
    summary = Summary(delivery_id, accepted, len(batch.events) - accepted,
                      batch.excluded_total, [(r.index, r.reason) for r in batch.rejected])
    events = len(batch.events) + batch.excluded_total + len(batch.rejected)
    conn.execute(_RECORD_DELIVERY, (delivery_id, body_sha256, events, summary.accepted,
                                    summary.duplicates, summary.excluded,
                                    len(summary.rejected)))
    namespaces = sorted(set(sent_by_ns) | set(batch.excluded))
    conn.execute(_RECORD_NAMESPACES, (
        delivery_id, body_sha256, namespaces,
        [accepted_by_ns.get(ns, 0) for ns in namespaces],
        [sent_by_ns.get(ns, 0) - accepted_by_ns.get(ns, 0) for ns in namespaces],
        [batch.excluded.get(ns, 0) for ns in namespaces]))
    if batch.rejected:
        with conn.cursor().copy(_COPY_REJECTED) as copy:
            for r in batch.rejected:
                copy.write_row((delivery_id, body_sha256, r.index, storable(r.namespace),
                                storable(r.reason), json.dumps(r.event)))
        webhook_outbox.emit(conn, "usage.rejected", {
            "delivery": delivery_id, "count": len(batch.rejected),
            "first": [{"index": r.index, "reason": storable(r.reason)}
                      for r in batch.rejected[:REJECTED_REASONS_SHOWN]]})
    return summary


# The rollup stripes of hours and days that ended more than an hour ago are
# folded back into stripe 0 (sql/081) by receive-usage itself: each replica at
# most every FOLD_EVERY_S, after a delivery's commit, in its own transaction
# (within the session's lock timeout). A fold that fails changes nothing and
# the next one does it.
FOLD_EVERY_S = 600.0
_FOLD = ("SELECT openfaas_metering.fold_rollup_stripes("
         "date_trunc('hour', now()) - interval '1 hour')")
_fold_lock = threading.Lock()
_next_fold = time.monotonic() + FOLD_EVERY_S


def fold_stripes_now_and_then(settings: Settings) -> None:
    """Fold past periods' rollup stripes if this replica's turn has come."""
    global _next_fold
    if time.monotonic() < _next_fold or not _fold_lock.acquire(blocking=False):
        return
    try:
        _next_fold = time.monotonic() + FOLD_EVERY_S
        with db.transaction(settings) as conn:
            conn.execute(_FOLD)
    except db.DatabaseUnavailable as exc:
        log.warning("rollup stripes not folded (the next fold does it): %s", exc)
    finally:
        _fold_lock.release()


def _insert(conn: psycopg.Connection, delivery_id: str,
            events: list[UsageEvent]) -> dict[str, int]:
    """Insert the staged events that are new, update the rollups; return accepted per namespace.

    Most batches hold no duplicate, and a plain INSERT costs PostgreSQL about
    27% less CPU than ON CONFLICT DO NOTHING (speculative insertion; measured
    as docs/benchmarks.md's ingest section says). So a plain
    INSERT is tried first, inside a savepoint; the first duplicate (already
    stored, stored meanwhile by another replica, or twice in this batch)
    undoes that attempt (PostgreSQL logs its duplicate-key error) and the
    batch is inserted skipping duplicates.
    """
    params = {"delivery_id": delivery_id, **_event_columns(events)}
    try:
        with conn.transaction():
            conn.execute(_INSERT_ALL, params)
        inserted = events
    except UniqueViolation:
        inserted = conn.execute(_INSERT_NEW, params).fetchall()
    hourly = hourly_rollups(inserted)
    conn.execute(_ROLL_UP, {"gb_seconds_per_byte_ns": GB_SECONDS_PER_BYTE_NS,
                            **_columns("h", hourly), **_columns("d", daily_rollups(hourly))})
    return dict(Counter(map(itemgetter(0), inserted)))  # by namespace


def _array(values) -> str:
    """An array literal for unnest. Written here rather than by the driver, which
    adapts array elements one by one in Python (about half of the function's
    database time for a batch spanning many hours). Names are validated
    Kubernetes names ([a-z0-9-]), quoted so that one called "null" stays a name;
    the rest are integers, which need no quoting."""
    return "{" + ",".join(values) + "}"


def _event_columns(events: list[UsageEvent]) -> dict[str, str]:
    """The events as one array literal per column."""
    return {"namespace": _array(f'"{e[0]}"' for e in events),
            "function_name": _array(f'"{e[1]}"' for e in events),
            "started_ns": _array(str(e[2]) for e in events),
            "duration_ns": _array(str(e[3]) for e in events),
            "memory_bytes": _array(str(e[4]) for e in events)}


def _columns(prefix: str, sums: list) -> dict[str, str]:
    """Rollups as one array literal per column, for unnest."""
    return {f"{prefix}_namespace": _array(f'"{r.namespace}"' for r in sums),
            f"{prefix}_function_name": _array(f'"{r.function_name}"' for r in sums),
            f"{prefix}_index": _array(str(r.period_index) for r in sums),
            f"{prefix}_invocations": _array(str(r.invocations) for r in sums),
            f"{prefix}_duration_ns": _array(str(r.duration_ns) for r in sums),
            f"{prefix}_byte_ns": _array(str(r.byte_ns) for r in sums)}


def storable(text: str | None) -> str | None:
    """Text as sent, made storable: Postgres text holds neither NUL nor lone surrogates
    (which JSON's \\u escapes can carry); event_json keeps the original, escaped."""
    if text is None:
        return None
    return text.replace("\x00", "\ufffd").encode("utf-8", "backslashreplace").decode("utf-8")


def quarantine_delivery(settings: Settings, delivery_id: str, body_sha256: str,
                        event_type: str | None, body: bytes, reason: str) -> bool:
    """Keep a signed delivery whose body is unusable, raw, for audit (once per body);
    True the first time (its usage.rejected webhook was written with it)."""
    with db.transaction(settings) as conn:
        kept = conn.execute(_QUARANTINE, (delivery_id, body_sha256, event_type, reason,
                                          body)).rowcount
        if kept:
            webhook_outbox.emit(conn, "usage.rejected", {
                "delivery": delivery_id, "count": None,  # the whole body, unusable
                "first": [{"index": None, "reason": storable(reason)}]})
    return bool(kept)


def count_other_delivery(settings: Settings, event_type: str, delivery_id: str,
                         events: int) -> None:
    """Count a signed delivery of an event type we do not store (per type and UTC day)."""
    with db.transaction(settings) as conn:
        conn.execute(_COUNT_OTHER, (storable(event_type[:MAX_EVENT_TYPE_CHARS]), events,
                                    storable(delivery_id)))
