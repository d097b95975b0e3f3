"""The outbox: how any capability reports a fact to the operator's endpoints.

    with db.transaction(settings) as conn:
        ... the fact (an invoice finalized, a mail sent, a budget crossed) ...
        outbox.emit(conn, "invoice.finalized", {"invoice_id": ..., "total": ...})
    outbox.wake(settings)   # after the commit

`emit` writes the event in the caller's transaction, so the event exists
exactly when the fact does: never lost, never for a fact rolled back.
`wake` asks deliver-webhooks (asynchronously, through the gateway) to post
it now; it is best-effort, because deliver-webhooks also runs every minute
and delivers whatever is waiting. Only this module is imported by the
emitting capabilities: it needs psycopg and the gateway client, nothing else.
"""
from __future__ import annotations

import logging

import psycopg
from psycopg.types.json import Jsonb

from chargeback.core.gateway import GatewayClient, GatewayError
from chargeback.core.settings import Settings
from chargeback.webhooks.events import EVENT_TYPES, data_json

log = logging.getLogger("chargeback")

DELIVER_FUNCTION = "deliver-webhooks"
WAKE_TIMEOUT_S = 2.0  # the caller's response waits at most this for the gateway's 202

_EMIT = """
INSERT INTO openfaas_metering.webhook_events (type, data) VALUES (%s, %s) RETURNING event_id"""


def emit(conn: psycopg.Connection, event_type: str, data: dict) -> str:
    """Write one event in the caller's transaction; return its id (the webhook-id)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    return conn.execute(_EMIT, (event_type, Jsonb(data, dumps=data_json))).fetchone()[0]


def wake(settings: Settings, client: GatewayClient | None = None) -> bool:
    """Ask deliver-webhooks to run now; False (logged) when the gateway did not take it."""
    try:
        (client or GatewayClient(settings, timeout_s=WAKE_TIMEOUT_S)).invoke_async(
            DELIVER_FUNCTION)
        return True
    except GatewayError as exc:
        log.info("deliver-webhooks not woken (its schedule delivers instead): %s", exc)
        return False
