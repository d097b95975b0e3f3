"""deliver-webhooks' work: fan events out to the endpoints, post each one, record it.

At least once, never twice at once:
1. Fan-out: each event not yet handled gets one delivery row per endpoint of
   WEBHOOK_URLS (events emitted before any endpoint was configured wait).
2. Claim: one short committed UPDATE picks a due row (FOR UPDATE SKIP LOCKED,
   so concurrent drainers pick different rows), counts the attempt and moves
   next_attempt_at past it: that is the lease. No row lock is held during the
   HTTP call, and a drainer that dies mid-call leaves a row that is due again
   when its lease ends.
3. Post the body, signed for this attempt, with the event's webhook-id. Every
   attempt is bounded by WEBHOOK_TIMEOUT_SECONDS; WEBHOOK_CONCURRENCY attempts
   run at once, so one slow endpoint holds one of them, never the others.
4. Record: 2xx -> delivered; anything else -> pending again after a backoff
   with jitter (policy.next_attempt), or failed past the 24 h window. The
   record names the attempt it claimed, so a drainer whose lease ran out
   changes nothing.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

import requests

from chargeback.core import db
from chargeback.core.responses import RequestError
from chargeback.core.settings import ConfigError, Settings
from chargeback.webhooks import events, policy, signing

log = logging.getLogger("chargeback")

# a drain stops claiming after this, below the function's 50 s exec_timeout;
# what is left is the next call's (cron, every minute)
DRAIN_BUDGET_S = 35.0
FAN_OUT_BATCH = 1000
LISTED = 200
_EVENT_ID = re.compile(r"evt_[0-9a-f]{32}")
_STATUSES = ("pending", "delivered", "failed")

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
RETURNING d.event_id, d.endpoint, d.attempts, d.retry_from, now(), e.type, e.created_at,
          e.data"""

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

# Events older than WEBHOOK_RETENTION_DAYS with no delivery pending (delivered or failed
# everywhere, or never fanned out because no endpoint was configured), with their
# delivery rows; a batch per call, so one call never holds many rows.
PRUNE_BATCH = 10000
_PRUNE = """
WITH old AS (
    SELECT event_id FROM openfaas_metering.webhook_events AS e
     WHERE created_at < now() - make_interval(days => %(days)s)
       AND NOT EXISTS (SELECT FROM openfaas_metering.webhook_deliveries AS d
                        WHERE d.event_id = e.event_id AND d.status = 'pending')
     ORDER BY created_at LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED),
deliveries AS (
    DELETE FROM openfaas_metering.webhook_deliveries AS d USING old
     WHERE d.event_id = old.event_id)
DELETE FROM openfaas_metering.webhook_events AS e USING old WHERE e.event_id = old.event_id"""

_LIST = """
SELECT d.event_id, e.type, e.created_at, e.data, d.endpoint, d.status, d.attempts,
       d.last_attempt_at, d.last_status_code, d.last_error, d.next_attempt_at, d.delivered_at
  FROM openfaas_metering.webhook_deliveries AS d
  JOIN openfaas_metering.webhook_events AS e USING (event_id)
 WHERE d.status = %s
 ORDER BY e.created_at DESC, d.endpoint
 LIMIT %s"""

_REPLAY = """
UPDATE openfaas_metering.webhook_deliveries
   SET status = 'pending', next_attempt_at = now(), retry_from = now()
 WHERE CASE WHEN %(event_id)s::text IS NULL THEN status = 'failed'
            ELSE event_id = %(event_id)s AND status <> 'pending' END
RETURNING event_id, endpoint"""


@dataclass(frozen=True)
class Options:
    list: str | None = None    # "failed", "pending" or "delivered"
    replay: str | None = None  # an event id, or "failed" for every failed delivery

    @property
    def operator(self) -> bool:
        return self.list is not None or self.replay is not None


def parse_options(body: bytes) -> Options:
    """Empty body (cron, the async wake-up): drain. Otherwise one operator option."""
    if not body or not body.strip():
        return Options()
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise RequestError(400, 'body: expected empty or a JSON object such as '
                                '{"list": "failed"}') from None
    if not isinstance(doc, dict) or len(doc) > 1:
        raise RequestError(400, 'body: expected one option: {"list": "failed"} or '
                                '{"replay": "<event id>" | "failed"}')
    if not doc:
        return Options()
    key, value = next(iter(doc.items()))
    if key == "list":
        if value not in _STATUSES:
            raise RequestError(400, f"list: expected one of {', '.join(_STATUSES)}")
        return Options(list=value)
    if key == "replay":
        if not (isinstance(value, str) and (value == "failed" or _EVENT_ID.fullmatch(value))):
            raise RequestError(400, 'replay: expected an event id (evt_...) or "failed"')
        return Options(replay=value)
    raise RequestError(400, f"{key}: unknown option (known: list, replay)")


def configured_endpoints(settings: Settings) -> tuple[str, ...]:
    """WEBHOOK_URLS checked; ConfigError with one line naming the bad URL."""
    return policy.endpoints(settings.webhook_urls)


def startup_problem(settings_loader) -> str | None:
    """The one-line reason deliver-webhooks refuses to work with its configuration, or None."""
    try:
        configured_endpoints(settings_loader())
    except ConfigError as exc:
        return str(exc)
    return None


@dataclass
class _Attempt:
    event_id: str
    endpoint: str
    attempt: int
    retry_from: datetime
    claimed_at: datetime
    type: str
    created_at: datetime
    data: dict


def drain(settings: Settings, budget_s: float = DRAIN_BUDGET_S) -> dict:
    """Deliver everything due now, after pruning what is past its retention; counts only
    (no tenant, number or amount)."""
    with db.transaction(settings) as conn:
        pruned = conn.execute(_PRUNE, {"days": settings.webhook_retention_days,
                                       "batch": PRUNE_BATCH}).rowcount
    endpoints = configured_endpoints(settings)
    if not endpoints:
        return {"endpoints": 0, "fanned_out": 0, "delivered": 0, "retrying": 0, "failed": 0,
                "pruned": pruned,
                "note": "WEBHOOK_URLS is empty: events wait until an endpoint is configured"}
    signer = signing.signer(settings.webhook_signing_secret)
    stop_at = time.monotonic() + budget_s
    fanned = 0
    while True:
        with db.transaction(settings) as conn:
            added = conn.execute(_FAN_OUT, {"batch": FAN_OUT_BATCH,
                                            "endpoints": list(endpoints)}).rowcount
        fanned += added
        if added == 0 or time.monotonic() > stop_at:
            break
    counts: Counter = Counter()
    lock = threading.Lock()
    # an attempt never outlives its lease: connect + wait for the answer, then some
    lease_s = 3 * settings.webhook_timeout_s + 30

    def work() -> None:
        with requests.Session() as session:
            while time.monotonic() < stop_at:
                claimed = _claim(settings, endpoints, lease_s)
                if claimed is None:
                    return
                code, error = _post(session, signer, claimed, settings.webhook_timeout_s)
                outcome = _record(settings, claimed, code, error)
                with lock:
                    counts[outcome] += 1

    workers = max(1, min(settings.webhook_concurrency, settings.db_pool_max))
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(work) for _ in range(workers)]:
            future.result()
    return {"endpoints": len(endpoints), "fanned_out": fanned,
            "delivered": counts["delivered"], "retrying": counts["retrying"],
            "failed": counts["failed"], "pruned": pruned}


def _claim(settings: Settings, endpoints, lease_s: float) -> _Attempt | None:
    with db.transaction(settings) as conn:
        row = conn.execute(_CLAIM, {"endpoints": list(endpoints), "lease_s": lease_s}).fetchone()
    return _Attempt(*row) if row else None


def _post(session: requests.Session, signer, claimed: _Attempt, timeout_s: float
          ) -> tuple[int | None, str | None]:
    """(status code or None, error or None) of one signed attempt."""
    body = events.body(claimed.type, claimed.created_at, claimed.data)
    headers = signing.headers(signer, claimed.event_id, datetime.now(timezone.utc), body)
    try:
        # stream: the answer's body is not read, so a slow one cannot hold the attempt
        with session.post(claimed.endpoint, data=body.encode(), headers=headers,
                          timeout=(timeout_s, timeout_s), allow_redirects=False,
                          stream=True) as response:
            code = response.status_code
    except requests.RequestException as exc:
        return None, db.one_line(exc)[:300]
    return code, None if 200 <= code < 300 else f"answered {code}"


def _record(settings: Settings, claimed: _Attempt, code: int | None, error: str | None) -> str:
    params = {"event_id": claimed.event_id, "endpoint": claimed.endpoint,
              "attempt": claimed.attempt, "code": code}
    if error is None:
        with db.transaction(settings) as conn:
            conn.execute(_DELIVERED, params)
        return "delivered"
    after = policy.next_attempt(claimed.claimed_at, claimed.attempt, claimed.retry_from,
                                settings.webhook_retry_base_s, settings.webhook_retry_window_s)
    log.warning("webhook %s to %s, attempt %d: %s", claimed.event_id, claimed.endpoint,
                claimed.attempt, error)
    with db.transaction(settings) as conn:
        conn.execute(_NOT_DELIVERED, {**params, "next": after, "error": error})
    return "retrying" if after else "failed"


def listing(settings: Settings, status: str) -> dict:
    """The deliveries in `status` (newest events first, at most LISTED): the operator's view."""
    with db.transaction(settings) as conn:
        rows = conn.execute(_LIST, (status, LISTED)).fetchall()
    keys = ("event_id", "type", "created_at", "data", "endpoint", "status", "attempts",
            "last_attempt_at", "last_status_code", "last_error", "next_attempt_at",
            "delivered_at")
    return {"status": status, "deliveries": [
        {k: events.rfc3339(v) if isinstance(v, datetime) else v for k, v in zip(keys, row)}
        for row in rows]}


def replay(settings: Settings, what: str) -> dict:
    """Make deliveries pending again, with a fresh 24 h window: every failed one, or every
    delivery of one event (delivered or failed); then drain."""
    event_id = None if what == "failed" else what
    with db.transaction(settings) as conn:
        if event_id is not None and conn.execute(
                "SELECT 1 FROM openfaas_metering.webhook_events WHERE event_id = %s",
                (event_id,)).fetchone() is None:
            raise RequestError(404, f"replay: no event {event_id}")
        replayed = conn.execute(_REPLAY, {"event_id": event_id}).fetchall()
    return {"replayed": [{"event_id": e, "endpoint": u} for e, u in replayed],
            "drained": drain(settings)}
