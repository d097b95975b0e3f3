"""Monthly partitions of function_usage, created ahead of time, off the hot path.

`CREATE TABLE ... PARTITION OF` takes an ACCESS EXCLUSIVE lock on
function_usage until its transaction ends. Inside a delivery's transaction that
lock would queue every other ingest behind any long reader (month close, a
backup, the docs' query). So the current month and the coming ones are created
here, each in its own short transaction with a lock_timeout: a month that
cannot get the lock in time is reported busy and left to the next run (the
ingest's on-demand creation remains only as a fallback for odd months: events
far in the past, or a scheduler that stopped for months).

Called when a replica first migrates the database (`db.pool`) and hourly by a
scheduled function:

    with db.transaction(settings) as conn:
        partitions.ensure_ahead(conn)
"""
from __future__ import annotations

import logging
from datetime import date
from typing import NamedTuple

import psycopg
from psycopg.errors import LockNotAvailable
from psycopg.pq import TransactionStatus

log = logging.getLogger("chargeback")

MONTHS_AHEAD = 2  # the current month and the next two
LOCK_TIMEOUT_S = 2.0

_TODAY = "SELECT (now() AT TIME ZONE 'UTC')::date"
_EXISTS = """
SELECT to_regclass(format('openfaas_metering.%%I',
                          'function_usage_' || to_char(%s::date, 'YYYY_MM'))) IS NOT NULL"""
_CREATE = "SELECT openfaas_metering.ensure_function_usage_partitions(ARRAY[%s::date])"
_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %s, true)"


class EnsureResult(NamedTuple):
    created: list[date]  # months whose partition this call created
    busy: list[date]     # months still missing: the lock was not granted in time


def months_from(first: date, count: int) -> list[date]:
    """`count` first days of months, starting with the month of `first`."""
    index = first.year * 12 + first.month - 1
    return [date((index + i) // 12, (index + i) % 12 + 1, 1) for i in range(count)]


def ensure_ahead(conn: psycopg.Connection, months_ahead: int = MONTHS_AHEAD, *,
                 today: date | None = None,
                 lock_timeout_s: float = LOCK_TIMEOUT_S) -> EnsureResult:
    """Create the partitions of the current UTC month (by the database clock, or
    `today`) and the `months_ahead` after it, one short transaction each.

    `conn` must not be inside a transaction. Never waits longer than
    `lock_timeout_s` for a lock; a month not created is in `busy` (and logged).
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise ValueError("ensure_ahead needs a connection outside any transaction")
    if today is None:
        with conn.transaction():
            today = conn.execute(_TODAY).fetchone()[0]
    created: list[date] = []
    busy: list[date] = []
    for month in months_from(today, months_ahead + 1):
        try:
            with conn.transaction():
                conn.execute(_LOCK_TIMEOUT, (f"{max(1, round(lock_timeout_s * 1000))}ms",))
                if not conn.execute(_EXISTS, (month,)).fetchone()[0]:
                    conn.execute(_CREATE, (month,))
                    created.append(month)
        except LockNotAvailable:
            busy.append(month)
    if busy:
        log.warning("function_usage partitions for %s not created: the table is locked "
                    "(a long reader?); the next run tries again",
                    ", ".join(m.strftime("%Y-%m") for m in busy))
    return EnsureResult(created, busy)
