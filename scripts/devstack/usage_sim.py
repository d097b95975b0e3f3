"""Simulated OpenFaaS metering traffic for the demo, the benchmark and the tests.

`WebhookSender` posts a delivery exactly as the event-worker does (signed raw
body, X-Openfaas-Event / -Delivery headers). `simulate_month` makes a
reproducible month of function_usage events for a set of tenants with a
realistic function mix (128 MiB to 4 GiB, milliseconds to minutes), and
`plan_deliveries` cuts them into batches of 1 to 1,000 with the things a real
sender does: replays of whole deliveries, events re-sent in other batches,
and a few invalid events.
"""
from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal

import requests

from chargeback.usage import webhook
from chargeback.usage.events import total_gb_seconds

MiB = 1024 * 1024
GiB = 1024 * MiB
MS = 1_000_000  # ns


class WebhookSender:
    """Signs and posts deliveries to a receive-usage URL (directly or via the gateway)."""

    def __init__(self, url: str, secret: str | bytes, session: requests.Session | None = None,
                 timeout_s: float = 60):
        self.url = url
        self.secret = secret
        self.session = session or requests.Session()
        self.timeout_s = timeout_s

    def post(self, body: bytes | list, delivery_id: str | None = "new", *,
             event: str | None = "function_usage", signature: str | None = "sign",
             headers: dict[str, str] | None = None) -> requests.Response:
        """Post one delivery. delivery_id="new" makes a fresh UUID, None sends no header;
        signature="sign" signs with the secret, None sends no signature header."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": "application/json"}
        if event is not None:
            sent["X-Openfaas-Event"] = event
        if delivery_id is not None:
            sent["X-Openfaas-Delivery"] = str(uuid.uuid4()) if delivery_id == "new" else delivery_id
        if signature is not None:
            sent["X-Openfaas-Signature-256"] = (webhook.sign(raw, self.secret)
                                                if signature == "sign" else signature)
        sent.update(headers or {})
        return self.session.post(self.url, data=raw, headers=sent, timeout=self.timeout_s)


def rfc3339(started_ns: int) -> str:
    """UTC, nine fractional digits: what the event-worker sends."""
    seconds, fraction = divmod(started_ns, 10**9)
    stamp = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z"


def usage_event(namespace: str, function_name: str, started_ns: int, duration_ns: int,
                memory_bytes: int) -> dict:
    return {"event": "function_usage", "namespace": namespace, "function_name": function_name,
            "started": rfc3339(started_ns), "duration": duration_ns,
            "memory_bytes": memory_bytes}


@dataclass(frozen=True)
class FunctionProfile:
    name: str
    memory_bytes: int
    median_ms: float  # typical duration; actual ones are log-normal around it
    weight: float     # share of the tenant's invocations


@dataclass(frozen=True)
class Tenant:
    namespace: str
    share: float  # share of all invocations
    functions: tuple[FunctionProfile, ...]


TENANTS = (
    Tenant("acme-shop", 0.34, (
        FunctionProfile("checkout", 256 * MiB, 80, 0.55),
        FunctionProfile("resize-image", 1 * GiB, 1_400, 0.30),
        FunctionProfile("send-receipt", 128 * MiB, 35, 0.15))),
    Tenant("globex-data", 0.12, (
        FunctionProfile("csv-import", 512 * MiB, 2_500, 0.70),
        FunctionProfile("nightly-etl", 4 * GiB, 150_000, 0.05),
        FunctionProfile("dedupe", 2 * GiB, 9_000, 0.25))),
    Tenant("initech-ci", 0.18, (
        FunctionProfile("lint", 256 * MiB, 4_000, 0.5),
        FunctionProfile("unit-tests", 2 * GiB, 45_000, 0.3),
        FunctionProfile("notify", 128 * MiB, 12, 0.2))),
    Tenant("umbrella-ml", 0.08, (
        FunctionProfile("embed-text", 4 * GiB, 700, 0.8),
        FunctionProfile("train-small", 4 * GiB, 240_000, 0.02),
        FunctionProfile("healthz", 128 * MiB, 2, 0.18))),
    Tenant("hooli-api", 0.28, (
        FunctionProfile("graphql", 512 * MiB, 45, 0.6),
        FunctionProfile("auth", 256 * MiB, 8, 0.3),
        FunctionProfile("pdf-render", 1 * GiB, 3_000, 0.1))),
)
# The receiver itself: the gateway excludes openfaas-system, but a stray event
# from it must be counted as excluded, never billed.
SYSTEM_FUNCTION = ("openfaas-system", "receive-usage", 256 * MiB)


def month_bounds_ns(month: date) -> tuple[int, int]:
    start = datetime(month.year, month.month, 1, tzinfo=timezone.utc)
    end = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=timezone.utc)
    return int(start.timestamp()) * 10**9, int(end.timestamp()) * 10**9


def simulate_month(rng: random.Random, month: date, invocations: int,
                   tenants: tuple[Tenant, ...] = TENANTS) -> list[dict]:
    """`invocations` distinct valid events in `month` (UTC), ordered by start."""
    start_ns, end_ns = month_bounds_ns(month)
    profiles = [(t.namespace, f) for t in tenants for f in t.functions]
    weights = [t.share * f.weight for t in tenants for f in t.functions]
    chosen = rng.choices(profiles, weights, k=invocations)
    events, seen = [], set()
    for namespace, fn in chosen:
        while True:
            # the first second is avoided so that "the last 30 days" of the docs'
            # query, which is exclusive at its start, holds every event
            started_ns = rng.randrange(start_ns + 10**9, end_ns - 10**12)
            duration_ns = max(MS, min(int(rng.lognormvariate(0, 0.9) * fn.median_ms * MS),
                                      15 * 60_000 * MS))
            identity = (namespace, fn.name, started_ns, duration_ns, fn.memory_bytes)
            if identity not in seen:
                seen.add(identity)
                break
        events.append(identity)
    events.sort(key=lambda e: e[2])
    return [usage_event(*identity) for identity in events]


def invalid_events(rng: random.Random, month: date, count: int) -> list[dict]:
    """A few of each way an event can be wrong."""
    start_ns, _ = month_bounds_ns(month)
    good = usage_event("acme-shop", "checkout", start_ns + 3_600 * 10**9, 80 * MS, 256 * MiB)
    flaws = [
        {"duration": -5}, {"duration": 1.5}, {"memory_bytes": 0}, {"namespace": ""},
        {"function_name": "Checkout_V2"}, {"started": "yesterday"},
        {"started": "2099-01-01T00:00:00Z"}, {"event": "api_access"},
    ]
    out = []
    for i in range(count):
        event = dict(good, started=rfc3339(start_ns + (3_600 + i) * 10**9))
        event.update(flaws[i % len(flaws)])
        out.append(event)
    rng.shuffle(out)
    return out


@dataclass
class Delivery:
    delivery_id: str
    events: list[dict]
    body: bytes = b""
    replay_of: str | None = None

    def __post_init__(self):
        if not self.body:
            self.body = json.dumps(self.events, separators=(",", ":")).encode()


@dataclass
class Expected:
    """What the database must hold once every delivery of a plan has been received."""

    invocations: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    byte_ns: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duplicates: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rejected: int = 0
    excluded: int = 0
    replays: int = 0
    events_sent: int = 0

    def gb_seconds(self, namespace: str) -> Decimal:
        """Exact GB-seconds of the tenant's unique events."""
        return total_gb_seconds([(self.byte_ns[namespace], 1)])


def plan_deliveries(rng: random.Random, events: list[dict], *, invalid: list[dict] = (),
                    excluded: int = 0, replay_share: float = 0.05,
                    rebatch_share: float = 0.3, max_batch: int = 1000,
                    ) -> tuple[list[Delivery], Expected]:
    """Cut the month into deliveries of 1..max_batch events, as an event-worker would.

    Adds `excluded` events from openfaas-system, mixes in `invalid`, re-sends
    up to 30 earlier events inside `rebatch_share` of the deliveries (new ids)
    and replays `replay_share` of whole deliveries (same id, same body).
    """
    expected = Expected()
    for e in events:
        expected.invocations[e["namespace"]] += 1
        expected.byte_ns[e["namespace"]] += e["duration"] * e["memory_bytes"]
    valid = {id(e) for e in events}
    stream = list(events)
    ns_sys, fn_sys, mem_sys = SYSTEM_FUNCTION
    for i in range(excluded):
        host = stream[rng.randrange(len(stream))]
        stream.append(dict(host, namespace=ns_sys, function_name=fn_sys, memory_bytes=mem_sys))
    for bad in invalid:
        stream.insert(rng.randrange(len(stream) + 1), bad)
    expected.excluded, expected.rejected = excluded, len(invalid)

    deliveries: list[Delivery] = []
    position = 0
    while position < len(stream):
        size = rng.randint(500, max_batch) if rng.random() < 0.8 else rng.randint(1, 499)
        batch = stream[position:position + size]
        position += size
        if deliveries and rng.random() < rebatch_share:
            # the event-worker retried a partial batch inside a new delivery
            earlier = rng.choice(deliveries[-20:]).events
            again = [e for e in rng.sample(earlier, min(len(earlier), rng.randint(1, 30)))
                     if id(e) in valid]
            for e in again:
                expected.duplicates[e["namespace"]] += 1
            batch = batch + again
        deliveries.append(Delivery(str(uuid.UUID(int=rng.getrandbits(128))), batch))
    originals = list(deliveries)
    for original in rng.sample(originals, int(len(originals) * replay_share)):
        first = next(i for i, d in enumerate(deliveries) if d is original)
        later = rng.randrange(first + 1, len(deliveries) + 1)
        deliveries.insert(later, Delivery(original.delivery_id, original.events,
                                          original.body, replay_of=original.delivery_id))
        expected.replays += 1
    expected.events_sent = sum(len(d.events) for d in deliveries)
    return deliveries, expected
