"""capacity_usage over intervals equals the simple per-tick model, exactly, for random histories.

The model: ticks are accepted only for a slot later than the latest one; a
tick bills min(slot - previous slot, MAX_GAP) seconds of its reading (the
first bills nothing); capacity_usage(from, to) is the sum over ticks of units
x the seconds of (slot - billed, slot] inside [from, to). Histories mix
holdings appearing, changing units, disappearing and reappearing (a NotReady
flap is exactly that), gaps longer than MAX_GAP, repeated and late slots.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeback.capacity.holdings import Reading, Sample, Tenant
from chargeback.capacity.store import record_tick

T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
MAX_GAP_SECONDS = 300
KEYS = [(ns, meter, sku, spot) for ns in ("acme", "zeta")
        for meter, sku in (("gpu_hours", "NVIDIA-H100"), ("storage_gib_hours", "gp3"))
        for spot in (False, True)]
UNITS = [Decimal(1), Decimal(2), Decimal("0.125"), Decimal("1024.5")]

# a reading, or None: the same as the step before (the common case: nothing changed)
readings = st.one_of(st.none(), st.dictionaries(st.sampled_from(KEYS), st.sampled_from(UNITS),
                                                max_size=6))
# minutes after the previous call: the next minute, a repeat, a late slot, gaps over MAX_GAP
steps = st.lists(st.tuples(st.sampled_from([1, 1, 1, 2, 0, -1, -3, 7, 30]), readings),
                 min_size=1, max_size=12)
instants = st.integers(-600, 50 * 60).map(lambda s: T0 + timedelta(seconds=s)).flatmap(
    lambda t: st.integers(0, 999_999).map(lambda us: t + timedelta(microseconds=us)))
windows = st.lists(st.tuples(instants, st.integers(0, 40 * 60 * 10**6)), min_size=1,
                   max_size=4)


def seconds(delta: timedelta) -> Decimal:
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / 10**6


def model(history):
    """The per-tick reference: (slot, billed_seconds, reading) of every accepted tick."""
    ticks, latest = [], None
    for slot, reading in history:
        if latest is not None and slot <= latest:
            continue  # repeated or late: records nothing
        billed = 0 if latest is None else min(int((slot - latest).total_seconds()),
                                              MAX_GAP_SECONDS)
        ticks.append((slot, billed, reading))
        latest = slot
    return ticks


def model_usage(ticks, from_ts, to_ts) -> dict:
    usage: dict = {}
    for slot, billed, reading in ticks:
        start = max(slot - timedelta(seconds=billed), from_ts)
        end = min(slot, to_ts)
        if end <= start:
            continue
        for key, units in reading.items():
            usage[key] = usage.get(key, Decimal(0)) + units * seconds(end - start)
    return usage


def model_intervals(ticks) -> int:
    """Rows an interval store needs: one per holding appearing or changing units."""
    opened, before = 0, {}
    for _, _, reading in ticks:
        opened += sum(before.get(key) != units for key, units in reading.items())
        before = reading
    return opened


def as_reading(held: dict) -> Reading:
    samples = tuple(Sample(ns, meter, sku, spot, units)
                    for (ns, meter, sku, spot), units in sorted(held.items()))
    return Reading((Tenant("acme"), Tenant("zeta")), samples, 0, 0, ())


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=steps, windows=windows)
def test_capacity_usage_equals_the_per_tick_model_exactly(database_url, steps, windows):
    history, at, held = [], T0, {}
    for minutes, reading in steps:
        at += timedelta(minutes=minutes)
        held = held if reading is None else reading
        history.append((at, held))
    with psycopg.connect(database_url) as conn:
        conn.execute("TRUNCATE openfaas_metering.capacity_holdings,"
                     " openfaas_metering.capacity_ticks, openfaas_metering.tenants CASCADE")
        conn.commit()
        for slot, held in history:
            with conn.transaction():
                record_tick(conn, slot, as_reading(held), MAX_GAP_SECONDS)
        ticks = model(history)
        everything = (T0 - timedelta(days=1), T0 + timedelta(days=1))
        for from_ts, length_us in [everything, *windows]:
            to_ts = from_ts + timedelta(microseconds=length_us) if isinstance(length_us, int) \
                else length_us
            stored = {(ns, meter, sku, spot): total for ns, meter, sku, spot, total in
                      conn.execute("SELECT * FROM openfaas_metering.capacity_usage(%s, %s)",
                                   (from_ts, to_ts))}
            assert stored == model_usage(ticks, from_ts, to_ts), (from_ts, to_ts)
        # storage grows with change: one row per holding appearing or changing, no more
        assert conn.execute("SELECT count(*) FROM openfaas_metering.capacity_holdings"
                            ).fetchone()[0] == model_intervals(ticks)
        still_held = dict(conn.execute(
            "SELECT (namespace, meter, sku, spot)::text, units"
            "  FROM openfaas_metering.capacity_holdings WHERE last_slot IS NULL").fetchall())
        assert len(still_held) == len(ticks[-1][2])


def test_the_audit_query_names_what_a_tenant_held_at_an_instant_and_from_which_tick(
        database_url):
    gpu, disk = KEYS[0], KEYS[2]
    history = [(T0, {gpu: Decimal(8), disk: Decimal(100)}),
               (T0 + timedelta(minutes=1), {gpu: Decimal(8), disk: Decimal(100)}),
               (T0 + timedelta(minutes=2), {gpu: Decimal(4), disk: Decimal(100)}),
               (T0 + timedelta(minutes=20), {gpu: Decimal(4)})]  # 15 minutes not billed
    with psycopg.connect(database_url) as conn:
        for slot, held in history:
            with conn.transaction():
                record_tick(conn, slot, as_reading(held), MAX_GAP_SECONDS)

        def held_at(at):
            return [(meter, units, since, tick, billed) for _, meter, _, _, units, since, tick,
                    billed in conn.execute("SELECT * FROM openfaas_metering.capacity_held_at"
                                           "('acme', %s)", (at,))]

        assert held_at(T0 + timedelta(seconds=30)) == [
            ("gpu_hours", 8, T0, T0 + timedelta(minutes=1), True),
            ("storage_gib_hours", 100, T0, T0 + timedelta(minutes=1), True)]
        assert held_at(T0 + timedelta(minutes=1, seconds=1)) == [
            ("gpu_hours", 4, T0 + timedelta(minutes=2), T0 + timedelta(minutes=2), True),
            ("storage_gib_hours", 100, T0, T0 + timedelta(minutes=2), True)]
        assert held_at(T0 + timedelta(minutes=10)) == [  # in the gap: seen, not billed
            ("gpu_hours", 4, T0 + timedelta(minutes=2), T0 + timedelta(minutes=20), False)]
        assert held_at(T0 + timedelta(minutes=21)) == []  # after the latest tick: not known yet


def test_capacity_monthly_steps_utc_months_whatever_the_session_time_zone(database_url):
    gpu = KEYS[0]
    start = datetime(2026, 10, 31, 23, 0, tzinfo=timezone.utc)
    with psycopg.connect(database_url) as conn:
        for minute in range(0, 121, 5):  # 23:00 on Oct 31 to 01:00 on Nov 1, UTC
            with conn.transaction():
                record_tick(conn, start + timedelta(minutes=minute), as_reading({gpu: Decimal(2)}),
                            MAX_GAP_SECONDS)
        by_zone = {}
        for zone in ("UTC", "America/New_York", "Asia/Kolkata"):
            conn.execute("SELECT set_config('TimeZone', %s, false)", (zone,))
            by_zone[zone] = sorted(conn.execute(
                "SELECT period_start, unit_seconds FROM openfaas_metering.capacity_monthly"
            ).fetchall())
    # 60 minutes of two GPUs on each side of midnight UTC, in every session zone
    expected = [(datetime(2026, 10, 1, tzinfo=timezone.utc), Decimal(2 * 3600)),
                (datetime(2026, 11, 1, tzinfo=timezone.utc), Decimal(2 * 3600))]
    assert by_zone == {zone: expected for zone in by_zone}
