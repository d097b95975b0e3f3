"""scripts/bench/ingest's `cloudevents` workload: custom usage events as an LLM gateway
sends them, 1,000 CloudEvents per signed `application/cloudevents-batch+json` POST.

Every event is a token count (`com.example.llm.completion`, data {"model", "usage":
{"tokens"}}) for one of 7 tenants, timed within the last minute, as a live sender
flushes them. Its baselines store the same events into a table of the same
columns without chargeback: one prepared INSERT per event, and bare COPY.
`CloudEventsLedger` checks at the end that receive-usage stored each event once,
with its tokens exact.
"""
from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter

import psycopg
from devstack.usage_sim import Delivery

from chargeback.usage.cloudevents import SIGNATURE_HEADER
from chargeback.usage.webhook import sign

CONTENT_TYPE = "application/cloudevents-batch+json"
TENANTS = [f"tenant-{n}" for n in range(7)]
MODELS = ("gpt-4o", "gpt-4o-mini", "llama-3-70b", "claude-3-haiku")

BASELINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_baseline.custom_events (
    id SERIAL PRIMARY KEY,
    subject TEXT NOT NULL,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    time TIMESTAMP WITH TIME ZONE NOT NULL,
    data JSONB NOT NULL
)"""
BASELINE_INSERT = """INSERT INTO bench_baseline.custom_events
    (subject, source, event_id, type, time, data) VALUES (%s, %s, %s, %s, %s, %s)"""
BARE_COPY = ("COPY bench_baseline.custom_events (subject, source, event_id, type, time, data)"
             " FROM STDIN")
TENANTS_SQL = """
INSERT INTO openfaas_metering.tenants (namespace) SELECT unnest(%s::text[])
ON CONFLICT DO NOTHING"""


def prepare(conn: psycopg.Connection) -> None:
    """The tenants the events bill (a subject must be one) and the baselines' table."""
    conn.execute(TENANTS_SQL, (TENANTS,))
    conn.execute(BASELINE_SCHEMA)


def deliveries(rng: random.Random, batches: int, size: int, tag: str) -> list[Delivery]:
    now_s = time.time()
    out = []
    for i in range(batches):
        events = [{"specversion": "1.0", "id": str(uuid.UUID(int=rng.getrandbits(128))),
                   "source": "/llm-gateway", "type": "com.example.llm.completion",
                   "subject": rng.choice(TENANTS),
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                         time.gmtime(now_s - rng.uniform(0, 60))),
                   "datacontenttype": "application/json",
                   "data": {"model": rng.choice(MODELS),
                            "usage": {"tokens": rng.randrange(1, 8000)}}}
                  for _ in range(size)]
        out.append(Delivery(f"bench-{tag}-{i}", events))
    return out


def post_options(delivery: Delivery, secret: str) -> dict:
    """WebhookSender.post's keywords for a CloudEvents batch (no event-worker headers)."""
    return {"delivery_id": None, "event": None, "signature": None,
            "headers": {"Content-Type": CONTENT_TYPE,
                        SIGNATURE_HEADER: sign(delivery.body, secret)}}


def insert_per_event(conn: psycopg.Connection, delivery: Delivery) -> None:
    with conn.cursor() as cur:
        for e in delivery.events:
            cur.execute(BASELINE_INSERT, (e["subject"], e["source"], e["id"], e["type"],
                                          e["time"], json.dumps(e["data"])), prepare=True)


def copy_rows(delivery: Delivery) -> str:
    """The delivery as COPY text (rendered before timing; JSON has no tab or newline)."""
    return "".join(f"{e['subject']}\t{e['source']}\t{e['id']}\t{e['type']}\t{e['time']}\t"
                   f"{json.dumps(e['data']).replace(chr(92), chr(92) * 2)}\n"
                   for e in delivery.events)


class CloudEventsLedger:
    """What was sent, per tenant: events and tokens; equal to what was stored, or not."""

    STORED = """
        SELECT namespace, count(*), sum((data #>> '{usage,tokens}')::numeric)::bigint
          FROM openfaas_metering.custom_events GROUP BY 1"""

    def __init__(self):
        self.events: Counter[str] = Counter()
        self.tokens: Counter[str] = Counter()

    def add(self, batch: list[Delivery]) -> None:
        for delivery in batch:
            for e in delivery.events:
                self.events[e["subject"]] += 1
                self.tokens[e["subject"]] += e["data"]["usage"]["tokens"]

    def differences(self, conn: psycopg.Connection) -> list[str]:
        stored = {ns: (n, t) for ns, n, t in conn.execute(self.STORED)}
        sent = {ns: (self.events[ns], self.tokens[ns]) for ns in self.events}
        return [f"custom_events of {ns}: stored {stored.get(ns)}, sent {sent.get(ns)}"
                for ns in sorted(set(stored) | set(sent)) if stored.get(ns) != sent.get(ns)]
