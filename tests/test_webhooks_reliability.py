"""Outbound webhooks against endpoints that misbehave as real ones do (issue 31, items
5-9): a whole-attempt deadline, a fair share of the workers per endpoint, nothing
pruned before it was delivered, endpoints that come and go, retries at their backoff,
replays that start afresh, and WEBHOOK_URLS entries that cannot be what was meant."""
from __future__ import annotations

import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import requests

from chargeback.core import db
from chargeback.core.settings import ConfigError
from chargeback.webhooks import delivery, operator, outbox

from .billing_helpers import settings_for
from .webhook_receiver import write_signing_secret


@pytest.fixture
def signed(secrets_dir, database_url, tmp_path):
    """Settings for `delivery.drain` with the signing secret: settings(urls, **env)."""
    write_signing_secret(secrets_dir)

    def settings(urls: str, **env):
        return settings_for(database_url, tmp_path, SECRETS_DIR=str(secrets_dir),
                            WEBHOOK_URLS=urls, **env)
    return settings


def _emit(settings, *typed_data) -> list[str]:
    with db.transaction(settings) as conn:
        return [outbox.emit(conn, t, d) for t, d in typed_data]


def _deliveries(database_url, endpoint=None) -> dict[str, tuple]:
    with psycopg.connect(database_url) as conn:
        return {e: (status, attempts, error) for e, status, attempts, error in conn.execute(
            """SELECT event_id, status, attempts, last_error
                 FROM openfaas_metering.webhook_deliveries
                WHERE %(endpoint)s::text IS NULL OR endpoint = %(endpoint)s""",
            {"endpoint": endpoint})}


# 5. A whole-attempt deadline ------------------------------------------------------------

class Trickle:
    """An endpoint that answers a status line, then one header line every 1.5 s (up to
    `lines`), never finishing the headers: each read is quick, the answer never ends."""

    def __init__(self, lines: int = 10):
        self.connections = 0
        self.open_at_once = self.open = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hooks"
        self.lines = lines
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with self.lock:
            self.connections += 1
            self.open += 1
            self.open_at_once = max(self.open_at_once, self.open)
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            for n in range(self.lines):
                time.sleep(1.5)
                conn.sendall(f"X-Still-Thinking-{n}: yes\r\n".encode())
        except OSError:
            pass  # the client cut the attempt
        finally:
            with self.lock:
                self.open -= 1
            conn.close()

    def stop(self):
        self.listener.close()


def test_an_endpoint_that_trickles_headers_is_cut_at_the_attempts_deadline(
        serve_function, database_url, secrets_dir, tmp_path):
    """WEBHOOK_TIMEOUT_SECONDS=2 bounds the attempt as a whole: cut at 2 s though every
    read succeeds within 1.5 s, answered as a failure, and never a second attempt of the
    same event while the first is open."""
    write_signing_secret(secrets_dir)
    trickle = Trickle(lines=10)  # 15 s of headers, if nobody cuts it
    try:
        settings = settings_for(database_url, tmp_path, SECRETS_DIR=str(secrets_dir))
        [event_id] = _emit(settings, ("invoice.voided", {"n": 1}))
        fn = serve_function("deliver-webhooks", env={
            "DATABASE_URL": database_url, "SECRETS_DIR": str(secrets_dir),
            "WEBHOOK_URLS": trickle.url, "WEBHOOK_TIMEOUT_SECONDS": "2",
            "WEBHOOK_RETRY_BASE_SECONDS": "600"})
        started = time.monotonic()
        answer = requests.post(fn.url, data=b"", timeout=60).json()
        took_s = time.monotonic() - started
    finally:
        trickle.stop()
    assert (answer["delivered"], answer["retrying"]) == (0, 1), answer
    assert took_s < 6, f"the drain took {took_s:.1f} s"  # 2 s attempt + the drain's own work
    assert _deliveries(database_url)[event_id] == (
        "pending", 1, "no answer within 2 s (the whole attempt)")
    assert trickle.connections == 1 and trickle.open_at_once == 1
    # the lease outlasts any attempt: 2 x 2 s + 30 s
    assert delivery.lease_s(settings_for(database_url, tmp_path,
                                         WEBHOOK_TIMEOUT_SECONDS="2")) == 34


# 6. One endpoint holds at most its share of the workers --------------------------------

def test_a_slow_endpoint_holds_at_most_its_share_of_the_workers(
        serve_function, database_url, secrets_dir, tmp_path, receiver):
    write_signing_secret(secrets_dir)
    slow, quick = receiver(delay_s=0.8), receiver()
    settings = settings_for(database_url, tmp_path, SECRETS_DIR=str(secrets_dir))
    _emit(settings, *[("invoice.voided", {"n": i}) for i in range(8)])
    fn = serve_function("deliver-webhooks", env={
        "DATABASE_URL": database_url, "SECRETS_DIR": str(secrets_dir),
        "WEBHOOK_URLS": f"{slow.url},{quick.url}", "WEBHOOK_CONCURRENCY": "4",
        "WEBHOOK_TIMEOUT_SECONDS": "5"})
    started = time.monotonic()
    answer = requests.post(fn.url, data=b"", timeout=60).json()
    assert answer["delivered"] == 16, answer
    # 4 workers, 2 endpoints: at most 2 at the slow one, so 2 are always the quick one's
    assert slow.max_in_flight == 2
    # 8 slow attempts of 0.8 s, 2 at a time, take 3.2 s; the quick endpoint's 8 are done
    # well before the slow one's fourth pair begins
    quick_done_s = max(h.at for h in quick.hits) - started
    slow_done_s = max(h.at for h in slow.hits) - started
    assert quick_done_s < slow_done_s - 1.5, (quick_done_s, slow_done_s)


# 7. Nothing pruned before it was fanned out and delivered ------------------------------

def test_events_emitted_while_no_endpoint_is_configured_outlive_retention_and_are_delivered(
        signed, database_url, receiver):
    hook = receiver()
    quiet = signed("")  # WEBHOOK_URLS empty: events wait for the first endpoint
    ids = _emit(quiet, *[("invoice.voided", {"n": i}) for i in range(3)])
    with db.transaction(quiet) as conn:  # 40 days old: past the 30 days kept by default
        conn.execute("""UPDATE openfaas_metering.webhook_events
                           SET created_at = created_at - interval '40 days'""")
    assert delivery.drain(quiet)["pruned"] == 0
    answer = delivery.drain(signed(hook.url))
    assert (answer["fanned_out"], answer["delivered"]) == (3, 3), answer
    assert sorted(h.id for h in hook.accepted()) == sorted(ids)
    # delivered everywhere and past retention: now they go
    assert delivery.drain(signed(hook.url))["pruned"] == 3


# 8. Endpoints that come and go ----------------------------------------------------------

def test_a_removed_endpoint_is_cancelled_and_a_new_one_gets_events_from_when_it_was_added(
        signed, database_url, receiver):
    old, new = receiver(status=500), receiver()
    slow_retries = {"WEBHOOK_RETRY_BASE_SECONDS": "600"}
    [before] = _emit(signed(old.url), ("invoice.voided", {"n": 1}))
    assert delivery.drain(signed(old.url, **slow_retries))["retrying"] == 1
    assert _deliveries(database_url, old.url)[before][0] == "pending"

    # the operator replaces the endpoint
    moved = delivery.drain(signed(new.url, **slow_retries))
    assert (moved["cancelled"], moved["delivered"]) == (1, 0), moved
    cancelled = operator.listing(signed(new.url), "cancelled")["deliveries"]
    assert [(d["event_id"], d["endpoint"]) for d in cancelled] == [(before, old.url)]
    assert "removed from WEBHOOK_URLS" in cancelled[0]["last_error"]
    [after] = _emit(signed(new.url), ("invoice.voided", {"n": 2}))
    assert delivery.drain(signed(new.url))["delivered"] == 1
    assert [h.id for h in new.accepted()] == [after]  # from when it was added

    # and replays the last hour to it: every event of the range, delivered or not (the
    # receiver drops what it has by webhook-id)
    now = datetime.now(timezone.utc)
    replayed = operator.replay(signed(new.url), operator.Range(
        new.url, now - timedelta(hours=1), now + timedelta(seconds=1)))
    assert sorted(r["event_id"] for r in replayed["replayed"]) == sorted([before, after])
    assert replayed["drained"]["delivered"] == 2
    assert sorted(h.id for h in new.accepted()) == sorted([before, after, after])
    assert len(old.hits) == 1  # nothing more went to the removed endpoint


# 9. Smaller ones ------------------------------------------------------------------------

def test_a_failed_attempt_is_retried_at_its_backoff_within_the_same_drain(
        signed, database_url, receiver):
    hook = receiver(fail_first=1)
    [event_id] = _emit(signed(hook.url), ("invoice.voided", {"n": 1}))
    started = time.monotonic()
    # base 0.5 s: the first retry waits 0.25-0.5 s (jitter 0.5-1 x base)
    answer = delivery.drain(signed(hook.url, WEBHOOK_RETRY_BASE_SECONDS="0.5"))
    assert (answer["retrying"], answer["delivered"]) == (1, 1), answer
    first, second = hook.hits
    assert 0.25 <= second.at - first.at < 2.0
    assert time.monotonic() - started < 5


def test_a_replayed_delivery_starts_its_attempt_count_afresh(signed, database_url, receiver):
    hook = receiver()
    [event_id] = _emit(signed(hook.url), ("invoice.voided", {"n": 1}))
    delivery.drain(signed(""))  # nothing configured: the event waits
    with db.transaction(signed(hook.url)) as conn:  # as a 24 h window of attempts leaves it
        conn.execute("UPDATE openfaas_metering.webhook_events SET fanned_out_at = now()")
        conn.execute("""INSERT INTO openfaas_metering.webhook_deliveries
                            (event_id, endpoint, status, attempts)
                        VALUES (%s, %s, 'failed', 12)""", (event_id, hook.url))
    replayed = operator.replay(signed(hook.url), event_id)
    assert replayed["drained"]["delivered"] == 1
    assert _deliveries(database_url, hook.url)[event_id][:2] == ("delivered", 1)


@pytest.mark.parametrize("urls, reason", [
    (" https://hooks.example/a", "starts or ends with a space"),
    ("https://hooks.example/a,\nhttps://hooks.example/b", "line break"),
    ("https://hooks.example/a\r", "line break"),
])
def test_webhook_urls_with_a_stray_space_or_line_break_are_refused_at_start(
        signed, urls, reason):
    with pytest.raises(ConfigError) as refused:
        delivery.ready(signed(urls), {})
    assert reason in str(refused.value) and "WEBHOOK_URLS" in str(refused.value)
    with pytest.raises(ConfigError):
        delivery.configured_endpoints(signed(urls))
