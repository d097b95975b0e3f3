"""One tenant's invoice for one month, from its canonical inputs; and a
correction of a month as the difference from what was billed. Pure.

`Inputs` is everything an invoice is computed from: the period, the tenant's
plan and tax details, the price book version, the usage and capacity
quantities per meter, SKU, spot flag and window (the period cut at every
price change), and the tenant's subscription days in the period. `build()`
turns it into lines and totals; the same inputs always give the same lines,
so a document is verified by building it again from its stored inputs, and
its inputs by reading the rows again.

Decisions (see docs/functions/aggregate-month.md):
- a tenant seen by meter-capacity is subscribed in each interval from a tick
  that listed its namespace to the first that did not (a namespace listed
  again starts a new interval); every month such an interval touches is
  invoiced with the base fee and minimum commitment prorated by the local days
  begun in them ("12 of 30 days"). A tenant only ever seen through usage is
  invoiced in months with usage, with the whole base fee and commitment;
- the minimum commitment tops up the month's usage and capacity charges
  (after discounts), not the base fee;
- late usage of a finalized month M re-prices M as a whole (`build` with M's
  inputs and the quantities known now); `correction()` is the difference from
  everything already billed for M, line by line and in total;
- spot capacity is discounted by the plan's spot_discount_percent; on-demand
  units take the allowance and the lower tiers first within a window.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, localcontext

from chargeback.billing import grants, pricing
from chargeback.billing.pricebook import Plan, PriceBook, price_at
from chargeback.billing.pricing import EXACT, ZERO, Price, canon
from chargeback.core.meters import CAPACITY_METERS, UNITS
from chargeback.mail.i18n import N_

# kinds, in display order (adjustment: late usage on a later invoice, before corrections)
USAGE, CAPACITY, BASE_FEE, COMMITMENT, ADJUSTMENT = (
    "usage", "capacity", "base_fee", "commitment", "adjustment")
INVOICE, SUPPLEMENTARY, CREDIT_NOTE = "invoice", "supplementary", "credit_note"
# A meter's name: the description of its lines, in English (the documents translate it
# through the catalogs, which N_ marks it for).
METER_NAMES = {"gb_seconds": N_("Function compute"), "invocations": N_("Function invocations"),
               "node_hours": N_("Dedicated nodes"), "cpu_core_hours": N_("Dedicated CPU cores"),
               "memory_gib_hours": N_("Dedicated memory"), "gpu_hours": N_("GPUs"),
               "storage_gib_hours": N_("Storage"), "loadbalancer_hours": N_("Load balancers"),
               "egress_gib": N_("Network egress"),
               "gpu_utilisation_hours": N_("GPU utilisation")}
_METER_ORDER = {m: i for i, m in enumerate(UNITS)}


@dataclass(frozen=True)
class BilledTier:
    """One tier of a tiered line as billed: its range, price, quantity and amount."""
    from_quantity: Decimal
    to_quantity: Decimal | None  # None: no upper bound
    unit_price: Decimal
    quantity: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Line:
    """An invoice line: the one model from the close to the PDF. `tiers` is its canonical
    form (what is hashed and stored); `line_no` is its place on a stored document (None
    while it is being computed) and is not part of what a line is (not hashed, not
    compared)."""
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
    gross: Decimal | None = None        # rounded; amount = gross - discount
    billed_days: int | None = None      # base fee, commitment: days subscribed ...
    period_days: int | None = None      # ... of the period's days
    line_no: int | None = field(default=None, compare=False)

    @property
    def billed_tiers(self) -> tuple[BilledTier, ...]:
        """The tiers as values ({"from", "to", "unit_price", "quantity", "amount"} each)."""
        def number(value) -> Decimal | None:
            return None if value is None else Decimal(str(value))
        return tuple(BilledTier(number(t.get("from")) or ZERO, number(t.get("to")),
                                number(t.get("unit_price")) or ZERO,
                                number(t.get("quantity")) or ZERO,
                                number(t.get("amount")) or ZERO) for t in self.tiers or ())

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
                "adjustment_period": self.adjustment_period,
                "gross": None if self.gross is None else canon(self.gross),
                "billed_days": self.billed_days, "period_days": self.period_days}


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
    credits: dict[str, Decimal] = field(default_factory=dict)   # grant id -> what it gave

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


def _describe(book: PriceBook, meter: str, sku: str, spot: bool) -> str:
    custom = book.meters.get(meter)
    text = custom.description if custom else METER_NAMES.get(meter, meter)
    if sku:
        text += f" {sku}"
    return text + (" (spot)" if spot else "")


def _priced_lines(book: PriceBook, plan: Plan, windows, current: Quantities
                  ) -> tuple[list[Line], list[str]]:
    """Lines for the quantities, one per meter/SKU, price segment and spot flag."""
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
        pieces, where = [], []
        for seg in segments:
            for spot in (False, True):
                with localcontext(EXACT):
                    quantity = sum((current.get((meter, sku, spot, w), ZERO)
                                    for w in seg.windows), ZERO)
                if quantity:
                    pieces.append((quantity, seg.price))
                    where.append((seg, spot))
        for (quantity, price), priced, (seg, spot) in zip(
                pieces, pricing.price_sequence(pieces), where):
            percent = plan.spot_discount_percent if spot else ZERO
            money = pricing.line_money(priced.gross, pricing.discount_of(priced.gross, percent),
                                       plan.currency)
            description = _describe(book, meter, sku, spot)
            if len(segments) > 1:
                description += f", {seg.start:%Y-%m-%d %H:%M} to {seg.end:%Y-%m-%d %H:%M} UTC"
            tiers = pricing.shown_tiers(priced.tiers, plan.currency) if price.tiers else None
            lines.append(Line(
                kind=CAPACITY if meter in CAPACITY_METERS else USAGE,
                description=description, quantity=quantity, unit=book.unit_of(meter), amount=money.amount, meter=meter,
                sku=sku, spot=spot, unit_price=price.unit_price,
                tiers=tuple(t.as_json() for t in tiers) if tiers is not None else None,
                tier_mode=price.tier_mode, allowance=priced.allowance_used,
                discount_percent=percent, discount=money.discount,
                price_from=seg.start, price_to=seg.end, gross=money.gross))
    return lines, reasons


def windows_of(inputs: dict) -> list[tuple[datetime, datetime]]:
    return [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in inputs["windows"]]


def _fixed_lines(plan: Plan, usage_amount: Decimal, subscription: dict | None) -> list[Line]:
    """Base fee and commitment top-up, prorated by `subscription` ({"days", "of"}: days
    subscribed of the period's days; None: the whole month)."""
    days = of = None
    share = Decimal(1)
    note = ""
    if subscription and subscription["days"] != subscription["of"]:
        days, of = subscription["days"], subscription["of"]
        share = Decimal(days) / Decimal(of)
        note = f", {days} of {of} days"
    fixed = []
    with localcontext(EXACT):
        base_fee = pricing.round_money(plan.base_fee * share, plan.currency)
        minimum = pricing.round_money(plan.minimum_commitment * share, plan.currency)
    if base_fee:
        fixed.append(Line(BASE_FEE, f"Base fee, plan {plan.name}{note}", Decimal(1), "month",
                          base_fee, unit_price=plan.base_fee, gross=base_fee,
                          billed_days=days, period_days=of))
    top_up = pricing.commitment_top_up(usage_amount, minimum)
    if top_up:
        fixed.append(Line(COMMITMENT, f"Minimum commitment {minimum} {plan.currency}"
                          f"{note}: top-up", Decimal(1), "month", top_up, unit_price=top_up,
                          gross=top_up, billed_days=days, period_days=of))
    return fixed


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
    usage_lines, reasons = _priced_lines(book, plan, windows_of(inputs),
                                         quantities_of(inputs["quantities"]))
    draft.reasons += reasons
    if draft.reasons:  # what could be priced, for the operator to see; no totals
        draft.lines = usage_lines
        return draft
    with localcontext(EXACT):
        usage_amount = sum((line.amount for line in usage_lines), ZERO)
    draft.lines = usage_lines + _fixed_lines(plan, usage_amount, inputs.get("subscription"))
    # the operator's credits, before tax (billing.grants): those in the plan's currency
    eligible = [g for g in inputs.get("grants", ()) if g["currency"] == plan.currency
                and g.get("plan") in (None, plan.name)]
    applied = grants.apply(draft.lines, eligible)
    if applied.total:
        draft.lines.append(Line(grants.CREDIT, grants.DESCRIPTION, Decimal(1), "credit",
                                -applied.total, unit_price=-applied.total,
                                gross=-applied.total))
    draft.credits = applied.by_grant
    totals = pricing.totals([line.amount for line in draft.lines], tax_rate, plan.currency,
                            inputs.get("tax_rounding", "half_even"))
    draft.subtotal, draft.tax, draft.total = totals.subtotal, totals.tax, totals.total
    return draft


def _line_key(line: Line) -> tuple:
    return (line.kind, line.meter, line.sku, line.spot, _iso(line.price_from))


def correction(month: Draft, billed: list[Line], billed_subtotal: Decimal,
               billed_tax: Decimal) -> Draft:
    """What is still owed for a month: `month` (the month priced now, whole) less
    everything billed for it (the lines and figures of its invoice and earlier
    corrections). Lines are the differences per line of the month (meter, SKU,
    spot flag, price segment; base fee; commitment), so the documents of a month
    add up line by line; figures are the differences of the month's figures, so
    they add up to the cent. Negative: the month is credited."""
    summed: dict[tuple, dict] = {}
    with localcontext(EXACT):
        for line in billed:
            got = summed.setdefault(_line_key(line), {
                "quantity": ZERO, "amount": ZERO, "gross": ZERO, "discount": ZERO,
                "allowance": ZERO, "line": line})
            for name in ("quantity", "amount", "discount", "allowance"):
                got[name] += getattr(line, name)
            got["gross"] += line.gross if line.gross is not None else line.amount + line.discount
        lines = []
        now_keys = set()
        for line in month.lines:
            key = _line_key(line)
            now_keys.add(key)
            was = summed.get(key)
            if was is None:
                lines.append(line)
                continue
            delta = _delta(line, was, +1)
            if delta is not None:
                lines.append(delta)
        for key, was in summed.items():  # billed, no longer owed (a commitment now met)
            if key not in now_keys:
                gone = _delta(was["line"], was, -1, zero=True)
                if gone is not None:
                    lines.append(gone)
        subtotal = month.subtotal - billed_subtotal
        tax = month.tax - billed_tax
    return Draft(month.namespace, month.period, month.plan, month.currency, month.tax_rate,
                 lines=lines, subtotal=subtotal, tax=tax, total=subtotal + tax)


def _delta(line: Line, was: dict, sign: int, zero: bool = False) -> Line | None:
    """`line` (or nothing, `zero`) less what was billed for its key; None: no difference."""
    def now(name):
        if zero:
            return ZERO
        value = getattr(line, name)
        return value if value is not None else line.amount + line.discount
    quantity = now("quantity") - was["quantity"]
    amount = now("amount") - was["amount"]
    if not quantity and not amount:
        return None
    return Line(**{**line.__dict__, "quantity": quantity, "amount": amount,
                   "gross": now("gross") - was["gross"],
                   "discount": now("discount") - was["discount"],
                   "allowance": now("allowance") - was["allowance"], "tiers": None,
                   "unit_price": line.unit_price if not line.tier_mode else None})
