"""deliver-webhooks' work: fan events out to the endpoints, post each one, record it.

At least once, never twice at once, delivery order not guaranteed (each
event's `sequence` orders one tenant's events):
1. Endpoints: WEBHOOK_URLS is compared with the endpoints seen before. A new
   one is added (it gets the events emitted from then on; the operator can
   replay earlier ones); one no longer listed is removed and its pending
   deliveries are cancelled (listed as `cancelled`, never retried).
2. Fan-out: each event not yet handled gets one delivery row per endpoint
   (events emitted while WEBHOOK_URLS was empty wait for the first endpoint,
   and are never pruned before they were fanned out).
3. Claim: one short committed UPDATE picks a due row (FOR UPDATE SKIP LOCKED),
   counts the attempt and moves next_attempt_at past it: that is the lease,
   longer than any attempt can last (2 x WEBHOOK_TIMEOUT_SECONDS + 30 s), so
   an event is never attempted twice at once.
4. Post the body, signed for this attempt, with the event's webhook-id. Each
   attempt is bounded as a whole by WEBHOOK_TIMEOUT_SECONDS (webhooks.attempt).
   WEBHOOK_CONCURRENCY attempts run at once, and one endpoint holds at most
   its share of them (workers / endpoints, at least one), so a slow endpoint
   never starves the others.
5. Record: 2xx -> delivered; anything else -> pending again after a backoff
   with jitter (policy.next_attempt), or failed past the retry window. The
   record names the attempt it claimed, so a drainer whose lease ran out
   changes nothing. A retry due before the drain's time is up is made in the
   same drain, at its backoff, not at the next minute's.
6. Prune: events older than WEBHOOK_RETENTION_DAYS, fanned out, and with no
   delivery pending.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from chargeback.core import db
from chargeback.core.settings import Settings
from chargeback.webhooks import attempt, events, policy, signing

log = logging.getLogger("chargeback")

# a drain stops claiming after this, below the function's 50 s exec_timeout;
# what is left is the next call's (cron, every minute)
DRAIN_BUDGET_S = 35.0
FAN_OUT_BATCH = 1000
IDLE_POLL_S = 0.5  # a worker with nothing due waits at most this before looking again

_ADD_ENDPOINTS = """
INSERT INTO openfaas_metering.webhook_endpoints AS w (endpoint)
SELECT unnest(%(endpoints)s::text[])
ON CONFLICT (endpoint) DO UPDATE SET removed_at = NULL, added_at = now()
 WHERE w.removed_at IS NOT NULL"""

_REMOVE_ENDPOINTS = """
UPDATE openfaas_metering.webhook_endpoints SET removed_at = now()
 WHERE removed_at IS NULL AND NOT endpoint = ANY(%(endpoints)s)"""

_CANCEL_REMOVED = """
UPDATE openfaas_metering.webhook_deliveries
   SET status = 'cancelled', next_attempt_at = now(),
       last_error = 'cancelled: the endpoint was removed from WEBHOOK_URLS'
 WHERE status = 'pending' AND NOT endpoint = ANY(%(endpoints)s)"""

_FAN_OUT = """
WITH waiting AS (
    SELECT event_id FROM openfaas_metering.webhook_events
     WHERE fanned_out_at IS NULL
     ORDER BY created_at LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED),
marked AS (
    UPDATE openfaas_metering.webhook_events AS e SET fanned_out_at = now()
      FROM waiting WHERE e.event_id = waiting.event_id
    RETURNING e.event_id)
INSERT INTO openfaas_metering.webhook_deliveries (event_id, endpoint)
SELECT marked.event_id, u.endpoint FROM marked, unnest(%(endpoints)s::text[]) AS u(endpoint)
ON CONFLICT DO NOTHING"""

_CLAIM = """
WITH due AS (
    SELECT event_id, endpoint FROM openfaas_metering.webhook_deliveries
     WHERE status = 'pending' AND next_attempt_at <= now()
       AND endpoint = ANY(%(endpoints)s)
     ORDER BY next_attempt_at LIMIT 1
       FOR UPDATE SKIP LOCKED)
UPDATE openfaas_metering.webhook_deliveries AS d
   SET attempts = d.attempts + 1, last_attempt_at = now(),
       next_attempt_at = now() + make_interval(secs => %(lease_s)s)
  FROM due, openfaas_metering.webhook_events AS e
 WHERE d.event_id = due.event_id AND d.endpoint = due.endpoint AND e.event_id = d.event_id
RETURNING d.event_id, d.endpoint, d.attempts, d.retry_from, now() AS claimed_at, e.type,
          e.created_at, e.sequence, e.data"""

# seconds until the next delivery of these endpoints is due (None: none pending)
_NEXT_DUE = """
SELECT extract(epoch FROM min(next_attempt_at) - now())::float8
  FROM openfaas_metering.webhook_deliveries
 WHERE status = 'pending' AND endpoint = ANY(%(endpoints)s)"""

_DELIVERED = """
UPDATE openfaas_metering.webhook_deliveries
   SET status = 'delivered', delivered_at = now(), next_attempt_at = now(),
       last_status_code = %(code)s, last_error = NULL
 WHERE event_id = %(event_id)s AND endpoint = %(endpoint)s AND attempts = %(attempt)s
   AND status = 'pending'"""

_NOT_DELIVERED = """
UPDATE openfaas_metering.webhook_deliveries
   SET status = CASE WHEN %(next)s::timestamptz IS NULL THEN 'failed' ELSE 'pending' END,
       next_attempt_at = coalesce(%(next)s::timestamptz, now()),
       last_status_code = %(code)s, last_error = %(error)s
 WHERE event_id = %(event_id)s AND endpoint = %(endpoint)s AND attempts = %(attempt)s
   AND status = 'pending'"""

# Events older than WEBHOOK_RETENTION_DAYS that were fanned out and have no delivery
# pending (delivered, failed or cancelled everywhere), with their delivery rows; a
# batch per call, so one call never holds many rows. An event never fanned out
# (WEBHOOK_URLS empty so far) is kept: it waits for the first endpoint.
PRUNE_BATCH = 10000
_PRUNE = """
WITH old AS (
    SELECT event_id FROM openfaas_metering.webhook_events AS e
     WHERE created_at < now() - make_interval(days => %(days)s)
       AND fanned_out_at IS NOT NULL
       AND NOT EXISTS (SELECT FROM openfaas_metering.webhook_deliveries AS d
                        WHERE d.event_id = e.event_id AND d.status = 'pending')
     ORDER BY created_at LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED),
deliveries AS (
    DELETE FROM openfaas_metering.webhook_deliveries AS d USING old
     WHERE d.event_id = old.event_id)
DELETE FROM openfaas_metering.webhook_events AS e USING old WHERE e.event_id = old.event_id"""


def configured_endpoints(settings: Settings) -> tuple[str, ...]:
    """WEBHOOK_URLS checked; ConfigError with one line naming the bad URL."""
    return policy.endpoints(settings.webhook_urls)


def ready(settings: Settings, environ: Mapping[str, str]) -> None:
    """What deliver-webhooks cannot work without (checked at start): a database, usable
    WEBHOOK_URLS and the secret that signs every delivery."""
    db.configured(settings)
    configured_endpoints(settings)
    signing.signer(settings.webhook_signing_secret)


@dataclass
class _Attempt:
    event_id: str
    endpoint: str
    attempt: int
    retry_from: datetime
    claimed_at: datetime
    type: str
    created_at: datetime
    sequence: int
    data: dict


def lease_s(settings: Settings) -> float:
    """How long a claim holds a delivery: longer than any attempt can last."""
    return 2 * settings.webhook_timeout_s + 30


def drain(settings: Settings, budget_s: float = DRAIN_BUDGET_S) -> dict:
    """Deliver everything due before `budget_s` is up (see the module); counts only
    (no tenant, number or amount)."""
    endpoints = configured_endpoints(settings)
    with db.transaction(settings) as conn:
        conn.execute(_ADD_ENDPOINTS, {"endpoints": list(endpoints)})
        conn.execute(_REMOVE_ENDPOINTS, {"endpoints": list(endpoints)})
        cancelled = conn.execute(_CANCEL_REMOVED, {"endpoints": list(endpoints)}).rowcount
    stop_at = time.monotonic() + budget_s
    fanned = 0
    while endpoints:
        with db.transaction(settings) as conn:
            added = conn.execute(_FAN_OUT, {"batch": FAN_OUT_BATCH,
                                            "endpoints": list(endpoints)}).rowcount
        fanned += added
        if added == 0 or time.monotonic() > stop_at:
            break
    with db.transaction(settings) as conn:
        pruned = conn.execute(_PRUNE, {"days": settings.webhook_retention_days,
                                       "batch": PRUNE_BATCH}).rowcount
    counts = {"endpoints": len(endpoints), "fanned_out": fanned, "delivered": 0,
              "retrying": 0, "failed": 0, "cancelled": cancelled, "pruned": pruned}
    if not endpoints:
        return {**counts,
                "note": "WEBHOOK_URLS is empty: events wait until an endpoint is configured"}
    return {**counts, **_post_due(settings, endpoints, stop_at)}


def _post_due(settings: Settings, endpoints: tuple[str, ...], stop_at: float) -> Counter:
    signer = signing.signer(settings.webhook_signing_secret)
    counts: Counter = Counter()
    lock = threading.Lock()
    workers = max(1, min(settings.webhook_concurrency, settings.db_pool_max))
    share = max(1, math.ceil(workers / len(endpoints)))  # per endpoint
    busy: Counter = Counter()

    def claim_next() -> _Attempt | None:
        with lock:  # claims are short; under the lock, no endpoint exceeds its share
            free = [e for e in endpoints if busy[e] < share]
            claimed = _claim(settings, free) if free else None
            if claimed:
                busy[claimed.endpoint] += 1
        return claimed

    def work() -> None:
        while time.monotonic() < stop_at:
            claimed = claim_next()
            if claimed is None:
                wait_s = _next_due_in(settings, endpoints)
                if wait_s is None or time.monotonic() + wait_s >= stop_at:
                    return
                time.sleep(min(max(wait_s, 0.01), IDLE_POLL_S))
                continue
            try:
                code, error = _post(signer, claimed, settings.webhook_timeout_s)
                outcome = _record(settings, claimed, code, error)
            finally:
                with lock:
                    busy[claimed.endpoint] -= 1
            with lock:
                counts[outcome] += 1

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(work) for _ in range(workers)]:
            future.result()
    return counts


def _claim(settings: Settings, endpoints: list[str]) -> _Attempt | None:
    with db.transaction(settings) as conn:
        row = conn.execute(_CLAIM, {"endpoints": endpoints,
                                    "lease_s": lease_s(settings)}).fetchone()
    return _Attempt(*row) if row else None


def _next_due_in(settings: Settings, endpoints) -> float | None:
    with db.transaction(settings) as conn:
        return conn.execute(_NEXT_DUE, {"endpoints": list(endpoints)}).fetchone()[0]


def _post(signer, claimed: _Attempt, timeout_s: float) -> tuple[int | None, str | None]:
    """(status code or None, error or None) of one signed attempt."""
    body = events.body(claimed.type, claimed.created_at, claimed.sequence, claimed.data)
    headers = signing.headers(signer, claimed.event_id, datetime.now(timezone.utc), body)
    return attempt.post(claimed.endpoint, body.encode(), headers, timeout_s)


def _record(settings: Settings, claimed: _Attempt, code: int | None, error: str | None) -> str:
    params = {"event_id": claimed.event_id, "endpoint": claimed.endpoint,
              "attempt": claimed.attempt, "code": code}
    if error is None:
        with db.transaction(settings) as conn:
            conn.execute(_DELIVERED, params)
        return "delivered"
    # the backoff counts from the attempt's end, so a slow failure still waits it out
    after = policy.next_attempt(datetime.now(timezone.utc), claimed.attempt, claimed.retry_from,
                                settings.webhook_retry_base_s, settings.webhook_retry_window_s)
    log.warning("webhook %s to %s, attempt %d: %s", claimed.event_id, claimed.endpoint,
                claimed.attempt, error)
    with db.transaction(settings) as conn:
        conn.execute(_NOT_DELIVERED, {**params, "next": after, "error": error})
    return "retrying" if after else "failed"
