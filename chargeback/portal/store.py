"""tenant-portal's reads: one tenant's rollups, capacity, quarantine and documents.

Every statement names the tenant, so nobody reads what is not theirs. Usage comes
from the hourly and daily rollups ingest maintains (never the raw events),
capacity from `capacity_usage(from, to)`, the one read path for it, called once
per window.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import psycopg

from chargeback.core.meters import GB_SECONDS, INVOCATIONS
from chargeback.portal.series import SeriesQuery

# Usage per window and function; trim_scale drops NUMERIC's trailing zeros.
_USAGE = {
    "day": """
SELECT day_start, function_name, trim_scale(sum(gb_seconds)), sum(invocations)
  FROM openfaas_metering.function_usage_daily
 WHERE namespace = %(tenant)s AND day_start >= %(start)s AND day_start < %(end)s
 GROUP BY 1, 2""",
    "hour": """
SELECT hour_start, function_name, trim_scale(sum(gb_seconds)), sum(invocations)
  FROM openfaas_metering.function_usage_hourly
 WHERE namespace = %(tenant)s AND hour_start >= %(start)s AND hour_start < %(end)s
 GROUP BY 1, 2""",
}

# Capacity per window, meter, SKU and spot flag, in the meter's unit-hours.
_CAPACITY = """
SELECT w.start, u.meter, u.sku, u.spot, trim_scale(u.unit_seconds / 3600)
  FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - %(step)s::interval,
                       %(step)s::interval) AS w(start)
 CROSS JOIN LATERAL openfaas_metering.capacity_usage(w.start, w.start + %(step)s::interval) u
 WHERE u.namespace = %(tenant)s"""

_REJECTED = """
SELECT delivery_id, event_index, reason, received_at, event_json
  FROM openfaas_metering.usage_rejected_events
 WHERE namespace = %s
 ORDER BY received_at DESC, delivery_id, event_index
 LIMIT %s"""

# Each issued document with what it says of the others: the invoice a correction or
# credit note corrects, the voided one a reissue replaces, the credit note that voided it.
_DOCUMENTS = """
SELECT d.number, d.period, d.status, d.issued_at, d.currency, d.subtotal, d.tax, d.total,
       d.document_kind, c.number, r.number, v.number, d.due_date, p.status, p.open_amount,
       (SELECT max(m.sent_at) FROM openfaas_metering.payment_reminders AS m
         WHERE m.invoice_id = d.invoice_id AND m.status = 'sent')
  FROM openfaas_metering.invoices AS d
  LEFT JOIN openfaas_metering.invoices AS c ON c.invoice_id = d.corrects_invoice_id
  LEFT JOIN openfaas_metering.invoices AS r ON r.invoice_id = d.replaces_invoice_id
  LEFT JOIN openfaas_metering.invoices AS v ON v.invoice_id = d.voided_by
  -- the standing billing.payment_store derived last (none for a credit note)
  LEFT JOIN openfaas_metering.document_payment_status AS p ON p.invoice_id = d.invoice_id
 WHERE d.namespace = %s AND d.status <> 'draft'
 ORDER BY d.issued_at DESC, d.number DESC"""

_DOCUMENT = """
SELECT invoice_id::text, locale FROM openfaas_metering.invoices
 WHERE namespace = %s AND number = %s AND status <> 'draft'"""

_TENANT = """
SELECT coalesce(locale_override, locale), coalesce(display_name_override, display_name)
  FROM openfaas_metering.tenants WHERE namespace = %s"""

# The budget evaluate-budgets applies (the operator's override wins over the annotation).
_BUDGET = """
SELECT coalesce(budget_override, budget) FROM openfaas_metering.tenants WHERE namespace = %s"""

# The period's crossings, re-armed ones included (they did fire, at the budget then).
_CROSSINGS = """
SELECT kind, threshold_percent, crossed_at, budget, month_to_date, currency,
       rearmed_at IS NOT NULL
  FROM openfaas_metering.budget_crossings
 WHERE namespace = %s AND period = %s
 ORDER BY crossed_at, kind DESC, threshold_percent"""


@dataclass(frozen=True)
class Document:
    number: str
    period: str
    status: str  # finalized | sent | undeliverable: all issued
    issued_at: datetime
    currency: str
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    kind: str                # invoice | supplementary | credit_note
    corrects: str | None     # a supplementary invoice or credit note: the invoice's number
    replaces: str | None     # a reissue: the voided invoice's number
    voided_by: str | None    # a voided invoice: the credit note's number
    due_date: date | None = None
    payment_status: str | None = None   # open, partially_paid, paid, overdue, voided
    open: Decimal | None = None         # what is left to pay
    reminded_at: datetime | None = None  # the last payment reminder sent


def series(conn: psycopg.Connection, tenant: str, q: SeriesQuery) -> list[tuple]:
    """(window_start, meter, group, spot, quantity) rows, grouped as `q.group_by` asks:
    group is the function (None for capacity, which no function holds), the meter, or
    the SKU ('' for the usage meters)."""
    params = {"tenant": tenant, "start": q.start, "end": q.end, "step": q.step}
    summed: dict[tuple, Decimal] = {}

    def add(start, meter, group, spot, quantity):
        key = (start, meter, group, spot)
        summed[key] = summed.get(key, 0) + quantity

    for start, function, gb_seconds, invocations in conn.execute(_USAGE[q.window], params):
        for meter, quantity in ((GB_SECONDS, gb_seconds), (INVOCATIONS, invocations)):
            group = {"function": function, "meter": meter, "sku": ""}[q.group_by]
            add(start, meter, group, False, quantity)
    for start, meter, sku, spot, hours in conn.execute(_CAPACITY, params):
        group = {"function": None, "meter": meter, "sku": sku}[q.group_by]
        add(start, meter, group, spot if q.group_by == "sku" else False, hours)
    return [(*key, value) for key, value in sorted(
        summed.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "", kv[0][3]))]


def rejected(conn: psycopg.Connection, tenant: str, limit: int) -> list[dict]:
    return [{"delivery_id": d, "index": i, "reason": r, "received_at": at, "event": e}
            for d, i, r, at, e in conn.execute(_REJECTED, (tenant, limit))]


def documents(conn: psycopg.Connection, tenant: str) -> list[Document]:
    return [Document(*row) for row in conn.execute(_DOCUMENTS, (tenant,))]


def document_id(conn: psycopg.Connection, tenant: str,
                number: str) -> tuple[str, str | None] | None:
    """The id and locale of `tenant`'s issued document `number`; None for a draft,
    another tenant's or no such number (the caller cannot tell which)."""
    row = conn.execute(_DOCUMENT, (tenant, number)).fetchone()
    return (row[0], row[1]) if row else None


def tenant_details(conn: psycopg.Connection, tenant: str) -> tuple[str | None, str]:
    """The tenant's locale (None: the default) and display name."""
    row = conn.execute(_TENANT, (tenant,)).fetchone()
    return (row[0], row[1] or tenant) if row else (None, tenant)


def budget(conn: psycopg.Connection, tenant: str, period: str) -> tuple[Decimal | None, list]:
    """The tenant's monthly budget (None: no budget) and `period`'s crossings, oldest
    first, as dicts."""
    row = conn.execute(_BUDGET, (tenant,)).fetchone()
    crossings = [{"kind": kind, "threshold_percent": threshold, "crossed_at": at,
                  "budget": crossed, "month_to_date": month_to_date, "currency": currency,
                  "rearmed": rearmed}
                 for kind, threshold, at, crossed, month_to_date, currency, rearmed
                 in conn.execute(_CROSSINGS, (tenant, period))]
    return (row[0] if row else None), crossings
