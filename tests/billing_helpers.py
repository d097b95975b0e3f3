"""Helpers for month-close tests: events through the real ingest, capacity through the
real tick store, settings for a test database and price book."""
from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from chargeback.billing import month_close
from chargeback.capacity import store as capacity_store
from chargeback.capacity.holdings import Reading, Sample, Tenant
from chargeback.core import db
from chargeback.core.settings import load
from chargeback.usage import events as usage
from chargeback.usage import ingest

GiB = 2**30
NS = 1_000_000_000

BOOK = """
default_plan: standard
plans:
  standard: {currency: USD, price_list: usd, base_fee: "0", minimum_commitment: "0",
             tax_rate: "0",
             tax_category: O, tax_note: "Not subject to VAT"}
  pro: {currency: USD, price_list: usd, base_fee: "10.00", minimum_commitment: "50.00",
        spot_discount_percent: 60, tax_rate: "0.20"}
  yen: {currency: JPY, price_list: jpy, tax_rate: "0.10"}
  dinar: {currency: KWD, price_list: kwd, tax_category: O, tax_note: "Not subject to VAT"}
price_lists:
  usd:
    currency: USD
    meters:
      gb_seconds:
        "*": {unit_price: "0.001"}
      invocations:
        "*": {unit_price: "0.0001", allowance: 10}
      node_hours:
        "*": {unit_price: "1.00"}
      gpu_hours:
        NVIDIA-H100: {unit_price: "3.00"}
      loadbalancer_hours:
        "*":
          - {unit_price: "0.10"}
          - {effective_from: "2026-09-16T00:00:00Z", unit_price: "0.05"}
  jpy:
    currency: JPY
    meters:
      gb_seconds: {"*": {unit_price: "0.3333"}}
      invocations: {"*": {unit_price: "0.01"}}
  kwd:
    currency: KWD
    meters:
      gb_seconds: {"*": {unit_price: "0.00033333"}}
      invocations: {"*": {unit_price: "0.0000333"}}
"""


def settings_for(database_url: str, tmp_path: Path, book: str = BOOK, **env):
    path = tmp_path / "pricebook.yml"
    path.write_text(book)
    # the pricing and closing tests bill tenants without addresses, as an internal
    # chargeback does; the tests of what an EU invoice needs pass LEGAL_CHECKS=en16931
    return load({"DATABASE_URL": database_url, "PRICEBOOK_FILE": str(path),
                 "SECRETS_DIR": str(tmp_path), "LEGAL_CHECKS": "none", **env})


def ns_of(text: str) -> int:
    """Exact ns since the epoch of an RFC 3339 instant with up to 9 fractional digits."""
    return usage.parse_started(text)


def event(namespace: str, started: str, duration_ns: int, memory_bytes: int = GiB,
          function_name: str = "fn") -> dict:
    return {"event": "function_usage", "namespace": namespace, "function_name": function_name,
            "started": started, "duration": duration_ns, "memory_bytes": memory_bytes}


def send(settings, events: list[dict]) -> ingest.Summary:
    """Store events through the real ingest path, as receive-usage does."""
    body = json.dumps(events).encode()
    batch = usage.validate(events, now_ns=4_000_000_000 * NS, max_future_skew_s=300,
                           exclude_namespaces=("openfaas-system",))
    assert not batch.rejected, batch.rejected
    return ingest.store(settings, str(uuid.uuid4()), hashlib.sha256(body).hexdigest(), batch)


def ticks(settings, namespace: str, samples: list[tuple[str, str, bool, str]],
          slots: list[datetime], plan: str | None = None) -> None:
    """Capacity through the real tick store: `samples` (meter, sku, spot, units) held at
    every slot (the first slot is the baseline and bills nothing)."""
    reading = Reading(tenants=(Tenant(namespace, plan=plan),),
                      samples=tuple(Sample(namespace, m, s, sp, Decimal(u))
                                    for m, s, sp, u in samples),
                      dedicated_nodes=0, not_ready_nodes=0, warnings=())
    for slot in slots:
        with db.transaction(settings) as conn:
            capacity_store.record_tick(conn, slot.astimezone(timezone.utc), reading,
                                       max_gap_seconds=3600)


class Recorder:
    """Stands in for the gateway client where the hand-off is not what a test is about."""

    def __init__(self):
        self.calls = []

    def invoke_async(self, function, body=b"", **kwargs):
        self.calls.append((function, body))
        return "call"


NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def close(settings, now=NOW, **options):
    """One month-close run at `now`, the gateway hand-off recorded and dropped."""
    return month_close.run(settings, month_close.Options(**options), now, Recorder())


def on_plan(settings, namespace, plan):
    with db.transaction(settings) as conn:
        conn.execute("""INSERT INTO openfaas_metering.tenants (namespace, plan) VALUES (%s, %s)
                        ON CONFLICT (namespace) DO UPDATE SET plan = excluded.plan""",
                     (namespace, plan))
