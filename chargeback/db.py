"""The one database helper: a per-process psycopg 3 pool, migrated on first use.

Callers use `transaction()`; everything inside it commits together or not at
all. Anything that means "the database is not there right now" surfaces as
`DatabaseUnavailable`, which handlers answer with 503 + Retry-After so the
sender (event-worker, queue-worker) retries.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from . import migrate
from .settings import ConfigError, Settings

_pools: dict[str, ConnectionPool] = {}
_pools_lock = threading.Lock()


class DatabaseUnavailable(Exception):
    """A transient database failure: retry later. The message is one line."""


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _require_url(settings: Settings) -> str:
    if not settings.database_url:
        raise ConfigError(
            "no database configured: create the database-url secret or set DATABASE_URL"
        )
    return settings.database_url


def pool(settings: Settings) -> ConnectionPool:
    """The process-wide pool for settings.database_url, created and migrated once."""
    url = _require_url(settings)
    with _pools_lock:
        existing = _pools.get(url)
        if existing is not None:
            return existing
        try:
            with psycopg.connect(url, connect_timeout=settings.db_connect_timeout_s) as conn:
                migrate.apply(conn)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(one_line(exc)) from exc
        created = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, settings.db_pool_max),
            timeout=settings.db_connect_timeout_s,
            kwargs={"connect_timeout": settings.db_connect_timeout_s},
            check=ConnectionPool.check_connection,
            name="chargeback",
            open=False,
        )
        created.open(wait=False)
        _pools[url] = created
        return created


@contextmanager
def transaction(settings: Settings) -> Iterator[psycopg.Connection]:
    """A connection inside one transaction: committed on success, rolled back on error."""
    try:
        with pool(settings).connection() as conn:
            yield conn
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise DatabaseUnavailable(one_line(exc)) from exc


def close_all() -> None:
    """Close every pool (tests, shutdown)."""
    with _pools_lock:
        for created in _pools.values():
            created.close()
        _pools.clear()
