"""Property: whatever mix of deliveries, replays and re-batching a sender produces,
the database ends up with exactly the unique events, counted once each."""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import psycopg
from devstack.usage_sim import WebhookSender
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeback.usage.events import parse_started, total_gb_seconds

from .conftest import WEBHOOK_SECRET

BASE_NS = parse_started("2026-09-30T23:59:58Z")  # events straddle a month boundary
TRUNCATE = """TRUNCATE openfaas_metering.function_usage,
    openfaas_metering.function_usage_hourly_stripes, openfaas_metering.function_usage_daily_stripes,
    openfaas_metering.usage_deliveries, openfaas_metering.usage_delivery_namespaces,
    openfaas_metering.usage_rejected_events, openfaas_metering.usage_quarantined_deliveries"""

ROLLUPS = [("openfaas_metering.function_usage_hourly", "hour_start"),
           ("openfaas_metering.function_usage_daily", "day_start")]

identities = st.tuples(
    st.sampled_from(["acme", "globex"]),
    st.sampled_from(["env", "figlet"]),
    st.integers(0, 4 * 10**9),                       # ns after BASE_NS
    st.integers(0, 10**11),                          # duration_ns
    st.sampled_from([1, 128 * 2**20, 2**30, 4 * 2**30]),  # memory_bytes
)
# Each step: (replay?, which earlier delivery to replay, events by index, how `started` is written)
steps = st.lists(st.tuples(st.booleans(), st.integers(0, 1000),
                           st.lists(st.tuples(st.integers(0, 1000), st.sampled_from(
                               ["nanos", "trimmed", "offset"])), max_size=12),
                           st.booleans()),
                 min_size=1, max_size=8)


def written(started_ns: int, style: str) -> str:
    seconds, fraction = divmod(started_ns, 10**9)
    utc = datetime.fromtimestamp(seconds, timezone.utc)
    if style == "offset":
        local = (utc + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{local}.{fraction:09d}+02:00"
    digits = f"{fraction:09d}".rstrip("0") if style == "trimmed" else f"{fraction:09d}"
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + (f".{digits}" if digits else "") + "Z"


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(pool=st.lists(identities, min_size=1, max_size=30, unique=True), plan=steps)
def test_any_sequence_of_deliveries_stores_exactly_the_unique_events(serve_function,
                                                                       secrets_dir,
                                                                       database_url, pool,
                                                                       plan):
    fn = _receiver(serve_function, secrets_dir)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(TRUNCATE)
    sender = WebhookSender(fn.url, WEBHOOK_SECRET)
    sent_bodies: list[tuple[str, bytes, dict]] = []
    sent: set[tuple] = set()
    valid_sent = 0
    for number, (replay, which, picks, with_invalid) in enumerate(plan):
        if replay and sent_bodies:
            delivery_id, body, first_answer = sent_bodies[which % len(sent_bodies)]
            answer = sender.post(body, delivery_id=delivery_id)
            assert answer.status_code == 200, answer.text
            assert answer.json() == first_answer  # a replay changes nothing
            continue
        events = []
        for index, style in picks:
            ns, name, offset_ns, duration_ns, memory_bytes = pool[index % len(pool)]
            events.append({"event": "function_usage", "namespace": ns, "function_name": name,
                           "started": written(BASE_NS + offset_ns, style),
                           "duration": duration_ns, "memory_bytes": memory_bytes})
            sent.add((ns, name, BASE_NS + offset_ns, duration_ns, memory_bytes))
        if with_invalid:
            events.insert(len(events) // 2, {"event": "function_usage", "namespace": "acme"})
        body = json.dumps(events).encode()
        delivery_id = f"d{number}"
        answer = sender.post(body, delivery_id=delivery_id)
        assert answer.status_code == 200, answer.text
        summary = answer.json()
        assert len(summary["rejected"]) == int(with_invalid)
        assert summary["accepted"] + summary["duplicates"] == len(picks)
        valid_sent += len(picks)
        sent_bodies.append((delivery_id, body, summary))

    _assert_stored_exactly(database_url, sent)
    accepted = sum(s["accepted"] for _, _, s in sent_bodies)
    duplicates = sum(s["duplicates"] for _, _, s in sent_bodies)
    assert accepted == len(sent) and duplicates == valid_sent - len(sent)


def _assert_stored_exactly(database_url: str, sent: set[tuple]) -> None:
    """Each unique event sent is stored once, and both rollups (read through
    their views, which sum the stripes) equal the raw rows recomputed, exactly."""
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("""SELECT namespace, function_name, started_ns, duration_ns,
                                        memory_bytes FROM openfaas_metering.function_usage
                              """).fetchall()
        invocations, total_gbs = conn.execute("""
            SELECT coalesce(sum(invocations), 0), coalesce(sum(gb_seconds), 0)
              FROM openfaas_metering.function_usage_hourly""").fetchone()
        rollups = [conn.execute(f"""SELECT namespace, function_name, {start}, invocations,
                                           duration_ns, gb_seconds FROM {table}
                                    ORDER BY 1, 2, 3""").fetchall()
                   for table, start in ROLLUPS]
        recomputed = [conn.execute(f"""
            SELECT namespace, function_name,
                   date_trunc('{unit}', started AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                   count(*), sum(duration_ns), sum(duration_ns::numeric * memory_bytes)
                       * 0.000000000000000000931322574615478515625
              FROM openfaas_metering.function_usage GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            """).fetchall() for unit in ("hour", "day")]
    assert rollups == recomputed  # both rollups, hour by hour and day by day, exact
    assert sorted(stored) == sorted(sent)  # each unique event exactly once
    assert invocations == len(sent)
    assert total_gbs == total_gb_seconds((e[3], e[4]) for e in sent)


HOUR_NS = parse_started("2026-10-14T15:00:00Z")
same_hour = st.tuples(st.sampled_from(["acme", "globex"]), st.sampled_from(["env", "figlet"]),
                      st.integers(0, 3600 * 10**9 - 1), st.integers(0, 10**11),
                      st.sampled_from([1, 128 * 2**20, 2**30]))


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(pool=st.lists(same_hour, min_size=1, max_size=40, unique=True),
       deliveries=st.lists(st.tuples(st.lists(st.integers(0, 1000), min_size=1, max_size=20),
                                     st.integers(1, 3)),
                           min_size=2, max_size=6))
def test_concurrent_deliveries_of_the_same_hour_store_each_event_once_and_exact_rollups(
        serve_function, secrets_dir, database_url, pool, deliveries):
    """All deliveries at once (each sent 1-3 times in parallel), every event in
    one hour of the same few functions: what live traffic does to the rollup
    rows. Different transactions add to different rollup stripes."""
    fn = _receiver(serve_function, secrets_dir)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(TRUNCATE)
    sends, sent = [], set()
    for number, (picks, copies) in enumerate(deliveries):
        events = []
        for index in picks:
            ns, name, offset_ns, duration_ns, memory_bytes = pool[index % len(pool)]
            events.append({"event": "function_usage", "namespace": ns, "function_name": name,
                           "started": written(HOUR_NS + offset_ns, "nanos"),
                           "duration": duration_ns, "memory_bytes": memory_bytes})
            sent.add((ns, name, HOUR_NS + offset_ns, duration_ns, memory_bytes))
        sends += [(f"live-{number}", json.dumps(events).encode(), len(picks))] * copies
    barrier = threading.Barrier(len(sends))

    def deliver(send):
        delivery_id, body, _ = send
        sender = WebhookSender(fn.url, WEBHOOK_SECRET)
        barrier.wait()
        return sender.post(body, delivery_id=delivery_id)

    with ThreadPoolExecutor(len(sends)) as threads:
        answers = list(threads.map(deliver, sends))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    first = {}  # a delivery's copies all get its one summary
    for (delivery_id, _, events), answer in zip(sends, answers):
        assert first.setdefault(delivery_id, answer.json()) == answer.json()
        assert answer.json()["accepted"] + answer.json()["duplicates"] == events
    _assert_stored_exactly(database_url, sent)
    assert sum(s["accepted"] for s in first.values()) == len(sent)


_served: dict[str, object] = {}


def _receiver(serve_function, secrets_dir):
    """One function process for all examples of a test run (hypothesis calls the test
    body many times with the same fixtures)."""
    key = str(secrets_dir)
    if key not in _served:
        _served.clear()
        _served[key] = serve_function("receive-usage", env={"SECRETS_DIR": key,
                                                            "DB_CONNECT_TIMEOUT": "2"})
    return _served[key]
