"""receive-usage under the known failure modes of issue 15: locks, outages, month
rollover, hostile JSON, other event types. Real function over HTTP, real PostgreSQL."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import psycopg
import pytest
from devstack.pg import EmbeddedPostgres, free_port
from devstack.usage_sim import WebhookSender, rfc3339

from chargeback.core import db, partitions
from chargeback.core.settings import load

from .conftest import WEBHOOK_SECRET
from .usage_helpers import NOTHING, counts, ev, query, stored


@pytest.fixture
def env(secrets_dir):
    return {"SECRETS_DIR": str(secrets_dir), "DB_CONNECT_TIMEOUT": "1",
            "DB_LOCK_TIMEOUT": "0.5"}


@pytest.fixture
def receiver(serve_function, env):
    return serve_function("receive-usage", env=env)


@pytest.fixture
def send(receiver):
    return WebhookSender(receiver.url, WEBHOOK_SECRET, timeout_s=20).post


def partition_of(database_url):
    return [t for (t,) in query(database_url, """
        SELECT DISTINCT tableoid::regclass::text FROM openfaas_metering.function_usage""")]


# 3, 5: bounded waits, generic 503 -------------------------------------------------

def test_a_503_names_no_host_port_or_user_and_the_log_keeps_the_detail(serve_function,
                                                                        env, tmp_path):
    port = free_port()
    fn = serve_function("receive-usage", env={
        **env, "DATABASE_URL": f"postgresql://billing_admin@127.0.0.1:{port}/ledger"})
    r = WebhookSender(f"{fn.url}/usage", WEBHOOK_SECRET).post([ev()])
    assert r.status_code == 503
    assert r.json() == {"error": "database unavailable, retry later"}
    log = (tmp_path / "receive-usage.log").read_text().splitlines()
    # one line for the one 503: its path, and the detail the caller never sees
    [line] = [entry for entry in log if "database unavailable" in entry]
    assert "503 POST /usage: database unavailable: " in line and str(port) in line


def test_a_held_lock_answers_503_within_the_lock_timeout_and_the_retry_counts_once(
        send, database_url):
    blocker = psycopg.connect(database_url)
    blocker.execute("LOCK TABLE openfaas_metering.function_usage_hourly IN EXCLUSIVE MODE")
    try:
        r = send([ev(duration=d) for d in range(1, 51)], delivery_id="locked")
        assert r.status_code == 503 and r.headers["Retry-After"].isdigit()
        assert r.json() == {"error": "database unavailable, retry later"}
        assert counts(database_url) == NOTHING
    finally:
        blocker.close()
    r = send([ev(duration=d) for d in range(1, 51)], delivery_id="locked")
    assert r.status_code == 200 and r.json()["accepted"] == 50
    assert len(stored(database_url)) == 50


# 1: month rollover --------------------------------------------------------------

def test_this_months_partition_exists_before_the_first_delivery_so_a_long_reader_blocks_nothing(
        send, database_url):
    assert send([], delivery_id="warm-up").status_code == 200  # the replica migrates
    reader = psycopg.connect(database_url)  # month close, a backup, the docs' query ...
    reader.execute("SELECT count(*) FROM openfaas_metering.function_usage")
    try:
        now_ns = time.time_ns()
        r = send([ev(started=rfc3339(now_ns - 10**9))], delivery_id="this-month")
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 1
        # an odd month (years back) still gets its partition on demand, but never
        # waits longer than the lock timeout for it: 503, and the retry stores it
        odd = send([ev(started="2019-03-04T05:06:07Z")], delivery_id="odd-month")
        assert odd.status_code == 503
    finally:
        reader.close()
    assert send([ev(started="2019-03-04T05:06:07Z")], delivery_id="odd-month"
                ).json()["accepted"] == 1
    today = date.today()
    assert f"openfaas_metering.function_usage_{today:%Y_%m}" in partition_of(database_url)


def test_ensure_ahead_creates_the_coming_months_in_short_transactions(database_url):
    with psycopg.connect(database_url) as conn:
        first = partitions.ensure_ahead(conn, today=date(2027, 11, 20))
        assert first == ([date(2027, 11, 1), date(2027, 12, 1), date(2028, 1, 1)], [])
        assert partitions.ensure_ahead(conn, today=date(2027, 12, 2)) == (
            [date(2028, 2, 1)], [])
        # behind a long reader it gives up on the month after the lock timeout
        reader = psycopg.connect(database_url)
        reader.execute("SELECT count(*) FROM openfaas_metering.function_usage")
        try:
            busy = partitions.ensure_ahead(conn, 0, today=date(2028, 3, 1),
                                           lock_timeout_s=0.2)
        finally:
            reader.close()
        assert busy == ([], [date(2028, 3, 1)])
        assert partitions.ensure_ahead(conn, 0, today=date(2028, 3, 1)) == (
            [date(2028, 3, 1)], [])
        with conn.transaction():
            with pytest.raises(ValueError, match="outside any transaction"):
                partitions.ensure_ahead(conn)
    # the way a scheduled function calls it: a pooled connection from db.transaction
    try:
        with db.transaction(load({"DATABASE_URL": database_url})) as conn:
            assert partitions.ensure_ahead(conn, 0, today=date(2029, 1, 5)) == (
                [date(2029, 1, 1)], [])
    finally:
        db.close_all()


# 11: row and rollup in the same hour and month --------------------------------------

def test_an_event_in_the_last_nanoseconds_of_a_month_stays_in_that_month(send, database_url):
    assert send([ev(started="2026-09-30T23:59:59.9999996Z")]).json()["accepted"] == 1
    assert partition_of(database_url) == ["openfaas_metering.function_usage_2026_09"]
    assert query(database_url, """
        SELECT u.started = timestamptz '2026-09-30 23:59:59.999999+00',
               date_trunc('hour', u.started) = h.hour_start
          FROM openfaas_metering.function_usage u,
               openfaas_metering.function_usage_hourly h""") == [(True, True)]


# 6: JSON that used to become a 500 -------------------------------------------------

@pytest.mark.parametrize("body, reason", [
    (b'[{"event":"function_usage","duration":' + b"9" * 5000 + b"}]",
     "body is not usable JSON: Exceeds the limit (4300 digits)"),
    (b"[" * 100_000 + b"]" * 100_000, "body is nested too deeply"),
    (json.dumps([ev(duration=-1, labels=json.loads("[" * 35 + "]" * 35))]).encode(),
     "event 0 is nested more than 32 levels deep"),
    (json.dumps([ev(namespace=json.loads("[" * 900 + "]" * 900))]).encode(),
     "event 0 is nested more than 32 levels deep"),
])
def test_hostile_json_is_a_400_and_the_delivery_is_quarantined(send, database_url, body,
                                                                reason):
    r = send(body, delivery_id="hostile")
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"].startswith(reason)
    assert query(database_url, """SELECT delivery_id, length(body) FROM
                 openfaas_metering.usage_quarantined_deliveries""") == [("hostile", len(body))]
    assert counts(database_url)["function_usage"] == 0


# 10: other event types are counted -------------------------------------------------

def test_other_event_types_are_counted_per_type_and_day(send, database_url):
    audit = [{"event": "api_access", "path": "/system/functions", "method": "GET"}] * 3
    for i in range(2):
        assert send(audit, event="api_access", delivery_id=f"a-{i}").status_code == 200
    assert send(b"not json", event="something_new", delivery_id="s-1").status_code == 200
    assert query(database_url, """
        SELECT event_type, day = (now() AT TIME ZONE 'UTC')::date, deliveries, events,
               last_delivery_id
          FROM openfaas_metering.webhook_other_events ORDER BY 1""") == [
        ("api_access", True, 2, 6, "a-1"), ("something_new", True, 1, 0, "s-1")]
    assert counts(database_url) == NOTHING
    # unsigned: refused, and not counted
    assert send(audit, event="api_access", signature=None).status_code == 401
    assert query(database_url, "SELECT sum(deliveries) FROM "
                               "openfaas_metering.webhook_other_events") == [(3,)]


# 12: recovery after an outage ---------------------------------------------------

def test_the_pool_serves_again_within_a_second_of_postgres_returning(serve_function,
                                                                      secrets_dir, tmp_path):
    server = EmbeddedPostgres(tmp_path / "outage-pg", free_port(), durable=False).start()
    try:
        fn = serve_function("receive-usage", env={
            "SECRETS_DIR": str(secrets_dir), "DATABASE_URL": server.url,
            "DB_CONNECT_TIMEOUT": "1"})
        sender = WebhookSender(fn.url, WEBHOOK_SECRET, timeout_s=20)
        events = [ev(duration=d) for d in range(1, 11)]
        assert sender.post(events, delivery_id="before").status_code == 200
        server.stop()
        stopped = time.monotonic()
        later = [ev(duration=d) for d in range(11, 21)]
        with ThreadPoolExecutor(2) as pool:  # senders keep trying during the outage
            answers = list(pool.map(lambda i: sender.post(later, delivery_id="during"),
                                    range(4)))
        assert {r.status_code for r in answers} == {503}
        # A 4 s outage in all: psycopg_pool's own backoff (1 s, doubling, +-10 %) would
        # next try near 7 s, about 3 s after the return; the function must serve within 1 s.
        time.sleep(max(0.0, 4 - (time.monotonic() - stopped)))
        server.start()
        returned = time.monotonic()
        while (r := sender.post(later, delivery_id="during")).status_code != 200:
            assert r.status_code == 503, r.text
            assert time.monotonic() - returned < 1, "not serving 1 s after the return"
            time.sleep(0.05)
        assert time.monotonic() - returned < 1, "not serving 1 s after the return"
        assert (r.json()["accepted"], r.json()["duplicates"]) == (10, 0)
    finally:
        server.discard()
