"""One tenant's invoice for one month, from its canonical inputs. Pure.

`Inputs` is everything an invoice is computed from: the period, the tenant's
plan and tax details, the price book version, the usage and capacity
quantities per meter, SKU, spot flag and window (the period cut at every
price change), and for each earlier finalized month the quantities known now
beside those already billed (late usage). `build()` turns it into lines and
totals; the same inputs always give the same lines, so an invoice is verified
by building it again from its stored inputs, and its inputs by reading the
rows again.

Decisions (see the README):
- a tenant is invoiced for a month in which it had usage, capacity or late
  usage of an earlier month; the plan's base fee and minimum commitment apply
  to each such invoice;
- the minimum commitment tops up this month's usage and capacity charges
  (after discounts), not the base fee or adjustments;
- late usage is priced incrementally at its own month's plan and price book
  version: (price of everything now known) - (price of what was billed), so
  allowances and tiers are never granted twice; usage never shrinks, so a
  difference below what was billed (none expected) is not credited;
- spot capacity is discounted by the plan's spot_discount_percent; on-demand
  units take the allowance and the lower tiers first within a window.
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, localcontext

from chargeback.billing import pricing
from chargeback.billing.pricebook import Plan, PriceBook, price_at
from chargeback.billing.pricing import EXACT, ZERO, Price, canon
from chargeback.core.meters import UNITS, USAGE_METERS

# kinds, in display order
USAGE, CAPACITY, BASE_FEE, COMMITMENT, ADJUSTMENT = (
    "usage", "capacity", "base_fee", "commitment", "adjustment")
_DESCRIPTIONS = {"gb_seconds": "Function compute", "invocations": "Function invocations",
                 "node_hours": "Dedicated nodes", "cpu_core_hours": "Dedicated CPU cores",
                 "memory_gib_hours": "Dedicated memory", "gpu_hours": "GPUs",
                 "storage_gib_hours": "Storage", "loadbalancer_hours": "Load balancers"}
_METER_ORDER = {m: i for i, m in enumerate(UNITS)}


@dataclass(frozen=True)
class Line:
    kind: str
    description: str
    quantity: Decimal
    unit: str
    amount: Decimal
    meter: str | None = None
    sku: str = ""
    spot: bool = False
    unit_price: Decimal | None = None
    tiers: tuple[dict, ...] | None = None
    tier_mode: str | None = None
    allowance: Decimal = ZERO
    discount_percent: Decimal = ZERO
    discount: Decimal = ZERO
    price_from: datetime | None = None
    price_to: datetime | None = None
    adjustment_period: str | None = None

    def canonical(self) -> dict:
        return {"kind": self.kind, "meter": self.meter, "sku": self.sku, "spot": self.spot,
                "description": self.description, "quantity": canon(self.quantity),
                "unit": self.unit,
                "unit_price": None if self.unit_price is None else canon(self.unit_price),
                "tiers": list(self.tiers) if self.tiers is not None else None,
                "tier_mode": self.tier_mode, "allowance": canon(self.allowance),
                "discount_percent": canon(self.discount_percent),
                "discount": canon(self.discount), "amount": canon(self.amount),
                "price_from": _iso(self.price_from), "price_to": _iso(self.price_to),
                "adjustment_period": self.adjustment_period}


@dataclass
class Draft:
    namespace: str
    period: str
    plan: str | None
    currency: str | None
    tax_rate: Decimal | None
    lines: list[Line] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    subtotal: Decimal | None = None
    tax: Decimal | None = None
    total: Decimal | None = None

    @property
    def lines_sha256(self) -> str:
        return sha256_json([line.canonical() for line in self.lines])


def _iso(instant: datetime | None) -> str | None:
    return None if instant is None else instant.astimezone(timezone.utc).isoformat()


def sha256_json(value) -> str:
    """SHA-256 of the canonical JSON text of `value` (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


# Quantities travel as [meter, sku, spot, window index, quantity text] rows.
Quantities = dict[tuple[str, str, bool, int], Decimal]


def quantities_rows(quantities: Quantities) -> list[list]:
    return sorted([m, s, sp, w, canon(q)] for (m, s, sp, w), q in quantities.items() if q)


def quantities_of(rows: list[list]) -> Quantities:
    return {(m, s, sp, w): Decimal(q) for m, s, sp, w, q in rows}


def resolve_plan(book: PriceBook, plan_name: str | None, currency: str | None
                 ) -> tuple[Plan | None, list[str]]:
    """The tenant's plan and why it cannot be used (never a fallback to another plan)."""
    name = plan_name or book.default_plan
    plan = book.plans.get(name)
    if plan is None:
        return None, [f"plan {name!r} is not in price book version {book.version}"]
    if currency and currency.upper() != plan.currency:
        return plan, [f"tenant currency {currency.upper()} differs from plan {name!r} "
                      f"currency {plan.currency}"]
    return plan, []


@dataclass(frozen=True)
class _Segment:
    start: datetime
    end: datetime
    price: Price
    windows: tuple[int, ...]


def _segments(entries: tuple[Price, ...], windows: list[tuple[datetime, datetime]]
              ) -> list[_Segment] | None:
    """Consecutive windows under the same price, merged; None if a window has no price."""
    out: list[_Segment] = []
    for i, (start, end) in enumerate(windows):
        price = price_at(entries, start)
        if price is None:
            return None
        if out and out[-1].price is price:
            last = out[-1]
            out[-1] = _Segment(last.start, end, price, last.windows + (i,))
        else:
            out.append(_Segment(start, end, price, (i,)))
    return out


def _describe(meter: str, sku: str, spot: bool) -> str:
    text = _DESCRIPTIONS.get(meter, meter)
    if sku:
        text += f" {sku}"
    return text + (" (spot)" if spot else "")


def _priced_lines(book: PriceBook, plan: Plan, windows, current: Quantities,
                  billed: dict | None, kind: str, adjustment_period: str | None
                  ) -> tuple[list[Line], list[str]]:
    """Lines for the quantities; with `billed` ({(meter, sku, spot, price_from): qty}),
    only what exceeds it, priced incrementally."""
    lines, reasons = [], []
    keys = sorted({(m, s) for (m, s, _, _), q in current.items() if q},
                  key=lambda k: (_METER_ORDER.get(k[0], 99), k[1]))
    for meter, sku in keys:
        entries = book.prices_for(plan, meter, sku)
        segments = _segments(entries, windows) if entries else None
        if segments is None:
            reasons.append(f"no price for {meter} {sku}".rstrip()
                           + f" in plan {plan.name!r}")
            continue
        pieces, billed_pieces, where = [], [], []
        for seg in segments:
            for spot in (False, True):
                with localcontext(EXACT):
                    quantity = sum((current.get((meter, sku, spot, w), ZERO)
                                    for w in seg.windows), ZERO)
                before = (billed or {}).get((meter, sku, spot, seg.start), ZERO)
                if not quantity and not before:
                    continue
                pieces.append((quantity, seg.price))
                billed_pieces.append((min(before, quantity), seg.price))
                where.append((seg, spot))
        now_priced = pricing.price_sequence(pieces)
        before_priced = pricing.price_sequence(billed_pieces) if billed is not None else None
        for i, ((quantity, price), priced, (seg, spot)) in enumerate(
                zip(pieces, now_priced, where)):
            gross, allowance, tiers = priced.gross, priced.allowance_used, priced.tiers
            if before_priced is not None:
                quantity = quantity - billed_pieces[i][0]
                with localcontext(EXACT):
                    gross = gross - before_priced[i].gross
                    allowance = allowance - before_priced[i].allowance_used
                tiers = ()
            if not quantity:
                continue
            percent = plan.spot_discount_percent if spot else ZERO
            discount = pricing.discount_of(gross, percent)
            description = _describe(meter, sku, spot)
            if len(segments) > 1:
                description += f", {seg.start:%Y-%m-%d %H:%M} to {seg.end:%Y-%m-%d %H:%M} UTC"
            if adjustment_period:
                description = f"Late usage of {adjustment_period}: {description}"
            lines.append(Line(
                kind=kind, description=description, quantity=quantity, unit=UNITS[meter],
                amount=pricing.line_amount(gross, discount, plan.currency), meter=meter,
                sku=sku, spot=spot, unit_price=price.unit_price,
                tiers=tuple(t.as_json() for t in tiers) if price.tiers and billed is None
                else None,
                tier_mode=price.tier_mode, allowance=allowance, discount_percent=percent,
                discount=pricing.round_money(discount, plan.currency),
                price_from=seg.start, price_to=seg.end, adjustment_period=adjustment_period))
    return lines, reasons


def windows_of(inputs: dict) -> list[tuple[datetime, datetime]]:
    return [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in inputs["windows"]]


def build(inputs: dict, books: dict[int, PriceBook]) -> Draft:
    """The invoice `inputs` describe, priced with `books` (version -> PriceBook)."""
    book = books[inputs["price_book_version"]]
    plan, reasons = resolve_plan(book, inputs["plan"], inputs["tenant_currency"])
    override = inputs["tax_rate_override"]
    tax_rate = (Decimal(override) if override is not None
                else plan.tax_rate if plan else None)
    draft = Draft(inputs["namespace"], inputs["period"], plan.name if plan else inputs["plan"],
                  plan.currency if plan else None, tax_rate, reasons=list(reasons))
    if plan is None or reasons:
        return draft
    current = quantities_of(inputs["quantities"])
    usage_lines, reasons = _priced_lines(book, plan, windows_of(inputs), current, None,
                                         "", None)
    draft.reasons += reasons
    usage_lines = [_with_kind(line, USAGE if line.meter in USAGE_METERS else CAPACITY)
                   for line in usage_lines]
    adjustment_lines = []
    for late in inputs["late"]:
        late_book = books[late["price_book_version"]]
        # the plan that month's invoice used; none (a tenant new to a closed month): its own
        late_plan, late_reasons = resolve_plan(late_book, late["plan"] or inputs["plan"], None)
        if late_plan is not None and late_plan.currency != plan.currency:
            late_reasons = [f"late usage of {late['period']} is in {late_plan.currency}, "
                            f"this invoice in {plan.currency}"]
        if late_reasons:
            draft.reasons += [f"late usage of {late['period']}: {r}" for r in late_reasons]
            continue
        billed = {(m, s, sp, datetime.fromisoformat(f)): Decimal(q)
                  for m, s, sp, f, q in late["billed"]}
        lines, reasons = _priced_lines(late_book, late_plan, windows_of(late),
                                       quantities_of(late["quantities"]), billed,
                                       ADJUSTMENT, late["period"])
        adjustment_lines += lines
        draft.reasons += [f"late usage of {late['period']}: {r}" for r in reasons]
    if draft.reasons:  # what could be priced, for the operator to see; no totals
        draft.lines = usage_lines + adjustment_lines
        return draft
    with localcontext(EXACT):
        usage_amount = sum((line.amount for line in usage_lines), ZERO)
    fixed = []
    if plan.base_fee:
        fixed.append(Line(BASE_FEE, f"Base fee, plan {plan.name}", Decimal(1), "month",
                          pricing.round_money(plan.base_fee, plan.currency),
                          unit_price=plan.base_fee))
    top_up = pricing.round_money(pricing.commitment_top_up(usage_amount,
                                                           plan.minimum_commitment),
                                 plan.currency)
    if top_up:
        fixed.append(Line(COMMITMENT, f"Minimum commitment {plan.minimum_commitment} "
                          f"{plan.currency}: top-up", Decimal(1), "month", top_up,
                          unit_price=top_up))
    draft.lines = usage_lines + fixed + adjustment_lines
    totals = pricing.totals([line.amount for line in draft.lines], tax_rate, plan.currency)
    draft.subtotal, draft.tax, draft.total = totals.subtotal, totals.tax, totals.total
    return draft


def _with_kind(line: Line, kind: str) -> Line:
    return Line(**{**line.__dict__, "kind": kind})


def billed_rows(lines: list[tuple]) -> list[list]:
    """[meter, sku, spot, price_from iso, quantity] summed from stored line rows
    (meter, sku, spot, price_from, quantity), for `Inputs.late[].billed`."""
    summed: dict[tuple, Decimal] = defaultdict(lambda: ZERO)
    with localcontext(EXACT):
        for meter, sku, spot, price_from, quantity in lines:
            summed[(meter, sku, spot, _iso(price_from))] += quantity
    return sorted([m, s, sp, f, canon(q)] for (m, s, sp, f), q in summed.items())
