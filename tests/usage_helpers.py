"""Usage-test helpers: one valid event, and the rows a test reads back."""
from __future__ import annotations

import psycopg


STARTED = "2026-10-14T15:01:20.349527036Z"


def ev(namespace="acme", function_name="env", started=STARTED, duration=3798742,
       memory_bytes=20971520, **extra):
    event = {"event": "function_usage", "namespace": namespace,
             "function_name": function_name, "started": started, "duration": duration,
             "memory_bytes": memory_bytes}
    event.update(extra)
    return event


def query(database_url, sql, params=()):
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()


def stored(database_url):
    """Every raw event, as identities."""
    return sorted(query(database_url, """
        SELECT namespace, function_name, started_ns, duration_ns, memory_bytes
          FROM openfaas_metering.function_usage"""))


def counts(database_url) -> dict[str, int]:
    tables = ["function_usage", "function_usage_hourly", "usage_deliveries",
              "usage_delivery_namespaces", "usage_rejected_events",
              "usage_quarantined_deliveries"]
    return {t: query(database_url, f"SELECT count(*) FROM openfaas_metering.{t}")[0][0]
            for t in tables}


NOTHING = {"function_usage": 0, "function_usage_hourly": 0, "usage_deliveries": 0,
           "usage_delivery_namespaces": 0, "usage_rejected_events": 0,
           "usage_quarantined_deliveries": 0}
