"""Credits the operator grants, applied to an invoice before tax. Pure.

A month's inputs carry the grants it may use, in the order they are applied (the
earliest expiry first, then the oldest grant), each as
{"grant_id", "available", "meter"}: `available` is what the grant may give this
month, `meter` (or null) the only meter whose lines it may reduce. `apply` takes
from each in turn, never more than is left of the subtotal (the invoice never goes
below zero) nor, for a meter's grant, more than that meter's lines; the result is
one line "Credit applied" (a document-level discount before tax, EN 16931 BT-92)
and what each grant gave.

At a month's first close `available` is the grant's remaining balance; once the
invoice is finalized its inputs keep what each grant gave instead, so a correction
of the month re-applies the grants as they stood for it (at most what they gave
then; less when the month now prices lower) and never takes from a later month's
share: the documents of a month still add up to pricing it from scratch.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext

from chargeback.billing.pricing import EXACT, ZERO

CREDIT = "credit"
DESCRIPTION = "Credit applied"


@dataclass(frozen=True)
class Applied:
    total: Decimal                       # what all the grants gave (positive)
    by_grant: dict[str, Decimal]         # grant id -> what it gave (only those > 0)


def apply(lines: list, grants: list[dict]) -> Applied:
    """What `grants` give against `lines` (each with .amount and .meter)."""
    with localcontext(EXACT):
        subtotal = sum((line.amount for line in lines), ZERO)
        taken, by_meter, by_grant = ZERO, {}, {}
        for grant in grants:
            room = subtotal - taken
            meter = grant.get("meter")
            if meter:
                of_meter = sum((line.amount for line in lines if line.meter == meter), ZERO)
                room = min(room, of_meter - by_meter.get(meter, ZERO))
            give = min(Decimal(grant["available"]), room)
            if give <= 0:
                continue
            taken += give
            if meter:
                by_meter[meter] = by_meter.get(meter, ZERO) + give
            by_grant[grant["grant_id"]] = by_grant.get(grant["grant_id"], ZERO) + give
    return Applied(taken, by_grant)


def as_given(grants: list[dict], by_grant: dict[str, Decimal]) -> list[dict]:
    """The grants of a month's inputs once its invoice is built: each with what it gave
    (`by_grant`) as its `available` (those that gave nothing left out)."""
    return [{**g, "available": str(by_grant[g["grant_id"]])}
            for g in grants if g["grant_id"] in by_grant]
