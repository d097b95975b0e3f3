"""The Postgres side of CloudEvents: store a validated batch once, in one transaction.

An event is stored and deduplicated in the same statement (the primary key
on (namespace, source, id): a plain INSERT, or when that meets a duplicate,
INSERT ... ON CONFLICT DO NOTHING), so no id is ever claimed before its
event is written: a failed or retried request leaves nothing
behind, and the sender's retry is counted exactly once. Events for a
namespace that is not a tenant (never listed by meter-capacity) are rejected
with the others, and every rejection is kept with its reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg.errors import UniqueViolation

from chargeback.core import db
from chargeback.core.settings import Settings
from chargeback.usage.cloudevents import SUBJECT, Batch, Rejection, as_json
from chargeback.usage.ingest import REJECTED_REASONS_SHOWN, storable
# rejected events are reported through the outbox, in the same transaction
from chargeback.webhooks import outbox as webhook_outbox

_TENANTS = """
SELECT namespace FROM openfaas_metering.tenants WHERE namespace = ANY(%s::text[])"""

# The columns go as one text each, the values joined by _SEP and split by PostgreSQL
# (string_to_array, in C): psycopg adapts array elements one at a time in Python, which
# cost the function about as much as decoding and checking the whole body. `data` is
# JSON text, which never holds a raw control character; an attribute that holds _SEP
# (sent as \u001f) takes the arrays instead.
_SEP = "\x1f"
_INSERT = """
INSERT INTO openfaas_metering.custom_events
    (namespace, source, event_id, type, time_ns, data, delivery_id)
SELECT namespace, source, event_id, type, time_ns, data, %(delivery_id)s
  FROM unnest({namespace}::text[], {source}::text[], {event_id}::text[],
              {type}::text[], {time_ns}::bigint[], {data}::jsonb[])
       AS e (namespace, source, event_id, type, time_ns, data)
{skip_duplicates}"""
_COLUMNS = ("namespace", "source", "event_id", "type", "time_ns", "data")
_INSERT_JOINED = _INSERT.format_map({name: f"string_to_array(%({name})s, E'\\x1f')"
                                     for name in _COLUMNS} | {"skip_duplicates": "{skip}"})
_INSERT_ARRAYS = _INSERT.format_map({name: f"%({name})b" for name in _COLUMNS}
                                    | {"skip_duplicates": "{skip}"})
_SKIP = "ON CONFLICT (namespace, source, event_id) DO NOTHING"

_REJECT = """
INSERT INTO openfaas_metering.usage_rejected_events
    (delivery_id, body_sha256, event_index, namespace, reason, event_json)
SELECT %(delivery_id)s, %(body_sha256)s, i, ns, reason, event_json
  FROM unnest(%(index)s::integer[], %(namespace)s::text[], %(reason)s::text[],
              %(event_json)s::text[]) AS r (i, ns, reason, event_json)
ON CONFLICT DO NOTHING
RETURNING 1"""


@dataclass
class Summary:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def as_json(self, delivery: str) -> dict:
        return {"delivery": delivery, "accepted": self.accepted,
                "duplicates": self.duplicates,
                "rejected": [{"index": r.index, "reason": r.reason} for r in self.rejected]}


def delivery_of(body_sha256: str) -> str:
    """A CloudEvents request's delivery id: its body's hash (the same body is the same
    delivery), kept beside each event and each rejection."""
    return f"cloudevents:sha256:{body_sha256}"


def store(settings: Settings, body_sha256: str, batch: Batch) -> Summary:
    """Store the batch's new events and its rejections; DatabaseUnavailable: nothing was."""
    with db.transaction(settings) as conn:
        return _store(conn, body_sha256, batch)


def _store(conn: psycopg.Connection, body_sha256: str, batch: Batch) -> Summary:
    delivery = delivery_of(body_sha256)
    asked = sorted({e.namespace for e in batch.events})
    tenants = {ns for (ns,) in conn.execute(_TENANTS, (asked,))} if asked else set()
    events, rejected = batch.events, list(batch.rejected)
    if not tenants.issuperset(asked):  # some subject is not a tenant
        events = [event for event in batch.events if event.namespace in tenants]
        rejected += [Rejection(event.index, f"event {event.index}: subject {event.namespace} "
                               "is not a tenant (no namespace meter-capacity lists)",
                               batch.item(event.index), SUBJECT)
                     for event in batch.events if event.namespace not in tenants]
    rejected.sort(key=lambda r: r.index)
    accepted = _insert(conn, delivery, events) if events else 0
    if rejected and conn.execute(_REJECT, {
            "delivery_id": delivery, "body_sha256": body_sha256,
            "index": [r.index for r in rejected],
            "namespace": [storable(r.namespace) for r in rejected],
            "reason": [storable(r.reason) for r in rejected],
            "event_json": [as_json(r.event) for r in rejected]}).fetchall():
        webhook_outbox.emit(conn, "usage.rejected", {
            "delivery": delivery, "count": len(rejected),
            "first": [{"index": r.index, "reason": storable(r.reason)}
                      for r in rejected[:REJECTED_REASONS_SHOWN]]})
    return Summary(accepted, len(events) - accepted, rejected)



def _insert(conn: psycopg.Connection, delivery: str, events: list) -> int:
    """Insert the events that are new; how many were.

    As for function usage (usage/ingest.py's _insert): most batches hold no
    duplicate, and a plain INSERT costs PostgreSQL less than ON CONFLICT DO
    NOTHING (speculative insertion), so it is tried first inside a savepoint;
    the first duplicate undoes it and the batch is inserted skipping duplicates.
    """
    statement, params = _statement(delivery, events)
    try:
        with conn.transaction():
            return conn.execute(statement.format(skip=""), params).rowcount
    except UniqueViolation:
        return conn.execute(statement.format(skip=_SKIP), params).rowcount


def _statement(delivery: str, events: list) -> tuple[str, dict]:
    """The INSERT of `events` (to format with `skip`) and its parameters: each column
    joined by _SEP, or as an array when an attribute holds _SEP."""
    columns = {"namespace": [e.namespace for e in events],
               "source": [e.source for e in events], "event_id": [e.event_id for e in events],
               "type": [e.type for e in events], "time_ns": [e.time_ns for e in events],
               "data": [e.data_json for e in events]}
    joined = {name: _SEP.join(values) for name, values in columns.items() if name != "time_ns"}
    if any(_SEP in joined[name] for name in ("source", "event_id", "type")):
        return _INSERT_ARRAYS, {"delivery_id": delivery, **columns}
    return _INSERT_JOINED, {"delivery_id": delivery, **joined,
                            "time_ns": _SEP.join(map(str, columns["time_ns"]))}
