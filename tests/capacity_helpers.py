"""Capacity-test helpers: the tick call and the rows a test reads back."""
from __future__ import annotations

from datetime import datetime, timezone

import psycopg
import requests


T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)


H100 = "NVIDIA-H100-80GB-HBM3"


def tick(fn, at: datetime, session=requests):
    return session.post(fn.url, json={"now": at.isoformat()}, timeout=30)


def rows(database_url, sql, *args):
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, args).fetchall()


def unit_seconds(database_url, namespace, meter, sku=None):
    """units held by a tenant times the seconds billed, over every tick (exact NUMERIC)."""
    (total,) = rows(database_url,
                    "SELECT coalesce(sum(unit_seconds), 0) FROM openfaas_metering.capacity_usage("
                    "  '2000-01-01Z', '2100-01-01Z')"
                    " WHERE namespace = %s AND meter = %s AND (%s::text IS NULL OR sku = %s)",
                    namespace, meter, sku, sku)[0]
    return total
