"""The usage behind an invoice as CSV: every line traced to its rows.

One row per line, local day (BILLING_TIMEZONE of the invoice) and function
for usage lines (GB-s, invocations), per line and local day for capacity lines
(meter, SKU, spot). For a line of a correction (supplementary invoice, credit
note), the rows are its month's usage as known now, and one `billed earlier`
row with what earlier documents of the month already billed, negated: each
line's rows add up to its quantity (capacity to within
the 1e-12 unit-hour rounding of each day). aggregate-month answers it for
{"export": number}; email-invoice attaches the same text.
"""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from decimal import Decimal

import psycopg

from chargeback.billing import store as billing_store
from chargeback.billing.invoicing import canon
from chargeback.billing.periods import local_days
from chargeback.core.meters import GB_SECONDS, INVOCATIONS

COLUMNS = ("line_no", "kind", "meter", "sku", "spot", "day", "function_name", "quantity",
           "unit")

_LINES = """
SELECT l.line_no, l.kind, l.meter, l.sku, l.spot, l.unit, l.price_from, l.price_to,
       l.adjustment_period, l.quantity, i.namespace, i.billing_timezone, i.document_kind
  FROM openfaas_metering.invoice_lines l
  JOIN openfaas_metering.invoices i USING (invoice_id)
 WHERE l.invoice_id = %s AND l.meter IS NOT NULL
 ORDER BY l.line_no"""


def usage_csv(conn: psycopg.Connection, invoice_id) -> str:
    """The CSV (header + rows, see the module) of the invoice `invoice_id`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    usage_cache: dict[tuple[datetime, datetime], list] = {}
    capacity_cache: dict[tuple[datetime, datetime], list] = {}
    for (line_no, kind, meter, sku, spot, unit, price_from, price_to, adjustment_period,
         quantity, namespace, tz, document_kind) in conn.execute(_LINES, (invoice_id,)).fetchall():
        shown = Decimal(0)
        for day, start, end in local_days(price_from.astimezone(timezone.utc),
                                          price_to.astimezone(timezone.utc), tz):
            key = (start, end)
            if meter in (GB_SECONDS, INVOCATIONS):
                if key not in usage_cache:
                    usage_cache[key] = billing_store.usage_by_function(conn, start, end,
                                                                       [namespace])
                for _, function, invocations, gb_seconds in sorted(usage_cache[key],
                                                                    key=lambda r: r[1]):
                    value = gb_seconds if meter == GB_SECONDS else Decimal(invocations)
                    if value:
                        shown += value
                        writer.writerow((line_no, kind, meter, sku, spot, day.isoformat(),
                                         function, canon(value), unit))
            else:
                if key not in capacity_cache:
                    capacity_cache[key] = billing_store.capacity(conn, start, end, [namespace])
                for _, c_meter, c_sku, c_spot, hours in capacity_cache[key]:
                    if (c_meter, c_sku, c_spot) == (meter, sku, spot) and hours:
                        shown += hours
                        writer.writerow((line_no, kind, meter, sku, spot, day.isoformat(), "",
                                         canon(hours), unit))
        if adjustment_period or document_kind != "invoice":
            writer.writerow((line_no, kind, meter, sku, spot, "billed earlier", "",
                             canon(quantity - shown), unit))
    return out.getvalue()
