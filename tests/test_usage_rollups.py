"""What makes two invocations distinct, and how the rollups add them up: real ingest into
real PostgreSQL, figures derived by hand (1 GiB for 1 s is 1 GB-s)."""
from __future__ import annotations

from decimal import Decimal

from chargeback.core import db

from .billing_helpers import GiB, NS, event, send, settings_for


def _daily(settings) -> list[tuple]:
    with db.transaction(settings) as conn:
        return conn.execute(
            """SELECT namespace, function_name, invocations, duration_ns, gb_seconds
                 FROM openfaas_metering.function_usage_daily ORDER BY 1, 2""").fetchall()


def test_two_invocations_differing_only_in_memory_are_both_counted_and_replays_are_not(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    # same function, same start, same 2 s duration: one with 1 GiB, one with 2 GiB
    small = event("acme", "2026-09-10T10:00:00Z", 2 * NS, memory_bytes=GiB)
    large = event("acme", "2026-09-10T10:00:00Z", 2 * NS, memory_bytes=2 * GiB)
    first = send(s, [small, large])
    assert (first.accepted, first.duplicates) == (2, 0)
    again = send(s, [large, small])  # the same events in another delivery: duplicates
    assert (again.accepted, again.duplicates) == (0, 2)
    # 2 s x 1 GiB + 2 s x 2 GiB = 6 GB-s over 2 invocations of 2 s each
    assert _daily(s) == [("acme", "fn", 2, 4 * NS, Decimal(6))]
    with db.transaction(s) as conn:
        assert conn.execute("SELECT count(*) FROM openfaas_metering.function_usage"
                            ).fetchone()[0] == 2


def test_each_delivery_adds_to_the_days_rollup_never_replaces_it(database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    send(s, [event("acme", "2026-09-10T10:00:00Z", 3 * NS)])   # 3 GB-s at 10:00
    send(s, [event("acme", "2026-09-10T15:00:00Z", 5 * NS)])   # 5 GB-s at 15:00, same day
    send(s, [event("acme", "2026-09-10T15:30:00Z", 7 * NS)])   # 7 GB-s, same day and hour
    # the 10th: 3 invocations, 3 + 5 + 7 = 15 s and 15 GB-s
    assert _daily(s) == [("acme", "fn", 3, 15 * NS, Decimal(15))]
    with db.transaction(s) as conn:
        hours = conn.execute(
            """SELECT extract(hour FROM hour_start AT TIME ZONE 'UTC')::int, invocations,
                      gb_seconds FROM openfaas_metering.function_usage_hourly
                ORDER BY hour_start""").fetchall()
    assert hours == [(10, 1, Decimal(3)), (15, 2, Decimal(12))]
