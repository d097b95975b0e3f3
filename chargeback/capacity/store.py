"""Postgres side of meter-capacity: record one tick, its tenants and holdings, at most once.

Storage grows with change, not with ticks (sql/006_capacity_intervals.sql):
one `capacity_ticks` row per completed tick, carrying the running total of
billed seconds, and one `capacity_holdings` row per interval of unchanged
holding (tenant, meter, SKU, spot, units). A tick closes the intervals the
reading no longer shows unchanged and opens one for each new or changed
holding; an unchanged cluster adds the tick row and nothing else.

Safe with any number of replicas: a caller first takes its minute's lock
(`lock_slot`, so one caller per minute reads the cluster), and ticks are
recorded under one transaction-scoped advisory lock and keyed by their slot,
so a duplicate or concurrent call for the same minute, or a late call for an
older one, records nothing.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

import psycopg
from psycopg.types.json import Jsonb

from chargeback.capacity.holdings import Reading, Sample

TICK_LOCK = 0x6D65746572  # "meter": serialises ticks across replicas (not a hot path)
SLOT_LOCK_CLASS = 0x6D747273  # "mtrs": with the slot's minute number, one lock per minute
MAX_STORED_WARNINGS = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class TickOutcome:
    slot: datetime
    recorded: bool
    previous_slot: datetime | None = None
    elapsed_seconds: int | None = None   # since previous_slot, uncapped
    billed_seconds: int = 0
    samples: int = 0                     # holdings billed by this tick
    holdings_opened: int = 0             # interval rows inserted
    holdings_closed: int = 0             # interval rows closed
    reason: str | None = None


def database_now(conn: psycopg.Connection) -> datetime:
    """The database's clock (the transaction's start): it decides the slot, not the pod's."""
    return conn.execute("SELECT now()").fetchone()[0].astimezone(timezone.utc)


def lock_slot(conn: psycopg.Connection, slot: datetime) -> bool:
    """Take the minute's lock for the caller's transaction, or False when another caller has it."""
    minute = int((slot - _EPOCH).total_seconds() // 60)
    return conn.execute("SELECT pg_try_advisory_xact_lock(%s, %s)",
                        (SLOT_LOCK_CLASS, minute)).fetchone()[0]


@dataclass(frozen=True)
class _Latest:
    slot: datetime | None = None
    billed_total_seconds: int = 0
    reading_sha256: bytes | None = None


def _done(conn: psycopg.Connection, slot: datetime) -> tuple[_Latest, TickOutcome | None]:
    """The latest completed tick, and an outcome when `slot` may not be recorded now."""
    latest, total, digest, recorded = conn.execute(  # answered from the primary key's index
        """SELECT l.slot, l.billed_total_seconds, l.reading_sha256,
                  EXISTS (SELECT 1 FROM openfaas_metering.capacity_ticks WHERE slot = %s)
             FROM (SELECT NULL) AS nothing
             LEFT JOIN LATERAL (SELECT slot, billed_total_seconds, reading_sha256
                                  FROM openfaas_metering.capacity_ticks
                                 ORDER BY slot DESC LIMIT 1) l ON true""",
        (slot,)).fetchone()
    found = _Latest(latest, total or 0, digest)
    if latest is None or latest < slot:
        return found, None
    reason = ("already metered" if recorded else
              f"a later tick ({latest.isoformat()}) is already metered: an older slot "
              "would bill time twice")
    return found, TickOutcome(slot, recorded=False, previous_slot=latest, reason=reason)


def already_metered(conn: psycopg.Connection, slot: datetime) -> TickOutcome | None:
    """A cheap look before reading the cluster: an outcome when the slot is done."""
    return _done(conn, slot)[1]


def reading_digest(samples: Iterable[Sample]) -> bytes:
    """SHA-256 of the holdings, independent of their order."""
    lines = sorted(f"{s.namespace}\t{s.meter}\t{s.sku}\t{s.spot}\t{s.units}" for s in samples)
    return hashlib.sha256("\n".join(lines).encode()).digest()


_UPSERT_TENANTS = """
INSERT INTO openfaas_metering.tenants AS t
       (namespace, display_name, email, plan, currency, locale, address, tax_id, budget,
        postal_address, einvoice, buyer_reference, first_seen_at, updated_at)
SELECT namespace, display_name, email, plan, currency, locale, address, tax_id, budget,
       nullif(postal, 'null'::jsonb), einvoice, buyer_reference, %(seen_at)s, now()
  FROM unnest(%(namespace)s::text[], %(display_name)s::text[], %(email)s::text[],
              %(plan)s::text[], %(currency)s::text[], %(locale)s::text[],
              %(address)s::text[], %(tax_id)s::text[], %(budget)s::numeric[],
              %(einvoice)s::text[], %(buyer_reference)s::text[])
       WITH ORDINALITY
       AS a(namespace, display_name, email, plan, currency, locale, address, tax_id, budget,
            einvoice, buyer_reference, n)
  -- the structured addresses travel as one JSON array (a jsonb[] would be escaped twice)
  JOIN jsonb_array_elements(%(postal)s::jsonb) WITH ORDINALITY AS j(postal, n) USING (n)
ON CONFLICT (namespace) DO UPDATE
   SET display_name = excluded.display_name, email = excluded.email,
       plan = excluded.plan, currency = excluded.currency, locale = excluded.locale,
       address = excluded.address, tax_id = excluded.tax_id, budget = excluded.budget,
       postal_address = excluded.postal_address, einvoice = excluded.einvoice,
       buyer_reference = excluded.buyer_reference,
       first_seen_at = least(t.first_seen_at, excluded.first_seen_at), updated_at = now()
 WHERE (t.display_name, t.email, t.plan, t.currency, t.locale, t.address, t.tax_id, t.budget,
        t.postal_address, t.einvoice, t.buyer_reference)
       IS DISTINCT FROM (excluded.display_name, excluded.email, excluded.plan,
                         excluded.currency, excluded.locale, excluded.address, excluded.tax_id,
                         excluded.budget, excluded.postal_address, excluded.einvoice,
                         excluded.buyer_reference)
    OR excluded.first_seen_at < t.first_seen_at
"""

# Subscriptions (sql/160): a listed namespace without an open interval starts one at
# this slot (the first listing, or a namespace that came back); an open interval whose
# namespace the tick no longer lists ends at this slot.
_OPEN_SUBSCRIPTIONS = """
INSERT INTO openfaas_metering.tenant_subscription_periods (namespace, started_at)
SELECT unnest(%(namespace)s::text[]), %(seen_at)s
ON CONFLICT (namespace) WHERE ended_at IS NULL DO NOTHING
"""

_END_SUBSCRIPTIONS = """
UPDATE openfaas_metering.tenant_subscription_periods SET ended_at = %(seen_at)s
 WHERE ended_at IS NULL AND started_at < %(seen_at)s AND NOT namespace = ANY(%(namespace)s)
"""

# The reading is copied into a staging table (ON COMMIT DELETE ROWS: created
# once per connection, empty at every transaction start), then compared with
# the open intervals in two set-based statements.
_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS capacity_reading (
    namespace text    NOT NULL,
    meter     text    NOT NULL,
    sku       text    NOT NULL,
    spot      boolean NOT NULL,
    units     numeric NOT NULL,
    PRIMARY KEY (namespace, meter, sku, spot)
) ON COMMIT DELETE ROWS"""

_COPY_STAGING = "COPY capacity_reading (namespace, meter, sku, spot, units) FROM STDIN"

# Intervals the reading does not show unchanged end at the previous tick.
_CLOSE = """
UPDATE openfaas_metering.capacity_holdings h
   SET last_slot = %(previous_slot)s, closed_total_seconds = %(previous_total)s
 WHERE h.last_slot IS NULL
   AND NOT EXISTS (SELECT 1 FROM capacity_reading r
                    WHERE (r.namespace, r.meter, r.sku, r.spot, r.units)
                          = (h.namespace, h.meter, h.sku, h.spot, h.units))
"""

# New or changed holdings open an interval at this tick (its billed part
# starts after the previous tick's running total).
_OPEN = """
INSERT INTO openfaas_metering.capacity_holdings
       (namespace, meter, sku, spot, units, opened_slot, opened_total_seconds)
SELECT r.namespace, r.meter, r.sku, r.spot, r.units, %(slot)s, %(previous_total)s
  FROM capacity_reading r
 WHERE NOT EXISTS (SELECT 1 FROM openfaas_metering.capacity_holdings h
                    WHERE h.last_slot IS NULL
                      AND (h.namespace, h.meter, h.sku, h.spot, h.units)
                          = (r.namespace, r.meter, r.sku, r.spot, r.units))
"""


# Undo the latest tick: it goes to capacity_voided_ticks with the intervals it
# opened, which are deleted; the intervals it closed (they end at its previous
# tick) are open again, so the open intervals are its previous tick's reading.
_VOID_LATEST = [
    """INSERT INTO openfaas_metering.capacity_voided_ticks (tick, rows, reason)
       SELECT to_jsonb(t),
              coalesce((SELECT jsonb_agg(to_jsonb(h))
                          FROM openfaas_metering.capacity_holdings h
                         WHERE h.opened_slot = t.slot), '[]'),
              %(reason)s
         FROM openfaas_metering.capacity_ticks t WHERE t.slot = %(slot)s""",
    "DELETE FROM openfaas_metering.capacity_holdings WHERE opened_slot = %(slot)s",
    """UPDATE openfaas_metering.capacity_holdings
          SET last_slot = NULL, closed_total_seconds = NULL
        WHERE last_slot = %(previous_slot)s""",
    "DELETE FROM openfaas_metering.capacity_ticks WHERE slot = %(slot)s",
    # the subscriptions it started are gone, the ones it ended are open again
    """DELETE FROM openfaas_metering.tenant_subscription_periods
        WHERE started_at = %(slot)s""",
    """UPDATE openfaas_metering.tenant_subscription_periods SET ended_at = NULL
        WHERE ended_at = %(slot)s""",
]


def void_ticks_after(conn: psycopg.Connection, moment: datetime, reason: str) -> int:
    """Void every tick after `moment` (the database clock's minute), latest first.

    Such a tick bills time that has not happened yet (it can only come from a
    clock that stepped back, or from before slots came from the database
    clock) and would refuse every later tick until its time.
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (TICK_LOCK,))
    future = conn.execute("""SELECT slot, previous_slot FROM openfaas_metering.capacity_ticks
                              WHERE slot > %s ORDER BY slot DESC""", (moment,)).fetchall()
    for slot, previous_slot in future:
        for statement in _VOID_LATEST:
            conn.execute(statement, {"slot": slot, "previous_slot": previous_slot,
                                     "reason": reason})
    return len(future)


def record_tick(conn: psycopg.Connection, slot: datetime, reading: Reading,
                max_gap_seconds: int) -> TickOutcome:
    """Record the tick for `slot` inside the caller's transaction; nothing if it is done.

    It bills min(slot - previous completed slot, max_gap_seconds) of what the
    reading shows; the first tick ever is a baseline that bills nothing.
    Tenants are upserted from the reading (billing details from their
    annotations). The slot is taken as given: the caller decides it (from
    the database clock in capacity_tick.run_tick).
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (TICK_LOCK,))
    previous, done = _done(conn, slot)
    if done is not None:
        return done
    latest, latest_total = previous.slot, previous.billed_total_seconds
    digest = reading_digest(reading.samples)
    elapsed = None if latest is None else int((slot - latest).total_seconds())
    billed = 0 if elapsed is None else min(elapsed, max_gap_seconds)
    samples = len(reading.samples) if billed > 0 else 0
    holdings = {"slot": slot, "previous_slot": latest, "previous_total": latest_total}
    conn.execute(
        """INSERT INTO openfaas_metering.capacity_ticks
               (slot, previous_slot, elapsed_seconds, billed_seconds, billed_total_seconds,
                tenants, dedicated_nodes, not_ready_nodes, samples, warnings, reading_sha256)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (slot, latest, elapsed, billed, latest_total + billed, len(reading.tenants),
         reading.dedicated_nodes, reading.not_ready_nodes, samples,
         Jsonb(list(reading.warnings[:MAX_STORED_WARNINGS])), digest))
    # in namespace order, so that concurrent upserts of several tenants lock rows in one order
    tenants = sorted(reading.tenants, key=lambda t: t.namespace)
    conn.execute(_UPSERT_TENANTS, {
        "seen_at": slot,
        "namespace": [t.namespace for t in tenants],
        "display_name": [t.display_name for t in tenants],
        "email": [t.email for t in tenants],
        "plan": [t.plan for t in tenants],
        "currency": [t.currency for t in tenants],
        "locale": [t.locale for t in tenants],
        "address": [t.address for t in tenants],
        "tax_id": [t.tax_id for t in tenants],
        "budget": [t.budget for t in tenants],
        "postal": Jsonb([t.postal_address for t in tenants]),
        "einvoice": [t.einvoice for t in tenants],
        "buyer_reference": [t.buyer_reference for t in tenants],
    })
    listed = {"seen_at": slot, "namespace": [t.namespace for t in tenants]}
    conn.execute(_END_SUBSCRIPTIONS, listed)
    conn.execute(_OPEN_SUBSCRIPTIONS, listed)
    if digest == previous.reading_sha256:
        # The open intervals are always exactly the latest tick's reading: nothing changed.
        opened = closed = 0
    else:
        conn.execute(_STAGING)
        with conn.cursor().copy(_COPY_STAGING) as copy:
            for s in reading.samples:
                copy.write_row((s.namespace, s.meter, s.sku, s.spot, s.units))
        closed = conn.execute(_CLOSE, holdings).rowcount if latest is not None else 0
        opened = conn.execute(_OPEN, holdings).rowcount
    return TickOutcome(slot, recorded=True, previous_slot=latest, elapsed_seconds=elapsed,
                       billed_seconds=billed, samples=samples, holdings_opened=opened,
                       holdings_closed=closed)
