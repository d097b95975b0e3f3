"""The running month priced as its invoice would be: the one estimate tenant-portal's
`usage/current` and budget evaluation share.

`month_to_date` prices the period holding `now`, from its start to `now`, with
the very code that closes the month (`month_inputs.compute` with `until`), so an
estimate asked the instant a month ends equals the invoice the close will make.
The projection prices the same quantities scaled by period length / elapsed
time (a run rate) through the same code, so tiers, allowance, base fee and
commitment apply to the projected month as they will to the real one.
Nothing is written: the work runs in a transaction that is always rolled back.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext

import psycopg

from chargeback.billing import invoicing, month_inputs, period_bounds, pricebook_store
from chargeback.billing.invoicing import Draft
from chargeback.billing.periods import Period, period_of
from chargeback.billing.pricing import EXACT, canon
from chargeback.core.settings import Settings


@dataclass(frozen=True)
class Estimate:
    """One tenant's month to date. `draft.total` is None when the invoice would be a draft
    (its `reasons` say why); `projected_total` likewise."""

    period: Period
    as_of: datetime
    price_book_version: int
    draft: Draft
    projected_total: Decimal | None


def month_to_date(conn: psycopg.Connection, settings: Settings, now: datetime,
                  namespaces: list[str] | None = None, p: Period | None = None
                  ) -> list[Estimate]:
    """Every tenant's (or `namespaces`') month to date at `now`, priced like its invoice.

    `p` defaults to the period holding `now` as its close will see it
    (`period_bounds.resolve`: after a change of BILLING_TIMEZONE, the transitional
    period starting where the last closed one ended); a period that has ended by
    `now` is priced whole (what its close will bill, late usage aside)."""
    pricebook_store.ensure_file_loaded(settings)
    tz = settings.billing_timezone
    p = p or period_bounds.resolve(conn, period_of(now, tz).name, tz).period
    until = max(p.start, min(now, p.end))
    with conn.transaction(force_rollback=True):  # compute() registers tenants it meets
        book = pricebook_store.latest(conn)
        if book is None:
            return []
        computed = month_inputs.compute(conn, p, book, namespaces, until=until,
                                       tax_rounding=settings.tax_rounding)
    elapsed_s = (until - p.start).total_seconds()
    scale = Decimal((p.end - p.start).total_seconds()) / Decimal(elapsed_s) if elapsed_s > 0 else None
    out = []
    for inputs, draft, _ in computed:
        projected = None
        if scale is not None and draft.total is not None:
            projected = invoicing.build(_scaled(inputs, scale), {book.version: book}).total
        out.append(Estimate(p, until, book.version, draft, projected))
    return out


def _scaled(inputs: dict, scale: Decimal) -> dict:
    with localcontext(EXACT):
        rows = [[m, s, spot, w, canon(Decimal(q) * scale)]
                for m, s, spot, w, q in inputs["quantities"]]
    return {**inputs, "quantities": rows, "late": []}
