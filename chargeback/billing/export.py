"""The usage behind an invoice as CSV: every line traced to its rows.

The form of the lines CSV (documents.rendering.lines_csv): RFC 4180 with CRLF,
`true`/`false`, ISO dates, plain decimals. One row per line, local day
(BILLING_TIMEZONE of the invoice) and function for usage lines (GB-s,
invocations), per line and local day for capacity lines (meter, SKU, spot);
`kind` is the line's kind (usage, capacity). For a line of a correction
(supplementary invoice, credit note), the rows are its month's usage as known
now, and one row of kind `billed_earlier` (no day) with what earlier documents
of the month already billed, negated. The CSV closes with one row of kind
`line_total` per line holding the line's quantity: a line's other rows add up
to it (capacity to within the 1e-12 unit-hour rounding of each day).

The CSV is built once, when the document is finalized, and stored in
document_usage_csvs under its SHA-256 (which the document's row holds beside
its other hashes): aggregate-month answers {"export": number}, email-invoice
attaches and rerender renders that same text, forever.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from typing import NamedTuple

import psycopg

from chargeback.billing import store as billing_store
from chargeback.billing.invoicing import canon
from chargeback.billing.periods import local_days
from chargeback.core.meters import GB_SECONDS, INVOCATIONS
from chargeback.core.responses import ServiceError

_MIDNIGHT, _DAY = time(0), timedelta(days=1)
COLUMNS = ("line_no", "kind", "meter", "sku", "spot", "day", "function_name", "quantity",
           "unit")
CRLF = "\r\n"
BILLED_EARLIER, LINE_TOTAL = "billed_earlier", "line_total"


def _bool(value: bool) -> str:
    return "true" if value else "false"


# The CSV stored for invoices row `i`: in its own row (documents finalized before
# sql/120), else in document_usage_csvs under its usage_csv_sha256; NULL when none was.
STORED_CSV = """coalesce(i.usage_csv, (SELECT c.csv FROM openfaas_metering.document_usage_csvs c
                                    WHERE c.sha256 = i.usage_csv_sha256))"""

_LINES = f"""
SELECT l.line_no, l.kind, l.meter, l.sku, l.spot, l.unit, l.price_from, l.price_to,
       l.quantity, i.namespace, i.billing_timezone, i.document_kind, {STORED_CSV}
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
    # a usage line of a document being finalized: the usage of its meter and window the
    # document was priced from, which its rows must add up to (None: not checked)
    expected: Decimal | None = None


class UsageMoved(ServiceError):
    """Usage of a period was written between the close's read of it and its CSVs:
    nothing was kept; closing again reads both from the same rows."""

    what = "usage moved during the close"

    def public_reason(self) -> str:
        return "usage of the period changed while it was being closed, retry later"


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
    correction, its lines with a meter). Nothing is stored."""
    return {ns: text for ns, (_, text, _) in _assemble(conn, tz, documents, sql_days,
                                                       store=False).items()}


def store_csvs(conn: psycopg.Connection, tz: str,
               documents: dict[str, tuple[bool, list[CsvLine]]]) -> dict[str, str]:
    """namespace -> SHA-256 of its document's CSV (as build_csvs), stored in
    document_usage_csvs by PostgreSQL in the caller's transaction: the text never
    crosses the driver. UsageMoved when a usage line's rows do not add up to what its
    document was priced from (usage written since it was read)."""
    built = _assemble(conn, tz, documents, True, store=True)
    moved = sorted(ns for ns, (_, _, differs) in built.items() if differs)
    if moved:
        raise UsageMoved(f"{len(moved)} tenants, e.g. {moved[0]}")
    return {ns: sha for ns, (sha, _, _) in built.items()}


def _fields(values) -> str:
    """`values` as one CSV row's fields, without its line end."""
    text = io.StringIO()
    csv.writer(text, lineterminator="").writerow(values)
    return text.getvalue()


class _Piece(NamedTuple):
    """A piece of a document's CSV (see _ASSEMBLE)."""
    doc: int
    literal: str | None = None      # rows Python wrote
    span: int | None = None         # a span of whole UTC days: its daily rollup rows
    namespace: str | None = None
    gb: bool | None = None          # GB-s rows, else invocations
    prefix: str | None = None       # the line's columns before the day
    suffix: str | None = None       # and after the quantity
    quantity: Decimal | None = None  # a billed_earlier row: the line's quantity
    expected: Decimal | None = None  # what the rows must add up to (CsvLine.expected)


def _assemble(conn: psycopg.Connection, tz: str,
              documents: dict[str, tuple[bool, list[CsvLine]]], sql_days: bool, store: bool
              ) -> dict[str, tuple[str, str | None, bool]]:
    """namespace -> (SHA-256, text unless `store`, whether a usage line's rows differ
    from what it expected) of every document's CSV.

    Python writes the rows it reads day by day (capacity; usage whose local days are
    not whole UTC days) and the header and closing rows; a usage line whose local days
    are whole UTC days (BILLING_TIMEZONE UTC, no price change at an odd instant) is a
    reference to its span's daily rollup rows (`sql_days`), which PostgreSQL formats,
    joins to the rest, hashes and stores in one statement: the same text, without a
    million Python rows for a month of 20,000 functions. Each local day is read once
    for all documents (every namespace: an array of a thousand names costs the scan
    more than the rows it leaves out), its rows sorted and formatted once."""
    if not documents:
        return {}
    many = len(documents) > 1
    only = None if many else [ns for ns in documents if ns is not None]
    usage_cache: dict[tuple[datetime, datetime], dict] = {}
    capacity_cache: dict[tuple[datetime, datetime], dict] = {}
    spans: dict[tuple[datetime, datetime], int | None] = {}   # whole UTC days: its number
    whole: list[tuple[datetime, datetime]] = []               # those spans, numbered from 1
    days: dict[tuple[datetime, datetime], list] = {}          # a span's local days
    pieces: list[_Piece] = []
    differs: set[int] = set()     # documents whose Python rows differ from `expected`
    names = list(documents)
    for doc, namespace in enumerate(names):
        correction, lines = documents[namespace]
        text = io.StringIO()
        writer = csv.writer(text, lineterminator=CRLF)
        writer.writerow(COLUMNS)
        for line in lines:
            shown = Decimal(0)
            head = (line.line_no, line.kind, line.meter, line.sku, _bool(line.spot))
            span = (line.price_from, line.price_to)
            usage_line = line.meter in (GB_SECONDS, INVOCATIONS)
            if span not in days:
                days[span] = local_days(*span, tz)
            if sql_days and usage_line and span not in spans:
                spans[span] = None
                if _whole_utc_days(days[span]):
                    whole.append(span)
                    spans[span] = len(whole)
            fast = spans.get(span) if sql_days and usage_line else None
            if fast is not None:
                pieces.append(_Piece(doc, literal=text.getvalue()))
                text.seek(0)
                text.truncate()
                common = {"span": fast, "namespace": namespace,
                          "gb": line.meter == GB_SECONDS, "suffix": "," + _fields([line.unit])}
                pieces.append(_Piece(doc, prefix=_fields(head) + ",", expected=line.expected,
                                     **common))
                if correction:
                    pieces.append(_Piece(doc, prefix=_fields(
                        (line.line_no, BILLED_EARLIER, *head[2:], "", "")) + ",",
                        quantity=line.quantity, **common))
                continue
            for day, start, end in days[span]:
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
            if usage_line and line.expected is not None and shown != line.expected:
                differs.add(doc)
            if correction:
                writer.writerow((line.line_no, BILLED_EARLIER, *head[2:], "", "",
                                 canon(line.quantity - shown), line.unit))
        for line in lines:   # the closing rows: each line's quantity
            writer.writerow((line.line_no, LINE_TOTAL, line.meter, line.sku, _bool(line.spot),
                             "", "", canon(line.quantity), line.unit))
        pieces.append(_Piece(doc, literal=text.getvalue()))
    rows = conn.execute(_ASSEMBLE, {
        **{name: list(column) for name, column in zip(_Piece._fields, zip(*pieces))},
        "store": store, "span_start": [a for a, _ in whole], "span_end": [z for _, z in whole],
        "lo": min((a for a, _ in whole), default=_EPOCH),
        "hi": max((z for _, z in whole), default=_EPOCH),
        "namespaces": [ns for ns in names if ns is not None]}).fetchall()
    return {names[doc]: (sha, text, moved or doc in differs) for doc, sha, text, moved in rows}


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Every document's CSV from its pieces, in order: a literal (rows Python wrote), a usage
# line's rows of one span of whole UTC days from the daily rollup ("day,function,quantity"
# between the line's prefix and suffix columns; function names are DNS labels: nothing to
# quote; numbers as canon() writes them), or a correction's billed_earlier row (the
# line's quantity less those rows). Hashed, and stored unless it is only wanted back.
_ASSEMBLE = """
WITH piece AS (
    SELECT * FROM unnest(%(doc)s::integer[], %(literal)s::text[], %(span)s::integer[],
                         %(namespace)s::text[], %(gb)s::boolean[], %(prefix)s::text[],
                         %(suffix)s::text[], %(quantity)s::numeric[], %(expected)s::numeric[])
           WITH ORDINALITY
           AS p(doc, literal, span, namespace, gb, prefix, suffix, quantity, expected, n)
), span AS (
    SELECT * FROM unnest(%(span_start)s::timestamptz[], %(span_end)s::timestamptz[])
           WITH ORDINALITY AS s(span_start, span_end, span)
), days AS (
    -- the stripes summed per key first (sql/080), already in the order the rows are joined
    SELECT s.span, d.namespace,
           string_agg(d.day || d.function_name || ',' || trim_scale(d.gb_seconds)::text, E'\n'
                      ORDER BY d.day_start, d.function_name) FILTER (WHERE d.gb_seconds <> 0)
               AS gb_rows,
           string_agg(d.day || d.function_name || ',' || d.invocations::text, E'\n'
                      ORDER BY d.day_start, d.function_name) FILTER (WHERE d.invocations <> 0)
               AS inv_rows,
           sum(d.gb_seconds) AS gb_sum, sum(d.invocations) AS inv_sum
      FROM (SELECT namespace, day_start, function_name,
                   to_char(day_start AT TIME ZONE 'UTC', 'YYYY-MM-DD,') AS day,
                   sum(gb_seconds) AS gb_seconds, sum(invocations) AS invocations
              FROM openfaas_metering.function_usage_daily_stripes
             WHERE day_start >= %(lo)s AND day_start < %(hi)s
               AND namespace = ANY(%(namespaces)s)
             GROUP BY namespace, day_start, function_name) AS d
      JOIN span s ON d.day_start >= s.span_start AND d.day_start < s.span_end
     GROUP BY s.span, d.namespace
), csv AS (
    SELECT p.doc, string_agg(CASE
               WHEN p.literal IS NOT NULL THEN p.literal
               WHEN p.quantity IS NOT NULL
               THEN p.prefix || trim_scale(p.quantity - coalesce(
                        CASE WHEN p.gb THEN d.gb_sum ELSE d.inv_sum END, 0))::text
                    || p.suffix || E'\r\n'
               ELSE coalesce(p.prefix || replace(CASE WHEN p.gb THEN d.gb_rows
                                                      ELSE d.inv_rows END,
                                                 E'\n', p.suffix || E'\r\n' || p.prefix)
                             || p.suffix || E'\r\n', '')
           END, '' ORDER BY p.n) AS text,
           coalesce(bool_or(p.expected <> coalesce(CASE WHEN p.gb THEN d.gb_sum
                                                        ELSE d.inv_sum END, 0)), false)
               AS moved
      FROM piece p LEFT JOIN days d ON d.span = p.span AND d.namespace = p.namespace
     GROUP BY p.doc
), hashed AS (
    SELECT doc, text, moved, encode(sha256(convert_to(text, 'UTF8')), 'hex') AS sha256
      FROM csv
), stored AS (
    INSERT INTO openfaas_metering.document_usage_csvs (sha256, csv)
    SELECT sha256, text FROM hashed WHERE %(store)s
    ON CONFLICT (sha256) DO NOTHING
)
SELECT doc, sha256, CASE WHEN NOT %(store)s THEN text END, moved FROM hashed"""


def _whole_utc_days(days: list) -> bool:
    """Every one of these local days (local_days) is a whole UTC day."""
    return bool(days) and all(a.astimezone(timezone.utc).time() == _MIDNIGHT
                              and b - a == _DAY for _, a, b in days)


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
