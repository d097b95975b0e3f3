"""Invoice arithmetic: allowances, graduated and volume tiers, spot discounts, rounding,
minimum commitment and tax. Pure: plain Decimals in, plain Decimals out.

How one meter/SKU is priced over a month (`price_sequence`): its quantities
come as pieces in time order (a price change mid-month splits them; within a
window, on-demand before spot). The allowance and the tier position run over
the month as a whole: piece k covers the units (c, c + q] of the month, where
c is what the pieces before it used, so a split never grants the allowance or
a cheap tier twice.

- allowance A: units up to A are free; tiers count billable units, after A.
- graduated tiers: each tier's units at that tier's price.
- volume tiers: every billable unit at the price of the tier that the month's
  total billable units reach (a tier's `up_to` is inclusive: exactly 1,000
  units with `up_to: 1000` stay in that tier).

Amounts are exact until each line is rounded once, half-even, to the
currency's minor unit (`minor_units`, from babel's CLDR data).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

from babel.numbers import get_currency_precision, list_currencies

# GB-seconds carry up to 39 decimals and months of them 7 more digits before
# the point: far beyond Decimal's default 28 digits. Every sum and product
# here is taken in this context, so nothing is rounded before a line is.
EXACT = Context(prec=120, rounding=ROUND_HALF_EVEN)
ZERO = Decimal(0)
HUNDRED = Decimal(100)
GRADUATED = "graduated"
VOLUME = "volume"


class CurrencyError(ValueError):
    pass


def minor_units(currency: str) -> int:
    """Digits after the point in `currency` (JPY 0, EUR 2, KWD 3), from CLDR via babel."""
    code = (currency or "").upper()
    if code not in _CURRENCIES:
        raise CurrencyError(f"unknown currency {currency!r} (expected an ISO 4217 code)")
    return get_currency_precision(code)


_CURRENCIES = frozenset(list_currencies())


def round_money(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded half-even to the currency's minor unit (the one rounding per line)."""
    with localcontext(EXACT):
        return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None   # inclusive upper bound in billable units; None: no bound
    unit_price: Decimal


@dataclass(frozen=True)
class Price:
    """One meter/SKU's price from `effective_from` on (until the next entry)."""

    effective_from: datetime
    unit_price: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    tier_mode: str | None = None       # graduated | volume when tiers are given
    allowance: Decimal = ZERO          # included units per month


@dataclass(frozen=True)
class TierApplied:
    from_units: Decimal
    to_units: Decimal
    unit_price: Decimal
    quantity: Decimal
    amount: Decimal   # exact

    def as_json(self) -> dict:
        return {"from": canon(self.from_units), "to": canon(self.to_units),
                "unit_price": canon(self.unit_price), "quantity": canon(self.quantity),
                "amount": canon(self.amount)}


@dataclass(frozen=True)
class Priced:
    allowance_used: Decimal
    gross: Decimal                     # exact, before any discount
    tiers: tuple[TierApplied, ...] = field(default=())


def canon(value: Decimal) -> str:
    """The one text form of a Decimal (hashes, JSON): no exponent, no trailing zeros."""
    text = format(value.normalize(EXACT), "f")
    return "0" if text in ("-0", "0") else text


def _overlap(lo: Decimal, hi: Decimal, start: Decimal, end: Decimal) -> Decimal:
    return max(ZERO, min(hi, end) - max(lo, start))


def _volume_tier(tiers: Sequence[Tier], billable_total: Decimal) -> tuple[Decimal, Tier]:
    lower = ZERO
    for tier in tiers:
        if tier.up_to is None or billable_total <= tier.up_to:
            return lower, tier
        lower = tier.up_to
    raise ValueError("tiers must end with one without up_to")


def price_sequence(pieces: Sequence[tuple[Decimal, Price]]) -> list[Priced]:
    """Price the month's pieces (quantity, price) of one meter/SKU, in order; see the module."""
    with localcontext(EXACT):
        month_total = sum((q for q, _ in pieces), ZERO)
        used = ZERO
        out = []
        for quantity, price in pieces:
            start, end = used, used + quantity
            used = end
            allowance_used = _overlap(ZERO, price.allowance, start, end)
            billable_from = max(start - price.allowance, ZERO)
            billable_to = max(end - price.allowance, ZERO)
            billable = billable_to - billable_from
            if not price.tiers:
                out.append(Priced(allowance_used, billable * price.unit_price))
                continue
            applied = []
            if price.tier_mode == VOLUME:
                lower, tier = _volume_tier(price.tiers, max(month_total - price.allowance, ZERO))
                if billable:
                    applied.append(TierApplied(lower, tier.up_to if tier.up_to is not None
                                               else billable_to, tier.unit_price, billable,
                                               billable * tier.unit_price))
            else:
                lower = ZERO
                for tier in price.tiers:
                    upper = tier.up_to if tier.up_to is not None else max(billable_to, lower)
                    units = _overlap(lower, upper, billable_from, billable_to)
                    if units:
                        applied.append(TierApplied(lower, upper, tier.unit_price, units,
                                                   units * tier.unit_price))
                    lower = upper
            out.append(Priced(allowance_used, sum((t.amount for t in applied), ZERO),
                              tuple(applied)))
        return out


def discount_of(gross: Decimal, percent: Decimal) -> Decimal:
    """The exact discount `percent` % takes off `gross`."""
    with localcontext(EXACT):
        return gross * percent / HUNDRED


def line_amount(gross: Decimal, discount: Decimal, currency: str) -> Decimal:
    """What a line charges: gross less discount, rounded once."""
    with localcontext(EXACT):
        return round_money(gross - discount, currency)


def commitment_top_up(usage_amount: Decimal, minimum: Decimal) -> Decimal:
    """What brings this month's usage charges up to the plan's minimum commitment (>= 0)."""
    return max(ZERO, minimum - usage_amount)


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    tax: Decimal
    total: Decimal


def totals(line_amounts: Sequence[Decimal], tax_rate: Decimal, currency: str) -> Totals:
    """Subtotal = sum of rounded lines; tax = one rounding of subtotal x rate; total."""
    with localcontext(EXACT):
        subtotal = sum(line_amounts, ZERO)
        tax = round_money(subtotal * tax_rate, currency)
        return Totals(subtotal, tax, subtotal + tax)
