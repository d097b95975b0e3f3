"""An operator's credit note against one document: what is left of it, and the credit
note's lines and figures. Pure.

A document's line n is left with its amount less what the operator's credit notes
against the document already took off that line; the document is left with its
subtotal and tax less theirs. A credit note takes off, per line, an amount no larger
than what is left of that line (a void: everything left of every line), and tax on
what it takes at the document's rate, rounded as the document's tax was. Once a
credit takes off the whole subtotal left, its tax is the whole tax left, so a void
cancels the document to the cent and partial credits never add up to more than it.

The credit note's inputs (stored with it, hashed) carry everything `build` needs, so
`verify` rebuilds its lines from them like any other document's.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext

from chargeback.billing import pricing
from chargeback.billing.invoicing import Draft, Line
from chargeback.billing.pricing import EXACT, ZERO, canon

# Why the operator credits, as Lago names it (its credit note reasons); free text goes
# beside it in "note".
REASONS = ("duplicated_charge", "product_unsatisfactory", "order_change",
           "order_cancellation", "fraudulent_charge", "other")
VOID, CREDIT = "void", "credit"
# a credited share of a line's quantity is shown to this many places
QUANTITY_PLACES = Decimal("1e-12")


class CreditError(Exception):
    """A credit the document cannot take (status 409), or an amount its currency cannot
    express (400); the message starts with the field."""

    def __init__(self, field: str, message: str, status: int = 409):
        super().__init__(f"{field}: {message}")
        self.status = status


@dataclass(frozen=True)
class Left:
    """What is left of a document: per line number, and its subtotal and tax."""
    lines: dict[int, Decimal]
    subtotal: Decimal
    tax: Decimal

    @property
    def total(self) -> Decimal:
        return self.subtotal + self.tax


def left(lines: dict[int, Line], subtotal: Decimal, tax: Decimal,
         credit_inputs: list[dict]) -> Left:
    """What is left of a document with `lines` (line number -> Line), `subtotal` and `tax`
    after the operator credit notes whose stored inputs are `credit_inputs`."""
    per_line = {n: line.amount for n, line in lines.items()}
    taken_subtotal = taken_tax = ZERO
    for inputs in credit_inputs:
        for item in inputs["lines"]:
            per_line[item["line"]] -= Decimal(item["amount"])
        taken_subtotal += Decimal(inputs["subtotal"])
        taken_tax += Decimal(inputs["tax"])
    return Left(per_line, subtotal - taken_subtotal, tax - taken_tax)


def wanted(action: str, asked: list[tuple[int, Decimal]] | None, rest: Left, currency: str
           ) -> list[tuple[int, Decimal]]:
    """(line number, amount) to take off: every line left for a void, else the lines
    asked, each checked against what is left of it (CreditError naming the entry)."""
    if action == VOID:
        out = [(n, amount) for n, amount in sorted(rest.lines.items()) if amount]
        if not out and not rest.tax:
            raise CreditError("void", "nothing is left of it to credit")
        return out
    places = pricing.minor_units(currency)
    for i, (n, amount) in enumerate(asked or []):
        where = f"lines[{i}]"
        if n not in rest.lines:
            raise CreditError(f"{where}.line", f"the document has no line {n} "
                                               f"(it has 1 to {len(rest.lines)})")
        if -amount.as_tuple().exponent > places:
            raise CreditError(f"{where}.amount", f"{currency} amounts have {places} "
                                                 f"decimals, got {amount}", status=400)
        if amount > rest.lines[n]:
            raise CreditError(f"{where}.amount", f"{amount} {currency} is more than is left "
                                                 f"of line {n} ({rest.lines[n]} {currency})")
    return list(asked or [])


def inputs(action: str, document: dict, lines: dict[int, Line], take: list[tuple[int, Decimal]],
           rest: Left, reason: str, note: str | None) -> dict:
    """The credit note's canonical inputs. `document`: number, namespace, period,
    price_book_version, plan, currency, tax_rate, tax_rounding of the credited one."""
    with localcontext(EXACT):
        subtotal = sum((amount for _, amount in take), ZERO)
        if subtotal == rest.subtotal:
            tax = rest.tax   # the last of the document: its tax left, to the cent
        else:
            tax = min(pricing.totals([subtotal], Decimal(document["tax_rate"]),
                                     document["currency"], document["tax_rounding"]).tax,
                      rest.tax)
    return {**document, "action": action, "reason": reason, "note": note,
            "subtotal": canon(subtotal), "tax": canon(tax),
            "lines": [{"line": n, "amount": canon(amount), **_line_json(lines[n])}
                      for n, amount in take]}


def _line_json(line: Line) -> dict:
    return {"kind": line.kind, "description": line.description, "meter": line.meter,
            "sku": line.sku, "spot": line.spot, "unit": line.unit,
            "quantity": canon(line.quantity), "line_amount": canon(line.amount),
            "price_from": None if line.price_from is None else line.price_from.isoformat(),
            "price_to": None if line.price_to is None else line.price_to.isoformat()}


def build(credit: dict) -> Draft:
    """The credit note `credit` (its inputs) describes: one negative line per line it
    credits (the credited share of the line's quantity), negative figures."""
    out = []
    currency = credit["currency"]

    def money(text: str) -> Decimal:  # exact already: shown in the currency's minor unit
        return pricing.round_money(Decimal(text), currency)

    with localcontext(EXACT):
        for item in credit["lines"]:
            amount, whole = money(item["amount"]), Decimal(item["line_amount"])
            share = Decimal(item["quantity"]) * amount / whole if whole else ZERO
            out.append(Line(
                item["kind"], item["description"],
                -share.quantize(QUANTITY_PLACES).normalize() if share else ZERO,
                item["unit"], -amount, item["meter"], item["sku"], item["spot"],
                price_from=_instant(item["price_from"]), price_to=_instant(item["price_to"]),
                gross=-amount))
        subtotal, tax = -money(credit["subtotal"]), -money(credit["tax"])
    return Draft(credit["namespace"], credit["period"], credit["plan"], credit["currency"],
                 Decimal(credit["tax_rate"]), lines=out, subtotal=subtotal, tax=tax,
                 total=subtotal + tax)


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)

