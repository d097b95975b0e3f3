"""The price book: pricebook.yml parsed and checked into plain values. Pure.

The YAML (see pricebook.yml for the documented default):

    default_plan: standard          # a tenant without a plan gets this one
    plans:
      standard: {currency: USD, price_list: usd, base_fee: "0.00",
                 minimum_commitment: "0.00", spot_discount_percent: 60, tax_rate: "0"}
    price_lists:
      usd:
        currency: USD
        meters:
          gb_seconds:
            "*":                    # the meter's default, for SKUs not named
              - effective_from: "2026-01-01T00:00:00Z"
                allowance: 400000
                unit_price: "0.0000166667"
          gpu_hours:
            NVIDIA-H100-80GB-HBM3:
              - unit_price: "2.95"
                tiers: ...          # or {mode: graduated|volume, steps: [{up_to, unit_price}, ...]}

Each price is a list of entries in effective order; an entry holds from its
`effective_from` (default: always) until the next one. Numbers are read as
exact decimals (a YAML float becomes the Decimal of its text, never a binary
float).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

import yaml

from chargeback.billing import event_meters
from chargeback.billing.event_meters import EventMeter
from chargeback.billing.pricing import (
    GRADUATED,
    VOLUME,
    CurrencyError,
    Price,
    Tier,
    minor_units,
)
from chargeback.core.meters import METERS, UNITS

DEFAULT_SKU = "*"
BEGINNING = datetime(1970, 1, 1, tzinfo=timezone.utc)
DEFAULT_SPOT_DISCOUNT_PERCENT = Decimal(60)
# In the repository pricebook.yml sits beside chargeback/; stack.yml copies both
# into every function image, so the relative position is the same there.
# What a 0 % rate is (EN 16931 BT-151, UNCL 5305), each but Z with its legal basis in
# tax_note (BR-AE-10, BR-E-10, BR-O-10, BR-IC-10, BR-G-10): the invoice prints the note
ZERO_RATE_CATEGORIES = {
    "AE": "reverse charge (the customer's VAT ID is then required)",
    "O": "not subject to VAT (e.g. a customer outside the EU, art. 44 Directive 2006/112/EC)",
    "E": "exempt (the note names the exemption)",
    "K": "intra-community supply", "G": "export outside the EU", "Z": "zero rated"}
DEFAULT_FILE = Path(__file__).resolve().parents[2] / "pricebook.yml"


class PriceBookError(ValueError):
    """pricebook.yml is unusable; the message names the key."""


@dataclass(frozen=True)
class Plan:
    name: str
    currency: str
    price_list: str
    base_fee: Decimal
    minimum_commitment: Decimal
    spot_discount_percent: Decimal
    tax_rate: Decimal
    # documents: the invoice's due date, and what a 0% invoice says about its tax
    payment_terms_days: int = 14
    tax_note: str | None = None
    # EN 16931 VAT category (UNCL 5305): S at a positive rate; at 0 % one of ZERO_RATE_CATEGORIES
    tax_category: str = "S"


@dataclass(frozen=True)
class PriceBook:
    default_plan: str
    plans: dict[str, Plan]
    # price list -> meter -> sku ("*" = the meter's default) -> entries in effective order
    prices: dict[str, dict[str, dict[str, tuple[Price, ...]]]]
    content_sha256: str
    version: int | None = None   # set once stored
    meters: dict[str, EventMeter] = field(default_factory=dict)  # custom, by name

    def unit_of(self, meter: str) -> str:
        """The unit `meter`'s quantities and prices are in."""
        custom = self.meters.get(meter)
        return custom.unit if custom else UNITS.get(meter, "")

    def prices_for(self, plan: Plan, meter: str, sku: str) -> tuple[Price, ...] | None:
        """The entries that price `meter`/`sku` on `plan`, None when nothing does."""
        by_sku = self.prices.get(plan.price_list, {}).get(meter, {})
        return by_sku.get(sku) or by_sku.get(DEFAULT_SKU)

    def cut_points(self, start: datetime, end: datetime) -> list[datetime]:
        """Every instant strictly inside (start, end) at which some price changes."""
        return sorted({p.effective_from for meters in self.prices.values()
                       for skus in meters.values() for entries in skus.values()
                       for p in entries if start < p.effective_from < end})


def price_at(entries: tuple[Price, ...], at: datetime) -> Price | None:
    """The entry in effect at instant `at`, None before the first one."""
    found = None
    for entry in entries:
        if entry.effective_from <= at:
            found = entry
    return found


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("tag:yaml.org,2002:float",
                        lambda loader, node: Decimal(loader.construct_scalar(node)))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _decimal(value, where: str, *, minimum: Decimal | None = Decimal(0),
             below: Decimal | None = None) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise PriceBookError(f"{where}: expected a number")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise PriceBookError(f"{where}: {value!r} is not a number") from None
    if not number.is_finite() or (minimum is not None and number < minimum) \
            or (below is not None and number >= below):
        raise PriceBookError(f"{where}: {value!r} is out of range")
    return number


def _instant(value, where: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise PriceBookError(f"{where}: {value!r} is not an RFC 3339 instant") from None
    if moment.tzinfo is None:
        raise PriceBookError(f"{where}: {value!r} needs a time zone (e.g. Z)")
    return moment.astimezone(timezone.utc)


def _mapping(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise PriceBookError(f"{where}: expected a mapping")
    return value


def _price(raw, where: str) -> Price:
    raw = _mapping(raw, where)
    unknown = set(raw) - {"effective_from", "unit_price", "tiers", "allowance"}
    if unknown:
        raise PriceBookError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    effective_from = (_instant(raw["effective_from"], f"{where}.effective_from")
                      if "effective_from" in raw else BEGINNING)
    allowance = _decimal(raw.get("allowance", 0), f"{where}.allowance")
    if ("unit_price" in raw) == ("tiers" in raw):
        raise PriceBookError(f"{where}: give either unit_price or tiers")
    if "unit_price" in raw:
        return Price(effective_from, _decimal(raw["unit_price"], f"{where}.unit_price"),
                     allowance=allowance)
    tiers_raw = _mapping(raw["tiers"], f"{where}.tiers")
    mode = tiers_raw.get("mode")
    if mode not in (GRADUATED, VOLUME):
        raise PriceBookError(f"{where}.tiers.mode: expected graduated or volume")
    steps = tiers_raw.get("steps")
    if not isinstance(steps, list) or not steps:
        raise PriceBookError(f"{where}.tiers.steps: expected a list of {{up_to, unit_price}}")
    tiers, lower = [], Decimal(0)
    for i, step in enumerate(steps):
        step_where = f"{where}.tiers.steps[{i}]"
        step = _mapping(step, step_where)
        last = i == len(steps) - 1
        up_to = step.get("up_to")
        if last != (up_to is None):
            raise PriceBookError(f"{step_where}.up_to: every step but the last needs up_to, "
                                 "the last has none")
        if up_to is not None:
            up_to = _decimal(up_to, f"{step_where}.up_to")
            if up_to <= lower:
                raise PriceBookError(f"{step_where}.up_to: must grow from step to step")
            lower = up_to
        tiers.append(Tier(up_to, _decimal(step.get("unit_price"), f"{step_where}.unit_price")))
    return Price(effective_from, tiers=tuple(tiers), tier_mode=mode, allowance=allowance)


def _plan(name: str, raw, price_lists: dict, where: str, strict: bool) -> Plan:
    raw = _mapping(raw, where)
    currency = str(raw.get("currency") or "").upper()
    try:
        minor_units(currency)
    except CurrencyError as exc:
        raise PriceBookError(f"{where}.currency: {exc}") from None
    price_list = raw.get("price_list")
    if price_list not in price_lists:
        raise PriceBookError(f"{where}.price_list: {price_list!r} is not in price_lists")
    if price_lists[price_list][0] != currency:
        raise PriceBookError(f"{where}: currency {currency} differs from price list "
                             f"{price_list!r} ({price_lists[price_list][0]})")
    return Plan(name, currency, price_list,
                _decimal(raw.get("base_fee", 0), f"{where}.base_fee"),
                _decimal(raw.get("minimum_commitment", 0), f"{where}.minimum_commitment"),
                _decimal(raw.get("spot_discount_percent", DEFAULT_SPOT_DISCOUNT_PERCENT),
                         f"{where}.spot_discount_percent", below=Decimal(100) + 1),
                (tax_rate := _decimal(raw.get("tax_rate", 0), f"{where}.tax_rate",
                                      below=Decimal(1))),
                *_document_terms(raw, tax_rate, where, strict))


def _document_terms(raw: dict, tax_rate: Decimal, where: str, strict: bool
                    ) -> tuple[int, str | None, str]:
    """payment_terms_days (default 14), tax_note and tax_category of a plan: a 0 % plan
    says which kind of 0 % it is and, but for Z, its legal basis. Not `strict` (a version
    stored before this rule): a 0 % plan without them has category "" (billing.legal holds
    its invoices with the reason)."""
    terms = raw.get("payment_terms_days", 14)
    if isinstance(terms, bool) or not isinstance(terms, int) or not 0 <= terms <= 365:
        raise PriceBookError(f"{where}.payment_terms_days: expected whole days, 0 to 365")
    note = raw.get("tax_note")
    if note is not None and not (isinstance(note, str) and note.strip()):
        raise PriceBookError(f"{where}.tax_note: expected text")
    category = str(raw.get("tax_category") or ("S" if tax_rate else "")).strip().upper()
    known = ", ".join(f"{code} {what}" for code, what in ZERO_RATE_CATEGORIES.items())
    if tax_rate and category != "S":
        raise PriceBookError(f"{where}.tax_category: a plan with tax_rate {tax_rate} is "
                             f"category S (standard rate), not {category!r}")
    if not strict and not tax_rate and (category not in ZERO_RATE_CATEGORIES
                                        or (category != "Z" and not note)):
        category = ""
    elif not tax_rate and category not in ZERO_RATE_CATEGORIES:
        raise PriceBookError(
            f"{where}.tax_category: a plan with tax_rate 0 needs the reason for its 0 %: "
            f"one of {known}" + (f" (got {category!r})" if category else ""))
    elif not tax_rate and category != "Z" and not note:
        raise PriceBookError(f"{where}.tax_note: a plan with tax_rate 0 and tax_category "
                             f"{category} needs its legal basis printed on the invoice, e.g. "
                             '"Reverse charge: VAT to be accounted for by the recipient, '
                             'art. 196 Directive 2006/112/EC"')
    return terms, note.strip() if note else None, category


def parse(text: str, strict: bool = True) -> PriceBook:
    """The price book in `text`, checked; PriceBookError names the first bad key. A version
    stored earlier is read with strict=False: rules added since (a 0 % plan's tax
    category) do not make it unreadable."""
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PriceBookError(f"not valid YAML: {str(exc).splitlines()[0]}") from None
    doc = _mapping(doc, "pricebook")
    try:
        custom = event_meters.parse(doc.get("meters"), METERS)
    except event_meters.MeterError as exc:
        raise PriceBookError(str(exc)) from None
    known = METERS + tuple(custom)
    lists_raw = _mapping(doc.get("price_lists"), "price_lists")
    price_lists, prices = {}, {}
    for list_name, list_raw in lists_raw.items():
        where = f"price_lists.{list_name}"
        list_raw = _mapping(list_raw, where)
        currency = str(list_raw.get("currency") or "").upper()
        meters = {}
        for meter, skus in _mapping(list_raw.get("meters"), f"{where}.meters").items():
            if meter not in known:
                raise PriceBookError(f"{where}.meters.{meter}: unknown meter "
                                     f"(known: {', '.join(known)}; declare a custom meter "
                                     "under meters:)")
            meters[meter] = {}
            for sku, entries in _mapping(skus, f"{where}.meters.{meter}").items():
                entry_where = f"{where}.meters.{meter}.{sku}"
                entries = entries if isinstance(entries, list) else [entries]
                parsed = [_price(e, f"{entry_where}[{i}]") for i, e in enumerate(entries)]
                if any(a.effective_from >= b.effective_from for a, b in zip(parsed, parsed[1:])):
                    raise PriceBookError(f"{entry_where}: entries must be in effective_from order")
                meters[meter][str(sku)] = tuple(parsed)
        price_lists[list_name] = (currency, meters)
        prices[list_name] = meters
    plans_raw = _mapping(doc.get("plans"), "plans")
    plans = {name: _plan(name, raw, price_lists, f"plans.{name}", strict)
             for name, raw in plans_raw.items()}
    default_plan = doc.get("default_plan")
    if default_plan not in plans:
        raise PriceBookError(f"default_plan: {default_plan!r} is not in plans")
    return PriceBook(default_plan, plans, prices, sha256_text(text), meters=custom)


def document(text: str) -> dict:
    """The YAML as JSON-able data (numbers and instants as strings), for the jsonb copy."""
    def plain(value):
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, Decimal):
            return str(value)
        return value
    return plain(yaml.load(text, Loader=_Loader))  # noqa: S506
