"""What the subscription tests share: a meter-capacity tick that lists namespaces and the
flat plan of the resume cases."""
from __future__ import annotations

from datetime import datetime

from chargeback.capacity import store as capacity_store
from chargeback.capacity.holdings import Reading, Tenant
from chargeback.core import db

# base fee 10.00, commitment 50.00, tax 19 %, EUR (the resume cases of issue 34)
FLAT_BOOK = """
default_plan: flat
plans:
  flat: {currency: EUR, price_list: eur, base_fee: "10.00", minimum_commitment: "50.00",
         tax_rate: "0.19"}
price_lists:
  eur:
    currency: EUR
    meters:
      gb_seconds: {"*": {unit_price: "0.001"}}
      invocations: {"*": {unit_price: "0"}}
"""

def tick(settings, slot: datetime, namespaces: tuple[str, ...], plan="pro"):
    """One meter-capacity tick that lists `namespaces` (holding nothing)."""
    reading = Reading(tenants=tuple(Tenant(ns, plan=plan) for ns in namespaces), samples=(),
                      dedicated_nodes=0, not_ready_nodes=0, warnings=())
    with db.transaction(settings) as conn:
        capacity_store.record_tick(conn, slot, reading, max_gap_seconds=3600)
