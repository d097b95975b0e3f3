"""The price book and dates the corrections tests share: plans whose months are priced by
hand in each test, and the day after each month of the autumn the tests bill."""
from __future__ import annotations

from datetime import datetime, timezone

BOOK = """
default_plan: standard
plans:
  standard: {currency: USD, price_list: usd, tax_rate: "0",
             tax_category: O, tax_note: "Not subject to VAT"}
  committed: {currency: USD, price_list: cheap, base_fee: "250.00",
              minimum_commitment: "300.00", tax_rate: "0",
             tax_category: O, tax_note: "Not subject to VAT"}
  volume: {currency: USD, price_list: volume, tax_rate: "0",
             tax_category: O, tax_note: "Not subject to VAT"}
  changing: {currency: USD, price_list: changing, tax_rate: "0",
             tax_category: O, tax_note: "Not subject to VAT"}
  graduated: {currency: USD, price_list: graduated, tax_rate: "0",
             tax_category: O, tax_note: "Not subject to VAT"}
  euro: {currency: EUR, price_list: eur, tax_rate: "0.19"}
price_lists:
  usd:
    currency: USD
    meters:
      gb_seconds: {"*": {unit_price: "0.001"}}
      invocations: {"*": {unit_price: "0"}}
  cheap:
    currency: USD
    meters:
      gb_seconds: {"*": {unit_price: "0.00011"}}
      invocations: {"*": {unit_price: "0"}}
  volume:
    currency: USD
    meters:
      gb_seconds:
        "*": {tiers: {mode: volume, steps: [{up_to: 5000, unit_price: "2.95"},
                                            {unit_price: "2.60"}]}}
      invocations: {"*": {unit_price: "0"}}
  changing:
    currency: USD
    meters:
      gb_seconds:
        "*":
          - {allowance: 1000, unit_price: "0.001"}
          - {effective_from: "2026-09-16T00:00:00Z", allowance: 1000, unit_price: "0.002"}
      invocations: {"*": {unit_price: "0"}}
  graduated:
    currency: USD
    meters:
      gb_seconds:
        "*":
          - {tiers: {mode: graduated, steps: [{up_to: 1000, unit_price: "0.01"},
                                              {unit_price: "0.001"}]}}
          - {effective_from: "2026-09-16T00:00:00Z",
             tiers: {mode: graduated, steps: [{up_to: 1000, unit_price: "0.02"},
                                              {unit_price: "0.002"}]}}
      invocations: {"*": {unit_price: "0"}}
  eur:
    currency: EUR
    meters:
      gb_seconds: {"*": {unit_price: "0.001"}}
      invocations: {"*": {unit_price: "0"}}
"""

OCT_2 = datetime(2026, 10, 2, tzinfo=timezone.utc)
NOV_2 = datetime(2026, 11, 2, tzinfo=timezone.utc)
DEC_2 = datetime(2026, 12, 2, tzinfo=timezone.utc)
