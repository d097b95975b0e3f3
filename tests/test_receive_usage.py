"""receive-usage end to end: the real function over HTTP, a real PostgreSQL per test."""
from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import psycopg
import pytest
import requests
from devstack.usage_sim import WebhookSender, rfc3339, usage_event

from chargeback.core import db
from chargeback.core.settings import load
from chargeback.usage import ingest
from chargeback.usage.events import (
    OPENFAAS_DOCS_MONTHLY_QUERY,
    parse_started,
    total_gb_seconds,
)
from chargeback.usage.webhook import sign

from .conftest import WEBHOOK_SECRET
from .usage_helpers import NOTHING, STARTED, counts, ev, query, stored


@pytest.fixture
def env(secrets_dir):
    return {"SECRETS_DIR": str(secrets_dir), "DB_CONNECT_TIMEOUT": "1"}


@pytest.fixture
def receiver(serve_function, env):
    return serve_function("receive-usage", env=env)


@pytest.fixture
def send(receiver):
    return WebhookSender(receiver.url, WEBHOOK_SECRET).post


# Signature -----------------------------------------------------------------

def test_signed_delivery_is_stored_with_the_exact_nanosecond(send, database_url):
    r = send([ev()], delivery_id="fe0f677c-c431-498e-8ace-9ba857434334")
    assert r.status_code == 200, r.text
    assert r.json() == {"delivery": "fe0f677c-c431-498e-8ace-9ba857434334", "accepted": 1,
                        "duplicates": 0, "excluded": 0, "rejected": []}
    row = query(database_url, """
        SELECT started_ns, started = timestamptz '2026-10-14 15:01:20.349527+00',
               duration_ns, duration = interval '0.003799 s', memory_bytes, delivery_id
          FROM openfaas_metering.function_usage""")
    assert row == [(parse_started(STARTED), True, 3798742, True, 20971520,
                    "fe0f677c-c431-498e-8ace-9ba857434334")]


def test_wrong_secret_is_refused_and_the_database_is_not_touched(serve_function, env,
                                                                 database_url):
    # Pointing the function at a database that cannot answer proves that a
    # forged delivery is refused before anything is read from it.
    down = serve_function("receive-usage", env={
        **env, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"})
    r = WebhookSender(down.url, "not-the-secret").post([ev()])
    assert r.status_code == 401
    assert "does not match the body" in r.json()["error"]
    # ... while a genuine one does reach the (unavailable) database
    assert WebhookSender(down.url, WEBHOOK_SECRET).post([ev()]).status_code == 503


def test_body_altered_by_one_byte_is_refused(send, database_url):
    body = b'[{"event":"function_usage","namespace":"acme","function_name":"env",' \
           b'"started":"2026-10-14T15:01:20Z","duration":1000,"memory_bytes":1024}]'
    r = send(body.replace(b"1000", b"9000"), signature=sign(body, WEBHOOK_SECRET))
    assert r.status_code == 401
    assert counts(database_url) == NOTHING


def test_missing_signature_header_is_refused(send, database_url):
    r = send([ev()], signature=None)
    assert r.status_code == 401
    assert r.json() == {"error": "missing X-Openfaas-Signature-256 header: "
                                 "deliveries must be signed"}
    assert counts(database_url) == NOTHING


def test_sha1_signature_is_refused(send, database_url):
    r = send([ev()], signature="sha1=" + "ab" * 20)
    assert r.status_code == 401 and "uses 'sha1'" in r.json()["error"]
    assert counts(database_url) == NOTHING


def test_secret_with_or_without_its_trailing_newline_and_any_header_case(receiver):
    body = b"[]"
    for key in (WEBHOOK_SECRET, WEBHOOK_SECRET + "\n"):
        r = requests.post(receiver.url, data=body, headers={
            "x-openfaas-signature-256": sign(body, key), "X-OPENFAAS-EVENT": "function_usage",
            "x-OpenFaas-delivery": "d-" + repr(key)})
        assert r.status_code == 200, r.text
        assert r.json()["delivery"] == "d-" + repr(key)


def test_without_a_webhook_secret_nothing_is_accepted(serve_function, env, secrets_dir):
    (secrets_dir / "webhook-secret").unlink()
    fn = serve_function("receive-usage", env=env, healthy=False)
    health = requests.get(f"{fn.url}/_/health", timeout=10)
    assert health.status_code == 503
    r = WebhookSender(fn.url, "").post([ev()], signature="sha256=" + "0" * 64)
    assert r.status_code == 503  # the event-worker retries until the secret is there
    assert r.json() == health.json()
    assert r.json()["error"].startswith("misconfigured: no webhook secret")
    assert "\n" not in r.json()["error"]


# Request shape ---------------------------------------------------------------

def test_other_event_types_are_acknowledged_and_ignored(send, database_url):
    r = send([{"event": "api_access", "path": "/system/functions"}], event="api_access")
    assert r.status_code == 200
    assert r.json()["ignored"] == "api_access"
    assert counts(database_url) == NOTHING


def test_only_post_is_allowed(receiver):
    r = requests.get(receiver.url)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"


def test_oversized_body_is_refused(serve_function, env, database_url):
    fn = serve_function("receive-usage", env={**env, "MAX_BODY_BYTES": "1000"})
    sender = WebhookSender(fn.url, WEBHOOK_SECRET)
    fits, too_big = [ev()] * 5, [ev()] * 7
    assert len(json.dumps(fits)) <= 1000 < len(json.dumps(too_big))
    assert sender.post(fits).status_code == 200
    r = sender.post(too_big)
    assert r.status_code == 413 and "MAX_BODY_BYTES" in r.json()["error"]


@pytest.mark.parametrize("body, reason", [
    (b'[{"event": "function_usage",', "body is not JSON"),
    (b'{"event": "function_usage"}', "body must be a JSON array of events"),
])
def test_malformed_body_is_refused_and_kept_in_quarantine(send, database_url, body, reason):
    r = send(body, delivery_id="bad-1")
    assert r.status_code == 400 and reason in r.json()["error"]
    assert send(body, delivery_id="bad-1").status_code == 400  # a retry is kept once
    assert query(database_url, """SELECT delivery_id, event_type, body, reason LIKE %s
                                    FROM openfaas_metering.usage_quarantined_deliveries""",
                 (reason + "%",)) == [("bad-1", "function_usage", body, True)]
    assert counts(database_url)["function_usage"] == 0


def test_empty_array_is_an_empty_summary(send, database_url):
    r = send([], delivery_id="empty")
    assert r.json() == {"delivery": "empty", "accepted": 0, "duplicates": 0, "excluded": 0,
                        "rejected": []}


# Idempotency ------------------------------------------------------------------

def test_replayed_delivery_gets_its_original_summary_and_changes_nothing(send, database_url):
    batch = [ev(), ev(function_name="figlet"), ev(duration=-1)]
    first = send(batch, delivery_id="d-1")
    before = (stored(database_url), counts(database_url))
    again = send(batch, delivery_id="d-1")
    assert again.status_code == 200 and again.json() == first.json()
    assert first.json()["accepted"] == 2 and len(first.json()["rejected"]) == 1
    assert again.headers["X-Delivery-Replayed"] == "true"
    assert (stored(database_url), counts(database_url)) == before


def test_a_delivery_without_an_id_is_deduplicated_by_its_body(send, database_url):
    first = send([ev()], delivery_id=None)
    assert first.json()["delivery"].startswith("sha256:")
    assert send([ev()], delivery_id=None).json() == first.json()
    assert len(stored(database_url)) == 1


def test_rebatched_duplicates_are_stored_once(send, database_url):
    a, b, c = ev(duration=1), ev(duration=2), ev(duration=3)
    assert send([a, b]).json()["accepted"] == 2
    # b again in a new delivery, written with an offset and fewer digits for
    # the same instant, with an extra field; and c twice in one delivery
    b_again = dict(b, started="2026-10-14T17:01:20.349527036+02:00", region="eu")
    r = send([c, b_again, c]).json()
    assert (r["accepted"], r["duplicates"]) == (1, 2)
    assert len(stored(database_url)) == 3
    assert query(database_url, "SELECT sum(invocations) FROM "
                               "openfaas_metering.function_usage_hourly") == [(3,)]


def test_same_delivery_id_with_a_different_body_is_not_lost(send, database_url):
    send([ev(duration=1)], delivery_id="reused")
    r = send([ev(duration=1), ev(duration=2)], delivery_id="reused").json()
    assert (r["accepted"], r["duplicates"]) == (1, 1)
    assert len(stored(database_url)) == 2


def test_concurrent_identical_deliveries_to_two_replicas_are_stored_once(serve_function, env,
                                                                         database_url):
    replicas = [serve_function("receive-usage", env=env) for _ in range(2)]
    events = [ev(duration=d) for d in range(1, 301)]
    body = json.dumps(events).encode()
    barrier = threading.Barrier(8)

    def deliver(i):
        sender = WebhookSender(replicas[i % 2].url, WEBHOOK_SECRET)
        barrier.wait()
        return sender.post(body, delivery_id="same-time")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(deliver, range(8)))
    assert {r.status_code for r in answers} == {200}
    assert {r.text for r in answers} == {answers[0].text}  # all got the one summary
    assert answers[0].json()["accepted"] == 300
    assert len(stored(database_url)) == 300
    assert query(database_url, "SELECT sum(invocations) FROM "
                               "openfaas_metering.function_usage_hourly") == [(300,)]
    assert counts(database_url)["usage_deliveries"] == 1


def test_twenty_parallel_replays_through_the_gateway_to_two_replicas_store_once(
        local_runtime, product_stack, env, database_url):
    fn = dataclasses.replace(product_stack.functions["receive-usage"],
                             labels={"com.openfaas.scale.min": "2"})
    runtime = local_runtime(dataclasses.replace(product_stack, functions={fn.name: fn}),
                            cron=False, function_env=env)
    assert len(runtime.replicas[fn.name]) == 2
    url = f"{runtime.gateway_url}/function/receive-usage.openfaas-system"
    body = json.dumps([ev(duration=d) for d in range(1, 201)]).encode()
    barrier = threading.Barrier(20)

    def deliver(_):
        sender = WebhookSender(url, WEBHOOK_SECRET)
        barrier.wait()
        return sender.post(body, delivery_id="twenty-times")

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(deliver, range(20)))
    assert {r.status_code for r in answers} == {200}
    assert {r.text for r in answers} == {answers[0].text}
    assert answers[0].json()["accepted"] == 200
    assert sum(r.headers.get("X-Delivery-Replayed") == "true" for r in answers) == 19
    assert len(stored(database_url)) == 200
    assert query(database_url, "SELECT sum(invocations) FROM "
                               "openfaas_metering.function_usage_hourly") == [(200,)]
    assert query(database_url, "SELECT sum(invocations) FROM "
                               "openfaas_metering.function_usage_daily") == [(200,)]
    assert counts(database_url)["usage_deliveries"] == 1


def test_a_tenant_called_null_is_rolled_up_under_its_name(send, database_url):
    r = send([ev(namespace="null", function_name="null"), ev(namespace="acme")])
    assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    for table in ("function_usage_hourly", "function_usage_daily"):
        assert query(database_url, f"""SELECT namespace, function_name, invocations
                     FROM openfaas_metering.{table} ORDER BY 1""") == [
            ("acme", "env", 1), ("null", "null", 1)]


def test_overlapping_deliveries_at_the_same_moment_store_each_event_once(serve_function, env,
                                                                         database_url):
    replicas = [serve_function("receive-usage", env=env) for _ in range(2)]
    events = [ev(duration=d) for d in range(1, 401)]
    # six different deliveries, each overlapping the others by half
    batches = [events[i * 50:i * 50 + 150] for i in range(6)]
    barrier = threading.Barrier(len(batches))

    def deliver(i):
        sender = WebhookSender(replicas[i % 2].url, WEBHOOK_SECRET)
        barrier.wait()
        return sender.post(batches[i], delivery_id=f"overlap-{i}")

    with ThreadPoolExecutor(len(batches)) as pool:
        answers = [r.json() for r in pool.map(deliver, range(len(batches)))]
    unique = len({e["duration"] for batch in batches for e in batch})
    assert sum(a["accepted"] for a in answers) == unique
    assert sum(a["duplicates"] for a in answers) == sum(map(len, batches)) - unique
    assert len(stored(database_url)) == unique
    assert query(database_url, "SELECT sum(invocations) FROM "
                               "openfaas_metering.function_usage_hourly") == [(unique,)]


def test_a_delivery_of_the_same_hour_does_not_wait_for_an_open_ingests_rollup_rows(
        send, database_url):
    # Another ingest transaction, not yet committed, as on live traffic: it took
    # a rollup stripe and holds its acme/env row of 15:00 (and of the day).
    other = psycopg.connect(database_url)
    assert other.execute("SELECT openfaas_metering.take_rollup_stripe()").fetchone() == (0,)
    for table, column, start in (("hourly", "hour_start", "2026-10-14 15:00:00+00"),
                                 ("daily", "day_start", "2026-10-14 00:00:00+00")):
        other.execute(f"""INSERT INTO openfaas_metering.function_usage_{table}_stripes
            (namespace, function_name, {column}, stripe, invocations, duration_ns, gb_seconds)
            VALUES ('acme', 'env', %s, 0, 7, 7, 0)""", (start,))
    try:
        # Without stripes this waited for that row until the lock timeout: 503.
        r = send([ev(duration=d) for d in range(1, 11)], delivery_id="not-queued")
        assert r.status_code == 200 and r.json()["accepted"] == 10, r.text
        assert query(database_url, """SELECT stripe, invocations
            FROM openfaas_metering.function_usage_hourly_stripes""") == [(1, 10)]
    finally:
        other.rollback()
        other.close()
    # the readers' views: exactly the delivery's 10 events (the other rolled back)
    for table in ("function_usage_hourly", "function_usage_daily"):
        assert query(database_url, f"""SELECT namespace, function_name, invocations,
                     duration_ns FROM openfaas_metering.{table}""") == [
            ("acme", "env", 10, Decimal(sum(range(1, 11))))]


def test_past_rollup_stripes_fold_into_one_row_and_the_rollups_read_the_same(database_url):
    # As if three transactions at once had written 15:00 on 14 October and two
    # were writing the current hour: invocations 1, 2, 4 (7) and 8, 16 (24).
    insert = """INSERT INTO openfaas_metering.function_usage_{0}_stripes
        (namespace, function_name, {1}, stripe, invocations, duration_ns, gb_seconds)
        VALUES ('acme', 'env', {2}, %s, %s, %s, %s)"""
    rollups = """SELECT {1}, invocations, duration_ns, gb_seconds
                   FROM openfaas_metering.function_usage_{0} ORDER BY 1"""
    stripes = "SELECT count(*) FROM openfaas_metering.function_usage_{0}_stripes GROUP BY {1}"
    tables = [("hourly", "hour_start", "timestamptz '2026-10-14 15:00:00+00'",
               "date_trunc('hour', now())"),
              ("daily", "day_start", "timestamptz '2026-10-14 00:00:00+00'",
               "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'")]
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table, column, past, now in tables:
            for stripe, n in enumerate([1, 2, 4]):
                conn.execute(insert.format(table, column, past), (stripe, n, 10 * n, n / 4))
            for stripe, n in enumerate([8, 16]):
                conn.execute(insert.format(table, column, now), (stripe, n, 10 * n, n / 4))
        before = [conn.execute(rollups.format(t, c)).fetchall() for t, c, _, _ in tables]
    settings = load({"DATABASE_URL": database_url})
    try:
        ingest._next_fold = 0  # this replica's turn (every FOLD_EVERY_S after a delivery)
        ingest.fold_stripes_now_and_then(settings)
        with psycopg.connect(database_url) as conn:
            for (table, column, past, _), read in zip(tables, before):
                # the same sums, read through the views: 7 = 1 + 2 + 4, 24 = 8 + 16 ...
                assert conn.execute(rollups.format(table, column)).fetchall() == read
                assert [r[1] for r in read] == [7, 24]
                assert [r[3] for r in read] == [Decimal("1.75"), Decimal("6")]
                # ... from one row for the past period, the current one untouched
                assert sorted(conn.execute(stripes.format(table, column)).fetchall()) == [
                    (1,), (2,)]
            # not this replica's turn again before FOLD_EVERY_S
            conn.execute(insert.format("hourly", "hour_start", tables[0][2]), (5, 1, 1, 1))
            conn.commit()
        ingest.fold_stripes_now_and_then(settings)
        assert query(database_url, "SELECT count(*) FROM openfaas_metering."
                                   "function_usage_hourly_stripes WHERE stripe > 0 AND "
                                   "hour_start < now() - interval '1 day'") == [(1,)]
    finally:
        db.close_all()


# Validation ---------------------------------------------------------------------

def test_batch_with_invalid_events_stores_the_good_ones(send, database_url):
    batch = [ev(duration=1), ev(duration=-1), ev(namespace="", duration=2),
             ev(memory_bytes=0), ev(duration=3, started="2026-10-14"),
             ev(duration=4, function_name="Bad_Name"), "not an event",
             ev(duration=5, started=rfc3339(time.time_ns() + 3600 * 10**9)),
             ev(duration=6, event="api_access"), ev(duration=7, namespace="openfaas-system"),
             ev(duration=8)]
    r = send(batch, delivery_id="mixed")
    assert r.status_code == 200
    body = r.json()
    assert (body["accepted"], body["duplicates"], body["excluded"]) == (2, 0, 1)
    assert [x["index"] for x in body["rejected"]] == [1, 2, 3, 4, 5, 6, 7, 8]
    reasons = [x["reason"] for x in body["rejected"]]
    assert reasons[0].startswith("duration must be a non-negative integer")
    assert "in the future" in reasons[6]
    quarantined = query(database_url, """
        SELECT event_index, namespace, reason, event_json::jsonb
          FROM openfaas_metering.usage_rejected_events ORDER BY event_index""")
    assert [(i, reason) for i, _, reason, _ in quarantined] == list(
        zip([1, 2, 3, 4, 5, 6, 7, 8], reasons))
    assert quarantined[0][1] == "acme" and quarantined[0][3] == batch[1]
    assert [e[3] for e in stored(database_url)] == [1, 8]


def test_excluded_namespaces_are_counted_not_billed(serve_function, env, database_url):
    fn = serve_function("receive-usage", env={**env,
                                              "EXCLUDE_NAMESPACES": "openfaas-system,kube-ci"})
    r = WebhookSender(fn.url, WEBHOOK_SECRET).post(
        [ev(namespace="openfaas-system"), ev(namespace="kube-ci"), ev()]).json()
    assert (r["accepted"], r["excluded"]) == (1, 2)
    assert [e[0] for e in stored(database_url)] == ["acme"]
    assert query(database_url, """SELECT namespace, excluded FROM
                 openfaas_metering.usage_delivery_namespaces WHERE excluded > 0
                 ORDER BY 1""") == [("kube-ci", 1), ("openfaas-system", 1)]


def test_unicode_and_maximum_length_names(send, database_url):
    longest = "f" * 63
    r = send([ev(namespace=longest, function_name=longest), ev(namespace="tenant-ü"),
              ev(function_name="😀"), ev(namespace=longest + "x")]).json()
    assert r["accepted"] == 1 and [x["index"] for x in r["rejected"]] == [1, 2, 3]
    assert stored(database_url)[0][:2] == (longest, longest)
    assert query(database_url, "SELECT namespace FROM openfaas_metering.usage_rejected_events"
                               " ORDER BY event_index") == [("tenant-ü",), ("acme",),
                                                           (longest + "x",)]


def test_names_postgres_cannot_store_as_text_are_still_quarantined(send, database_url):
    body = (b'[{"event":"function_usage","namespace":"\\ud800","function_name":"a\\u0000",'
            b'"started":"2026-10-14T15:01:20Z","duration":1,"memory_bytes":1}]')
    r = send(body)
    assert r.status_code == 200, r.text
    assert [x["index"] for x in r.json()["rejected"]] == [0]
    assert query(database_url, "SELECT namespace, event_json FROM "
                               "openfaas_metering.usage_rejected_events") == [
        ("\\ud800", '{"event": "function_usage", "namespace": "\\ud800", '
                     '"function_name": "a\\u0000", "started": "2026-10-14T15:01:20Z", '
                     '"duration": 1, "memory_bytes": 1}')]


@pytest.mark.parametrize("started, expected_ns", [
    ("2026-10-14T15:01:20.349527036Z", 349527036),
    ("2026-10-14T15:01:20.349527Z", 349527000),
    ("2026-10-14T15:01:20.349Z", 349000000),
    ("2026-10-14T15:01:20Z", 0),
    ("2026-10-14T17:01:20.349527036+02:00", 349527036),
])
def test_fractions_and_offsets_keep_the_exact_nanosecond(send, database_url, started,
                                                         expected_ns):
    assert send([ev(started=started)]).json()["accepted"] == 1
    base_ns = parse_started("2026-10-14T15:01:20Z")
    assert query(database_url, """
        SELECT started_ns, started = %s::timestamptz
          FROM openfaas_metering.function_usage""", (started,)) == [
        (base_ns + expected_ns, True)]


def test_events_of_any_month_are_stored_in_their_own_partition(send, database_url):
    # the first is truncated to 2019-01-31T23:59:59.999999Z, the microsecond Postgres keeps
    months = ["2019-01-31T23:59:59.999999999Z", "2024-02-29T12:00:00+02:00",
              "2026-02-01T00:00:00Z"]
    assert send([ev(started=s) for s in months]).json()["accepted"] == 3
    assert send([ev(started="2024-02-10T00:00:00Z")]).json()["accepted"] == 1
    assert query(database_url, """
        SELECT tableoid::regclass::text FROM openfaas_metering.function_usage
         ORDER BY started""") == [("openfaas_metering.function_usage_2019_01",),
                                  ("openfaas_metering.function_usage_2024_02",),
                                  ("openfaas_metering.function_usage_2024_02",),
                                  ("openfaas_metering.function_usage_2026_02",)]


# Totals -------------------------------------------------------------------------

def test_the_docs_monthly_query_agrees_with_the_rollup(send, database_url):
    rng = random.Random(7)
    now_ns = time.time_ns()
    events = [usage_event(rng.choice(["acme", "globex"]), rng.choice(["env", "figlet"]),
                          now_ns - rng.randrange(3600, 20 * 86400) * 10**9
                          - rng.randrange(10**9),
                          rng.randrange(1, 300 * 10**9), rng.choice([128, 512, 4096]) * 2**20)
              for _ in range(2000)]
    for i in range(0, len(events), 500):
        assert send(events[i:i + 500]).json()["accepted"] == 500
    docs = {(ns, fn): (n, gbs)
            for ns, fn, n, _, gbs in query(database_url, OPENFAAS_DOCS_MONTHLY_QUERY)}
    rollup = {(ns, fn): (n, gbs) for ns, fn, n, gbs in query(database_url, """
        SELECT namespace, function_name, sum(invocations), sum(gb_seconds)
          FROM openfaas_metering.function_usage_hourly GROUP BY 1, 2""")}
    assert docs.keys() == rollup.keys() and len(docs) == 4
    for key, (invocations, exact_gbs) in rollup.items():
        mine = [e for e in events if (e["namespace"], e["function_name"]) == key]
        assert exact_gbs == total_gb_seconds((e["duration"], e["memory_bytes"]) for e in mine)
        # the docs read the microsecond interval: half a microsecond per event at
        # most, plus the float arithmetic of power(1024, 3)
        bound = sum(Decimal("0.5e-6") * e["memory_bytes"] / 2**30 for e in mine)
        assert docs[key][0] == invocations == len(mine)
        assert abs(Decimal(docs[key][1]) - exact_gbs) <= bound + exact_gbs * Decimal("1e-12")


# Database unavailable --------------------------------------------------------------

def _admin(database_url):
    return psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True)


def test_database_unavailable_answers_503_writes_nothing_and_the_retry_counts_once(
        send, database_url):
    name = database_url.rsplit("/", 1)[1]
    events = [ev(duration=d) for d in range(1, 101)]
    hour = "2026-10-14 15:00:00+00"
    # Hold a row lock the ingest needs, so it stops half-way: its raw events
    # are inserted, the rollup upsert waits. (Alone, the ingest takes rollup
    # stripe 0, the first free one.) Then the database goes away.
    blocker = psycopg.connect(database_url)
    blocker.execute("""INSERT INTO openfaas_metering.function_usage_hourly_stripes
        (namespace, function_name, hour_start, stripe, invocations, duration_ns, gb_seconds)
        VALUES ('acme', 'env', %s, 0, 0, 0, 0)""", (hour,))
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(send, events, "down-1")
        with _admin(database_url) as admin:
            for _ in range(200):
                waiting = admin.execute("""
                    SELECT pid FROM pg_stat_activity
                     WHERE datname = %s AND wait_event_type = 'Lock'
                       AND query LIKE '%%function_usage_hourly%%'""", (name,)).fetchall()
                if waiting:
                    break
                time.sleep(0.05)
            assert waiting, "the ingest never reached the rollup"
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute("""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                              WHERE datname = %s AND pid <> %s""",
                          (name, blocker.info.backend_pid))
            answer = pending.result(timeout=30)
            # while it stays down, every attempt answers 503 too
            again = send(events, delivery_id="down-1")
            blocker.rollback()
            blocker.close()
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    for r in (answer, again):
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"].isdigit()
        assert r.json()["error"].startswith("database unavailable, retry later")
    assert counts(database_url) == NOTHING
    # The sender retries, as the event-worker does, until the pool has reconnected.
    for _ in range(60):
        retry = send(events, delivery_id="down-1")
        if retry.status_code != 503:
            break
        time.sleep(0.5)
    assert retry.status_code == 200 and retry.json()["accepted"] == 100
    assert send(events, delivery_id="down-1").json() == retry.json()
    assert len(stored(database_url)) == 100
    assert query(database_url, "SELECT sum(invocations) FROM "
                               "openfaas_metering.function_usage_hourly") == [(100,)]
