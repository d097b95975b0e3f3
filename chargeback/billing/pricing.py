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

Amounts are exact until a line is rounded, to the currency's ISO 4217 minor
unit (`minor_units`, from the iso4217 package's copy of the ISO 4217 list):
its gross and its discount are each rounded half-even and the amount is their
difference, so what a document shows (quantity x price = gross, discount,
amount) adds up exactly; tier rows are rounded so that they sum to the gross.
Tax is rounded half-up by default (TAX_ROUNDING=half_even for banker's rounding).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal, localcontext

from iso4217 import Currency

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


ROUNDINGS = {"half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN}


def minor_units(currency: str) -> int:
    """Digits after the point in `currency` per ISO 4217 (JPY 0, EUR 2, KWD 3, IQD 3)."""
    code = (currency or "").upper()
    try:
        exponent = Currency(code).exponent
    except ValueError:
        exponent = None
    if exponent is None:  # not a code, or a fund/metal without a minor unit (XAU)
        raise CurrencyError(f"unknown currency {currency!r} (expected an ISO 4217 code)")
    return exponent


def round_money(amount: Decimal, currency: str, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """`amount` rounded to the currency's minor unit (half-even unless `rounding`)."""
    with localcontext(EXACT):
        return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding)


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


@dataclass(frozen=True)
class LineMoney:
    gross: Decimal      # rounded
    discount: Decimal   # rounded
    amount: Decimal     # gross - discount, exactly


def line_money(gross: Decimal, discount: Decimal, currency: str) -> LineMoney:
    """What a line shows: gross and discount each rounded, the amount their difference."""
    g, d = round_money(gross, currency), round_money(discount, currency)
    with localcontext(EXACT):
        return LineMoney(g, d, g - d)


def shown_tiers(tiers: Sequence[TierApplied], currency: str) -> tuple[TierApplied, ...]:
    """The tiers with amounts rounded so that they sum to the rounded gross: each
    row is round(running total) - round(running total before it)."""
    out, running, shown = [], ZERO, ZERO
    with localcontext(EXACT):
        for tier in tiers:
            running += tier.amount
            upto = round_money(running, currency)
            out.append(TierApplied(tier.from_units, tier.to_units, tier.unit_price,
                                   tier.quantity, upto - shown))
            shown = upto
    return tuple(out)


def commitment_top_up(usage_amount: Decimal, minimum: Decimal) -> Decimal:
    """What brings this month's usage charges up to the plan's minimum commitment (>= 0)."""
    return max(ZERO, minimum - usage_amount)


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    tax: Decimal
    total: Decimal


def totals(line_amounts: Sequence[Decimal], tax_rate: Decimal, currency: str,
           tax_rounding: str = "half_up") -> Totals:
    """Subtotal = sum of rounded lines; tax = one rounding of subtotal x rate
    (TAX_ROUNDING: half_up or half_even); total. A document carries one tax rate
    (a correction is its own document at its month's rate), so one tax group."""
    with localcontext(EXACT):
        subtotal = sum(line_amounts, ZERO)
        tax = round_money(subtotal * tax_rate, currency, ROUNDINGS[tax_rounding])
        return Totals(subtotal, tax, subtotal + tax)
