"""The usage behind an invoice as CSV: every line traced to its rows.

One row per line, local day (BILLING_TIMEZONE of the invoice) and function
for usage lines (GB-s, invocations), per line and local day for capacity lines
(meter, SKU, spot). For a line of a correction (supplementary invoice, credit
note), the rows are its month's usage as known now, and one `billed earlier`
row with what earlier documents of the month already billed, negated: each
line's rows add up to its quantity (capacity to within
the 1e-12 unit-hour rounding of each day). The CSV is built once, when
the document is finalized, and stored with it (its SHA-256 beside the other
hashes): aggregate-month answers {"export": number}, email-invoice attaches
and rerender renders that same text, forever.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
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
       l.quantity, i.namespace, i.billing_timezone, i.document_kind, i.usage_csv
  FROM openfaas_metering.invoices i
  LEFT JOIN openfaas_metering.invoice_lines l
    ON l.invoice_id = i.invoice_id AND l.meter IS NOT NULL
 WHERE i.invoice_id = %s
 ORDER BY l.line_no"""


@dataclass(frozen=True)
class CsvLine:
    line_no: int
    kind: str
    meter: str
    sku: str
    spot: bool
    unit: str
    price_from: datetime
    price_to: datetime
    quantity: Decimal


def usage_csv(conn: psycopg.Connection, invoice_id) -> str:
    """The CSV of the document `invoice_id`: the one stored at its finalization, or (a
    draft, a document finalized before CSVs were stored) built from the rows now."""
    rows = conn.execute(_LINES, (invoice_id,)).fetchall()
    if rows and rows[0][12] is not None:
        return rows[0][12]
    if not rows:
        return build_csvs(conn, "UTC", {None: (False, [])})[None]
    namespace, tz, kind = rows[0][9], rows[0][10], rows[0][11]
    lines = [CsvLine(*row[:6], row[6].astimezone(timezone.utc),
                     row[7].astimezone(timezone.utc), row[8]) for row in rows if row[0]]
    return build_csvs(conn, tz, {namespace: (kind != "invoice", lines)})[namespace]


def build_csvs(conn: psycopg.Connection, tz: str,
               documents: dict[str, tuple[bool, list[CsvLine]]]) -> dict[str, str]:
    """namespace -> CSV (see the module) for one document per namespace: (is a
    correction, its lines with a meter). Each local day is read once for all of them
    (every namespace: an array of a thousand names costs the scan more than the rows
    it leaves out), its rows sorted and formatted once."""
    many = len(documents) > 1
    only = None if many else [ns for ns in documents if ns is not None]
    usage_cache: dict[tuple[datetime, datetime], dict] = {}
    capacity_cache: dict[tuple[datetime, datetime], dict] = {}
    out = {}
    for namespace, (correction, lines) in documents.items():
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(COLUMNS)
        for line in lines:
            shown = Decimal(0)
            head = (line.line_no, line.kind, line.meter, line.sku, line.spot)
            for day, start, end in local_days(line.price_from, line.price_to, tz):
                key, day_text = (start, end), day.isoformat()
                if line.meter in (GB_SECONDS, INVOCATIONS):
                    if key not in usage_cache:
                        usage_cache[key] = _usage_rows(billing_store.usage_by_function(
                            conn, start, end, only))
                    rows = usage_cache[key].get(namespace, ())
                    column = 1 if line.meter == GB_SECONDS else 3
                    for row in rows:
                        if row[column + 1]:
                            shown += row[column + 1]
                            writer.writerow((*head, day_text, row[0], row[column], line.unit))
                else:
                    if key not in capacity_cache:
                        capacity_cache[key] = _by_namespace(billing_store.capacity(
                            conn, start, end, only))
                    for _, c_meter, c_sku, c_spot, hours in capacity_cache[key].get(
                            namespace, ()):
                        if (c_meter, c_sku, c_spot) == (line.meter, line.sku, line.spot) \
                                and hours:
                            shown += hours
                            writer.writerow((*head, day_text, "", canon(hours), line.unit))
            if correction:
                writer.writerow((*head, "billed earlier", "", canon(line.quantity - shown),
                                 line.unit))
        out[namespace] = text.getvalue()
    return out


def _usage_rows(rows) -> dict[str, list[tuple]]:
    """namespace -> [(function, GB-s text, GB-s, invocations text, invocations)] by function."""
    out: dict[str, list] = {}
    for ns, function, invocations, gb_seconds in sorted(rows, key=lambda r: (r[0], r[1])):
        out.setdefault(ns, []).append((function, canon(gb_seconds), gb_seconds,
                                       str(invocations), Decimal(invocations)))
    return out


def _by_namespace(rows) -> dict[str, list]:
    out: dict[str, list] = {}
    for row in rows:
        out.setdefault(row[0], []).append(row)
    return out
