"""The usage behind an invoice as CSV: every line traced to its rows.

The form of the lines CSV (documents.document.lines_csv): RFC 4180 with CRLF,
`true`/`false`, ISO dates, plain decimals. One row per line, local day
(BILLING_TIMEZONE of the invoice) and function for usage lines (GB-s,
invocations), per line and local day for capacity lines (meter, SKU, spot);
`kind` is the line's kind (usage, capacity). For a line of a correction
(supplementary invoice, credit note), the rows are its month's usage as known
now, and one row of kind `billed_earlier` (no day) with what earlier documents
of the month already billed, negated. The CSV closes with one row of kind
`line_total` per line holding the line's quantity: a line's other rows add up
to it (capacity to within the 1e-12 unit-hour rounding of each day). The CSV is built once, when
the document is finalized, and stored with it (its SHA-256 beside the other
hashes): aggregate-month answers {"export": number}, email-invoice attaches
and rerender renders that same text, forever.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal

import psycopg

from chargeback.billing import store as billing_store
from chargeback.billing.invoicing import canon
from chargeback.billing.periods import local_days
from chargeback.core.meters import GB_SECONDS, INVOCATIONS

_MIDNIGHT, _DAY = time(0), timedelta(days=1)
COLUMNS = ("line_no", "kind", "meter", "sku", "spot", "day", "function_name", "quantity",
           "unit")
CRLF = "\r\n"
BILLED_EARLIER, LINE_TOTAL = "billed_earlier", "line_total"


def _bool(value: bool) -> str:
    return "true" if value else "false"


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
               documents: dict[str, tuple[bool, list[CsvLine]]], sql_days: bool = True
               ) -> dict[str, str]:
    """namespace -> CSV (see the module) for one document per namespace: (is a
    correction, its lines with a meter). Each local day is read once for all of them
    (every namespace: an array of a thousand names costs the scan more than the rows
    it leaves out), its rows sorted and formatted once. A usage line whose local days
    are whole UTC days (BILLING_TIMEZONE UTC, no price change at an odd instant) has
    its rows formatted by PostgreSQL from the daily rollup (`sql_days`): the same text,
    without a million Python rows for a month of 20,000 functions."""
    many = len(documents) > 1
    only = None if many else [ns for ns in documents if ns is not None]
    usage_cache: dict[tuple[datetime, datetime], dict] = {}
    capacity_cache: dict[tuple[datetime, datetime], dict] = {}
    whole_days: dict[tuple[datetime, datetime], dict | None] = {}
    out = {}
    for namespace, (correction, lines) in documents.items():
        text = io.StringIO()
        writer = csv.writer(text, lineterminator=CRLF)
        writer.writerow(COLUMNS)
        for line in lines:
            shown = Decimal(0)
            head = (line.line_no, line.kind, line.meter, line.sku, _bool(line.spot))
            span = (line.price_from, line.price_to)
            usage_line = line.meter in (GB_SECONDS, INVOCATIONS)
            if sql_days and usage_line and span not in whole_days:
                whole_days[span] = _whole_utc_days(conn, *span, tz, only)
            fast = whole_days.get(span) if sql_days and usage_line else None
            if fast is not None:
                gb, calls = fast.get(namespace, (("", 0), ("", 0)))
                part, total = gb if line.meter == GB_SECONDS else calls
                if part:  # each row is "day,function,quantity": add the line's columns
                    prefix = ",".join(map(str, head)) + ","
                    suffix = "," + line.unit
                    text.write(prefix + part.replace("\n", suffix + CRLF + prefix)
                               + suffix + CRLF)
                shown = Decimal(total)
            for day, start, end in (() if fast is not None else
                                    local_days(line.price_from, line.price_to, tz)):
                key, day_text = (start, end), day.isoformat()
                if usage_line:
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
                writer.writerow((line.line_no, BILLED_EARLIER, *head[2:], "", "",
                                 canon(line.quantity - shown), line.unit))
        for line in lines:   # the closing rows: each line's quantity
            writer.writerow((line.line_no, LINE_TOTAL, line.meter, line.sku, _bool(line.spot),
                             "", "", canon(line.quantity), line.unit))
        out[namespace] = text.getvalue()
    return out


# A usage line's rows over whole UTC days, per namespace, as "day,function,quantity"
# lines (function names are DNS labels: nothing to quote; numbers as canon() writes them),
# and their sums (a correction's billed_earlier row is the line's quantity less them).
_WHOLE_DAYS = """
SELECT namespace,
       string_agg(to_char(day_start AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ',' || function_name
                  || ',' || trim_scale(gb_seconds)::text, E'\\n' ORDER BY day_start, function_name)
           FILTER (WHERE gb_seconds <> 0),
       string_agg(to_char(day_start AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ',' || function_name
                  || ',' || invocations::text, E'\\n' ORDER BY day_start, function_name)
           FILTER (WHERE invocations <> 0),
       sum(gb_seconds), sum(invocations)
  FROM openfaas_metering.function_usage_daily
 WHERE day_start >= %(start)s AND day_start < %(end)s
   AND (%(all)s OR namespace = ANY(%(namespaces)s))
 GROUP BY namespace"""


def _whole_utc_days(conn: psycopg.Connection, start: datetime, end: datetime, tz: str,
                    namespaces: list[str] | None) -> dict[str, tuple[tuple, tuple]] | None:
    """namespace -> ((GB-s rows, their sum), (invocation rows, their sum)) when every
    local day of [start, end) is a whole UTC day; None otherwise (the rows are then read
    day by day)."""
    days = local_days(start, end, tz)
    if not days or any(a.astimezone(timezone.utc).time() != _MIDNIGHT or b - a != _DAY
                       for _, a, b in days):
        return None
    return {ns: ((gb or "", gb_sum), (inv or "", inv_sum))
            for ns, gb, inv, gb_sum, inv_sum in conn.execute(_WHOLE_DAYS, {
        "start": start, "end": end, "all": namespaces is None,
        "namespaces": namespaces or []})}


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
