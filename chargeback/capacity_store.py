"""Postgres side of meter-capacity: record one tick, its tenants and samples, at most once.

Safe with any number of replicas: ticks are taken under one transaction-scoped
advisory lock and keyed by their slot, so a duplicate or concurrent call for
the same minute, or a late call for an older one, records nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from .capacity import Reading

TICK_LOCK = 0x6D65746572  # "meter": serialises ticks across replicas (not a hot path)
MAX_STORED_WARNINGS = 200


@dataclass(frozen=True)
class TickOutcome:
    slot: datetime
    recorded: bool
    previous_slot: datetime | None = None
    elapsed_seconds: int | None = None   # since previous_slot, uncapped
    billed_seconds: int = 0
    samples: int = 0
    reason: str | None = None


def _done(conn: psycopg.Connection, slot: datetime) -> tuple[datetime | None, TickOutcome | None]:
    """The latest completed slot, and an outcome when `slot` may not be recorded now."""
    latest, recorded = conn.execute(  # both answered from the primary key's index
        """SELECT (SELECT max(slot) FROM openfaas_metering.capacity_ticks),
                  EXISTS (SELECT 1 FROM openfaas_metering.capacity_ticks WHERE slot = %s)""",
        (slot,)).fetchone()
    if latest is None or latest < slot:
        return latest, None
    reason = ("already metered" if recorded else
              f"a later tick ({latest.isoformat()}) is already metered: an older slot "
              "would bill time twice")
    return latest, TickOutcome(slot, recorded=False, previous_slot=latest, reason=reason)


def already_metered(conn: psycopg.Connection, slot: datetime) -> TickOutcome | None:
    """A cheap look before reading the cluster: an outcome when the slot is done."""
    return _done(conn, slot)[1]


_UPSERT_TENANTS = """
INSERT INTO openfaas_metering.tenants AS t
       (namespace, display_name, email, plan, currency, first_seen_at, updated_at)
SELECT namespace, display_name, email, plan, currency, %(seen_at)s, now()
  FROM unnest(%(namespace)s::text[], %(display_name)s::text[], %(email)s::text[],
              %(plan)s::text[], %(currency)s::text[])
       AS a(namespace, display_name, email, plan, currency)
ON CONFLICT (namespace) DO UPDATE
   SET display_name = excluded.display_name, email = excluded.email,
       plan = excluded.plan, currency = excluded.currency,
       first_seen_at = least(t.first_seen_at, excluded.first_seen_at), updated_at = now()
 WHERE (t.display_name, t.email, t.plan, t.currency)
       IS DISTINCT FROM (excluded.display_name, excluded.email, excluded.plan, excluded.currency)
    OR excluded.first_seen_at < t.first_seen_at
"""


def record_tick(conn: psycopg.Connection, slot: datetime, reading: Reading,
                max_gap_seconds: int) -> TickOutcome:
    """Record the tick for `slot` inside the caller's transaction; nothing if it is done.

    It bills min(slot - previous completed slot, max_gap_seconds); the first
    tick ever is a baseline that bills nothing. Tenants are upserted from the
    reading (billing details from their annotations).
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (TICK_LOCK,))
    latest, done = _done(conn, slot)
    if done is not None:
        return done
    elapsed = None if latest is None else int((slot - latest).total_seconds())
    billed = 0 if elapsed is None else min(elapsed, max_gap_seconds)
    samples = reading.samples if billed > 0 else ()
    conn.execute(
        """INSERT INTO openfaas_metering.capacity_ticks
               (slot, previous_slot, elapsed_seconds, billed_seconds, tenants,
                dedicated_nodes, not_ready_nodes, samples, warnings)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (slot, latest, elapsed, billed, len(reading.tenants), reading.dedicated_nodes,
         reading.not_ready_nodes, len(samples),
         Jsonb(list(reading.warnings[:MAX_STORED_WARNINGS]))))
    # in namespace order, so that concurrent upserts of several tenants lock rows in one order
    tenants = sorted(reading.tenants, key=lambda t: t.namespace)
    conn.execute(_UPSERT_TENANTS, {
        "seen_at": slot,
        "namespace": [t.namespace for t in tenants],
        "display_name": [t.display_name for t in tenants],
        "email": [t.email for t in tenants],
        "plan": [t.plan for t in tenants],
        "currency": [t.currency for t in tenants],
    })
    if samples:
        with conn.cursor().copy(
                "COPY openfaas_metering.capacity_samples"
                " (namespace, slot, seconds, meter, sku, spot, units) FROM STDIN") as copy:
            for s in samples:
                copy.write_row((s.namespace, slot, billed, s.meter, s.sku, s.spot, s.units))
    return TickOutcome(slot, recorded=True, previous_slot=latest, elapsed_seconds=elapsed,
                       billed_seconds=billed, samples=len(samples))
