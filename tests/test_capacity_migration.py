"""006 converts per-tick capacity_samples into intervals: capacity_usage answers the same,
for every hour and for the whole month of the demo's September, flaps and a gap included."""
from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import psycopg
from devstack.kubegen import fixture_cluster
from psycopg.types.json import Jsonb

from chargeback.capacity.holdings import Rules, Sample, measure
from chargeback.core import migrate

from .capacity_helpers import FIXTURE_HOLDINGS

SEPTEMBER = datetime(2026, 9, 1, tzinfo=timezone.utc)
HOURS = 720
MAX_GAP_SECONDS = 3600  # the demo's


def demo_readings():
    """The demo's hourly readings of the fixture cluster, with changes: render-farm's spot GPU
    node NotReady for a day, a tenant arriving, a PVC resized, and four hours not metered."""
    c = fixture_cluster()
    base = measure(c["namespaces"], c["nodes"], c["persistentvolumeclaims"], c["services"],
                   Rules()).samples
    for hour in range(HOURS + 1):
        if 400 <= hour < 404:
            continue  # missed ticks: the next one bills MAX_GAP_SECONDS of the five hours
        samples = list(base)
        if 100 <= hour < 124:
            samples = [s for s in samples if not (s.namespace == "render-farm" and s.spot)]
        if hour >= 300:
            samples.append(Sample("newco", "node_hours", "m6i.large", False, 1 + hour % 3 // 2))
        if hour >= 500:
            samples = [replace(s, units=s.units * 2) if s.meter == "storage_gib_hours"
                       and s.namespace == "helix-ai" else s for s in samples]
        yield SEPTEMBER + timedelta(hours=hour), samples


def record_the_old_way(conn, slot, previous, samples):
    """What meter-capacity stored before 006: a tick row and one sample per holding per tick."""
    elapsed = None if previous is None else int((slot - previous).total_seconds())
    billed = 0 if elapsed is None else min(elapsed, MAX_GAP_SECONDS)
    conn.execute("""INSERT INTO openfaas_metering.capacity_ticks
                        (slot, previous_slot, elapsed_seconds, billed_seconds, tenants,
                         dedicated_nodes, not_ready_nodes, samples, warnings)
                    VALUES (%s, %s, %s, %s, 5, 7, 1, %s, %s)""",
                 (slot, previous, elapsed, billed, len(samples) if billed else 0, Jsonb([])))
    if billed:
        with conn.cursor().copy("COPY openfaas_metering.capacity_samples"
                                " (namespace, slot, seconds, meter, sku, spot, units)"
                                " FROM STDIN") as copy:
            for s in samples:
                copy.write_row((s.namespace, slot, billed, s.meter, s.sku, s.spot, s.units))


def usage(conn, from_ts, to_ts) -> dict:
    return {tuple(row[:4]): row[4] for row in conn.execute(
        "SELECT * FROM openfaas_metering.capacity_usage(%s, %s)", (from_ts, to_ts))}


def september(conn) -> list:
    return conn.execute("SELECT namespace, meter, sku, spot, hours"
                        "  FROM openfaas_metering.capacity_monthly WHERE period_start = %s"
                        " ORDER BY 1, 2, 3, 4", (SEPTEMBER,)).fetchall()


def test_converted_storage_answers_capacity_usage_exactly_as_the_samples_did(pg_server,
                                                                              tmp_path):
    old_sql = tmp_path / "sql"
    old_sql.mkdir()
    for migration in migrate.discover():
        if migration.version <= "005":
            shutil.copy(migrate.SQL_DIR / migration.name, old_sql)
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS capacity_migration")
        conn.execute("CREATE DATABASE capacity_migration")
    url = pg_server.url.rsplit("/", 1)[0] + "/capacity_migration"
    windows = [(SEPTEMBER + timedelta(hours=h), SEPTEMBER + timedelta(hours=h + 1))
               for h in range(HOURS)]
    windows += [(SEPTEMBER, SEPTEMBER + timedelta(days=30)),  # the month, UTC
                (datetime(2026, 9, 1, 0, 30, 15, 500000, tzinfo=timezone(timedelta(hours=2))),
                 datetime(2026, 10, 1, tzinfo=timezone(timedelta(hours=2))))]
    with psycopg.connect(url) as conn:
        migrate.apply(conn, old_sql)
        previous = None
        with conn.transaction():
            for slot, samples in demo_readings():
                record_the_old_way(conn, slot, previous, samples)
                previous = slot
        # a replica whose clock had jumped a day ahead recorded a tick the old code then
        # refused to go past until that time
        (now,) = conn.execute("SELECT date_trunc('minute', now())").fetchone()
        with conn.transaction():
            record_the_old_way(conn, now + timedelta(days=1), previous,
                               [Sample("helix-ai", "node_hours", "x", False, 5)])
        (samples_rows,) = conn.execute(
            "SELECT count(*) FROM openfaas_metering.capacity_samples").fetchone()
        before = [usage(conn, *window) for window in windows]
        monthly_before = september(conn)

        assert migrate.apply(conn)[0] == "006_capacity_intervals.sql"
        after = [usage(conn, *window) for window in windows]
        monthly_after = september(conn)
        (interval_rows,) = conn.execute(
            "SELECT count(*) FROM openfaas_metering.capacity_holdings").fetchone()
        voided = conn.execute("SELECT tick->>'slot', jsonb_array_length(rows)"
                              "  FROM openfaas_metering.capacity_voided_ticks").fetchall()
        (latest,) = conn.execute("SELECT max(slot) FROM openfaas_metering.capacity_ticks"
                                 ).fetchone()
    # hours 399-402 were never billed (the gap), every other hour was
    assert [h for h in range(HOURS) if not before[h]] == [399, 400, 401, 402]
    assert before[-2]["newco", "node_hours", "m6i.large", False] > 0
    for window, old, new in zip(windows, before, after):
        assert new == old, window
    assert monthly_after == monthly_before
    # Derived from demo_readings(): 717 ticks (hours 0..720 without 400..403), the first
    # a baseline, so 716 billed ticks of the fixture's 23 holdings, less render-farm's 5
    # spot holdings for 24 hours, plus newco's one holding from hour 300 on (421 hours
    # less the 4 missed); then the future tick's one sample.
    samples_expected = 716 * FIXTURE_HOLDINGS - 24 * 5 + (421 - 4) + 1      # 16,766
    # One interval per holding and run of unchanged units: the 23 holdings; render-farm's
    # 5 spot holdings again after their day away; helix-ai's storage once more when it
    # doubles at hour 500; newco's units go 1,1,2 by hour % 3: two runs per three hours,
    # 300..399 = 33 cycles (66) + hour 399 (1); after the gap 404 (2) starts a run, then
    # 405..719 = 105 cycles (210) and hour 720 (1): 67 + 212 = 279.
    intervals_expected = FIXTURE_HOLDINGS + 5 + 1 + 279                      # 308
    assert (samples_rows, interval_rows) == (samples_expected, intervals_expected)
    # the future tick was voided (kept for audit), so the next real tick can be recorded
    assert latest == SEPTEMBER + timedelta(hours=HOURS) and len(voided) == 1
    assert voided[0][1] == 1
