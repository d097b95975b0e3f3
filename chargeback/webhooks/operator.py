"""deliver-webhooks' operator options (admin-token): list deliveries by status, replay
them. The drain itself is in webhooks.delivery.

    {"list": "failed" | "pending" | "delivered" | "cancelled"}
    {"replay": "<event id>"}      every delivery of one event, delivered or not
    {"replay": "failed"}          every failed delivery
    {"replay": {"endpoint": "<one of WEBHOOK_URLS>", "from": "<RFC 3339>",
                "to": "<RFC 3339>"}}
                                  every event created in [from, to) to that endpoint,
                                  delivered before or not (an endpoint added later,
                                  or one whose receiver lost data); receivers drop
                                  what they have by webhook-id
A replayed delivery starts afresh: attempt count 0, a new retry window. A
delivery still pending is left as it is (it is on its way).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from chargeback.core import db
from chargeback.core.responses import RequestError
from chargeback.core.settings import Settings
from chargeback.webhooks import delivery, events

LISTED = 200
_EVENT_ID = re.compile(r"evt_[0-9a-f]{32}")
_STATUSES = ("pending", "delivered", "failed", "cancelled")

_LIST = """
SELECT d.event_id, e.type, e.created_at, e.sequence, e.data, d.endpoint, d.status,
       d.attempts, d.last_attempt_at, d.last_status_code, d.last_error, d.next_attempt_at,
       d.delivered_at
  FROM openfaas_metering.webhook_deliveries AS d
  JOIN openfaas_metering.webhook_events AS e USING (event_id)
 WHERE d.status = %s
 ORDER BY e.created_at DESC, d.endpoint
 LIMIT %s"""

_REPLAY = """
UPDATE openfaas_metering.webhook_deliveries
   SET status = 'pending', attempts = 0, next_attempt_at = now(), retry_from = now()
 WHERE CASE WHEN %(event_id)s::text IS NULL THEN status = 'failed'
            ELSE event_id = %(event_id)s AND status <> 'pending' END
RETURNING event_id, endpoint"""

_REPLAY_RANGE = """
INSERT INTO openfaas_metering.webhook_deliveries AS d (event_id, endpoint)
SELECT event_id, %(endpoint)s FROM openfaas_metering.webhook_events
 WHERE created_at >= %(from)s AND created_at < %(to)s AND fanned_out_at IS NOT NULL
ON CONFLICT (event_id, endpoint) DO UPDATE
   SET status = 'pending', attempts = 0, next_attempt_at = now(), retry_from = now()
 WHERE d.status <> 'pending'
RETURNING event_id, endpoint"""


@dataclass(frozen=True)
class Range:
    endpoint: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Options:
    list: str | None = None  # one of _STATUSES
    replay: str | Range | None = None  # an event id, "failed", or a Range

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
                                '{"replay": "<event id>" | "failed" | {"endpoint": ..., '
                                '"from": ..., "to": ...}}')
    if not doc:
        return Options()
    key, value = next(iter(doc.items()))
    if key == "list":
        if value not in _STATUSES:
            raise RequestError(400, f"list: expected one of {', '.join(_STATUSES)}")
        return Options(list=value)
    if key == "replay":
        if isinstance(value, dict):
            return Options(replay=_range(value))
        if not (isinstance(value, str) and (value == "failed" or _EVENT_ID.fullmatch(value))):
            raise RequestError(400, 'replay: expected an event id (evt_...), "failed" or '
                                    '{"endpoint": ..., "from": ..., "to": ...}')
        return Options(replay=value)
    raise RequestError(400, f"{key}: unknown option (known: list, replay)")


def _range(value: dict) -> Range:
    if set(value) != {"endpoint", "from", "to"}:
        raise RequestError(400, 'replay: a range is {"endpoint": "<URL>", "from": '
                                '"<RFC 3339>", "to": "<RFC 3339>"}')
    instants = []
    for name in ("from", "to"):
        try:
            instant = datetime.fromisoformat(str(value[name]).replace("Z", "+00:00"))
        except ValueError:
            instant = None
        if instant is None or instant.tzinfo is None:
            raise RequestError(400, f"replay.{name}: expected an RFC 3339 instant with a "
                                    f"time zone, got {value[name]!r}")
        instants.append(instant)
    if instants[0] >= instants[1]:
        raise RequestError(400, "replay.from: must be before replay.to")
    if not isinstance(value["endpoint"], str):
        raise RequestError(400, "replay.endpoint: expected one of WEBHOOK_URLS")
    return Range(value["endpoint"], *instants)


def listing(settings: Settings, status: str) -> dict:
    """The deliveries in `status` (newest events first, at most LISTED): the operator's view."""
    with db.transaction(settings) as conn:
        cur = conn.execute(_LIST, (status, LISTED))
        keys = [c.name for c in cur.description]
        rows = cur.fetchall()
    return {"status": status, "deliveries": [
        {k: events.rfc3339(v) if isinstance(v, datetime) else v for k, v in zip(keys, row)}
        for row in rows]}


def replay(settings: Settings, what: str | Range) -> dict:
    """Make deliveries pending again, afresh (attempts 0, a new retry window); then drain."""
    if isinstance(what, Range):
        if what.endpoint not in delivery.configured_endpoints(settings):
            raise RequestError(400, f"replay.endpoint: {what.endpoint!r} is not one of "
                                    "WEBHOOK_URLS")
        with db.transaction(settings) as conn:
            replayed = conn.execute(_REPLAY_RANGE, {"endpoint": what.endpoint,
                                                    "from": what.start, "to": what.end}
                                    ).fetchall()
    else:
        event_id = None if what == "failed" else what
        with db.transaction(settings) as conn:
            if event_id is not None and conn.execute(
                    "SELECT 1 FROM openfaas_metering.webhook_events WHERE event_id = %s",
                    (event_id,)).fetchone() is None:
                raise RequestError(404, f"replay: no event {event_id}")
            replayed = conn.execute(_REPLAY, {"event_id": event_id}).fetchall()
    return {"replayed": [{"event_id": e, "endpoint": u} for e, u in replayed],
            "drained": delivery.drain(settings)}
