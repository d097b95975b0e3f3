"""The one database helper: a per-process psycopg 3 pool, migrated on first use.

Callers use `transaction()`; everything inside it commits together or not at
all. Anything that means "the database is not there right now" surfaces as
`DatabaseUnavailable`, which handlers answer with 503 + Retry-After so the
sender (event-worker, queue-worker) retries.

Everything is bounded: connecting and waiting for a pool connection by
DB_CONNECT_TIMEOUT, every statement, lock wait and idle transaction
server-side (DB_STATEMENT_TIMEOUT, DB_LOCK_TIMEOUT,
DB_IDLE_IN_TRANSACTION_TIMEOUT, set on each connection as it is opened),
migrations by DB_MIGRATION_TIMEOUT per statement and DB_LOCK_TIMEOUT for the
migration lock.

After an outage the process serves again with the first request after the
server's return: a pool that could not hand out a working connection is
dropped, and the next request builds a fresh one, which connects directly
(failing at once, with a 503, while the server is still away). Only
psycopg_pool's public API is used; its own reconnect backoff, which doubles
from 1 s, never decides when service resumes.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from chargeback.core import migrate, partitions
from chargeback.core.responses import ServiceError
from chargeback.core.settings import ConfigError, Settings

log = logging.getLogger("chargeback")
# While the server is away the pool logs each reconnect attempt (4 a second);
# handlers log one line per refused request instead.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

# Keyed by everything a pool is built from (URL, session bounds, size): a
# changed secret or setting gets a new pool, and the old one is closed.
_PoolKey = tuple
_pools: dict[_PoolKey, ConnectionPool] = {}
_pools_lock = threading.Lock()  # guards the two dicts only, never held while connecting
_creating: dict[_PoolKey, threading.Lock] = {}


class DatabaseUnavailable(ServiceError):
    """A transient database failure: retry later. The message is one line, for the log
    (it may name the host, port and user: never put it in a response)."""

    what = "database unavailable"

    def public_reason(self) -> str:
        return "database unavailable, retry later"


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _require_url(settings: Settings) -> str:
    if not settings.database_url:
        raise ConfigError(
            "no database configured: create the database-url secret or set DATABASE_URL"
        )
    return settings.database_url


def configured(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """ConfigError unless a database is configured (checked at start,
    chargeback.core.startup; whether it answers is a request's business)."""
    _require_url(settings)


_BOUND = """
SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false),
       set_config('idle_in_transaction_session_timeout', %s, false)"""


def session_bounds(settings: Settings, statement_timeout_s: float | None = None
                   ) -> tuple[str, str, str]:
    """statement_timeout, lock_timeout, idle_in_transaction_session_timeout, as set on
    every connection."""
    def ms(seconds: float) -> str:
        return f"{max(1, round(seconds * 1000))}ms"

    statement_s = settings.db_statement_timeout_s if statement_timeout_s is None \
        else statement_timeout_s
    return (ms(statement_s), ms(settings.db_lock_timeout_s),
            ms(settings.db_idle_in_transaction_timeout_s))


def _bind(conn: psycopg.Connection, bounds: tuple[str, str, str]) -> None:
    """Set the bounds with SET (not libpq startup options, which some poolers refuse)."""
    autocommit = conn.autocommit
    conn.autocommit = True
    conn.execute(_BOUND, bounds)
    conn.autocommit = autocommit


# What "try again later" looks like from the driver: connection and server
# failures, statement and lock timeouts (OperationalError), the pool, and a
# transaction ended for idling (an InternalError by SQLSTATE class, 25P03).
_UNAVAILABLE = (psycopg.OperationalError, PoolTimeout,
                psycopg.errors.IdleInTransactionSessionTimeout)


def pool(settings: Settings) -> ConnectionPool:
    """The process-wide pool for settings.database_url, created and migrated once.

    When the URL changes (the database-url secret was rotated) or a setting
    the pool is built from, the previous pool is closed. Creating a pool
    (connect, migrate, create the coming months' partitions) holds a lock for
    that pool only, and a caller
    waits for another thread's creation at most DB_CONNECT_TIMEOUT.
    """
    url = _require_url(settings)
    bounds = session_bounds(settings)
    key = (url, bounds, settings.db_pool_max, settings.db_connect_timeout_s)
    with _pools_lock:
        existing = _pools.get(key)
        if existing is not None:
            return existing
        creating = _creating.setdefault(key, threading.Lock())
    if not creating.acquire(timeout=settings.db_connect_timeout_s):
        raise DatabaseUnavailable("the database is still being migrated by another thread")
    try:
        with _pools_lock:
            existing = _pools.get(key)
        if existing is not None:
            return existing
        try:
            with psycopg.connect(url, connect_timeout=settings.db_connect_timeout_s) as conn:
                _bind(conn, session_bounds(settings, settings.db_migration_timeout_s))
                migrate.apply(conn)
                partitions.ensure_ahead(conn)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(one_line(exc)) from exc
        created = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, settings.db_pool_max),
            timeout=settings.db_connect_timeout_s,
            kwargs={"connect_timeout": settings.db_connect_timeout_s},
            configure=lambda conn: _bind(conn, bounds),
            check=ConnectionPool.check_connection,
            name="chargeback",
            open=False,
        )
        created.open(wait=False)
        with _pools_lock:
            _pools[key] = created
            replaced = [_pools.pop(other) for other in list(_pools) if other != key]
    finally:
        creating.release()
    for old in replaced:  # a rotated secret: release the old database's connections
        old.close()
    return created


@contextmanager
def transaction(settings: Settings) -> Iterator[psycopg.Connection]:
    """A connection inside one transaction: committed on success, rolled back on error."""
    serving = pool(settings)
    conn = None
    try:
        with serving.connection() as conn:
            yield conn
    except _UNAVAILABLE as exc:
        if conn is None or conn.broken:  # the server went away, not one statement failed
            _drop(serving)
        raise DatabaseUnavailable(one_line(exc)) from exc


def _drop(broken: ConnectionPool) -> None:
    """Forget a pool whose server went away, so the next request connects afresh.

    Closing waits for the pool's worker threads, so it happens off the request."""
    with _pools_lock:
        keys = [key for key, existing in _pools.items() if existing is broken]
        for key in keys:
            del _pools[key]
    if keys:
        threading.Thread(target=broken.close, name="chargeback-pool-close",
                         daemon=True).start()


def close_all() -> None:
    """Close every pool (tests, shutdown)."""
    with _pools_lock:
        closing = list(_pools.values())
        _pools.clear()
    for created in closing:
        created.close()
