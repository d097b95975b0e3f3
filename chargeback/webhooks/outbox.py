"""The outbox: how any capability reports a fact to the operator's endpoints.

    with db.transaction(settings) as conn:
        ... the fact (an invoice finalized, a mail sent, a budget crossed) ...
        outbox.emit(conn, "invoice.finalized", {"invoice_id": ..., "total": ...})
    outbox.wake(settings)   # after the commit

`emit` writes the event in the caller's transaction, so the event exists
exactly when the fact does: never lost, never for a fact rolled back.
`wake` asks deliver-webhooks (asynchronously, through the gateway) to post
it now; it is best-effort, because deliver-webhooks also runs every minute
and delivers whatever is waiting. It returns at once: one daemon thread per
process makes the call (bounded by WAKE_TIMEOUT_S once connected), and wakes
asked while one is waiting or in flight fold into one, so a gateway that does
not resolve or never answers costs the caller's request nothing. Only this
module is imported by the emitting capabilities: it needs psycopg and the
gateway client, nothing else.
"""
from __future__ import annotations

import logging
import threading

import psycopg
import requests
from psycopg.types.json import Jsonb

from chargeback.core.gateway import GatewayClient, GatewayError
from chargeback.core.settings import Settings
from chargeback.webhooks.events import EVENT_TYPES, data_json

log = logging.getLogger("chargeback")

DELIVER_FUNCTION = "deliver-webhooks"
WAKE_TIMEOUT_S = 2.0  # the waking thread waits at most this for the gateway's 202

_EMIT = """
INSERT INTO openfaas_metering.webhook_events (type, data) VALUES (%s, %s) RETURNING event_id"""

# many at once, in order; the data travel as one JSON array (a jsonb[] array would be
# escaped twice)
_EMIT_MANY = """
INSERT INTO openfaas_metering.webhook_events (type, data)
SELECT type, data
  FROM unnest(%s::text[]) WITH ORDINALITY AS t(type, n)
  JOIN jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS d(data, n) USING (n)
 ORDER BY n"""


def emit(conn: psycopg.Connection, event_type: str, data: dict) -> str:
    """Write one event in the caller's transaction; return its id (the webhook-id)."""
    _known(event_type)
    return conn.execute(_EMIT, (event_type, Jsonb(data, dumps=data_json))).fetchone()[0]


def emit_many(conn: psycopg.Connection, events: list[tuple[str, dict]]) -> None:
    """Write the (type, data) events in one statement of the caller's transaction."""
    for event_type, _ in events:
        _known(event_type)
    if events:
        conn.execute(_EMIT_MANY, ([t for t, _ in events],
                                  Jsonb([d for _, d in events], dumps=data_json)))


def _known(event_type: str) -> None:
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")


def wake(settings: Settings) -> None:
    """Ask deliver-webhooks to run soon; never waits on the gateway, never raises."""
    _waker.ask(settings)


def _wake_now(settings: Settings, session: requests.Session | None = None) -> None:
    """Ask deliver-webhooks to run now, waiting for the gateway; a refusal is logged."""
    try:
        GatewayClient(settings, session, timeout_s=WAKE_TIMEOUT_S).invoke_async(
            DELIVER_FUNCTION)
    except GatewayError as exc:
        log.info("deliver-webhooks not woken (its schedule delivers instead): %s", exc)


class _Waker:
    """The process's one waking thread. Wakes are keyed by gateway, so any number asked
    while one is pending become one call; a call stuck on DNS delays only later wakes,
    which the minute's cron drain makes unnecessary anyway."""

    def __init__(self) -> None:
        self._asked = threading.Condition()
        self._pending: dict[tuple[str, str], Settings] = {}
        self._thread: threading.Thread | None = None
        # one session for the thread's life: a session per wake left its connection
        # pool to the garbage collector, whose finalizer could then run, and fail, deep
        # in another thread's stack (a RecursionError in the function's log)
        self._session = requests.Session()

    def ask(self, settings: Settings) -> None:
        with self._asked:
            self._pending[(settings.gateway_url, settings.function_namespace)] = settings
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="webhook-wake",
                                                daemon=True)
                self._thread.start()
            self._asked.notify()

    def _run(self) -> None:
        while True:
            with self._asked:
                self._asked.wait_for(lambda: self._pending)
                asked, self._pending = list(self._pending.values()), {}
            for settings in asked:
                try:
                    _wake_now(settings, self._session)
                except Exception:  # noqa: BLE001 (a wake-up must never end the thread)
                    log.exception("deliver-webhooks wake-up failed")


_waker = _Waker()
