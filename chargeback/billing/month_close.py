"""aggregate-month's work: close periods into invoices, re-queue unsent ones, verify, export.

Closing a period takes a transaction-scoped advisory lock on it, so two calls
at once produce one set of invoices: the second finds them finalized. Within
the transaction every tenant with usage, capacity or late usage of an earlier
month gets one invoice: finalized with a number (gap-free per calendar year of
issue, taken from invoice_number_counters in this transaction, so a rollback
gives the numbers back), or kept in draft with the reasons. A finalized
invoice is never recomputed. After the commit each finalized invoice that is
neither sent nor undeliverable, and was not queued within REQUEUE_MINUTES, is
claimed (queued_at, queued_count) and handed to email-invoice by
asynchronous invocation with {"invoice_id": ...}.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
from psycopg.types.json import Jsonb

from chargeback.billing import export as invoice_export
from chargeback.billing import invoicing, pricebook_store
from chargeback.billing import store as billing_store
from chargeback.billing.invoicing import (
    Draft,
    Line,
    billed_rows,
    quantities_rows,
    sha256_json,
)
from chargeback.billing.periods import (
    Period,
    PeriodError,
    period,
    period_of,
    periods_between,
    preceding,
)
from chargeback.billing.pricebook import PriceBook
from chargeback.core import db, partitions
from chargeback.core.gateway import GatewayClient, GatewayError
from chargeback.core.meters import DNS_LABEL
from chargeback.core.responses import RequestError
from chargeback.core.settings import Settings
# billing reports its facts to the operator's endpoints through the outbox, in the
# transaction that makes them (the event exists exactly when the invoice does)
from chargeback.webhooks import outbox as webhook_outbox

EMAIL_FUNCTION = "email-invoice"
_OPTIONS = ("period", "tenant", "dry_run", "verify", "export")


@dataclass(frozen=True)
class Options:
    period: str | None = None
    tenant: str | None = None
    dry_run: bool = False
    verify: str | None = None
    export: str | None = None


def parse_options(body: bytes) -> Options:
    """The JSON body's options; RequestError(400) naming the field that is wrong."""
    if not body or not body.strip():
        return Options()
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        raise RequestError(400, "body: expected a JSON object such as "
                                '{"period": "2026-09"}') from None
    if not isinstance(doc, dict):
        raise RequestError(400, "body: expected a JSON object")
    for key in doc:
        if key not in _OPTIONS:
            raise RequestError(400, f"{key}: unknown option (known: {', '.join(_OPTIONS)})")
    for key in ("period", "tenant", "verify", "export"):
        if key in doc and not (isinstance(doc[key], str) and doc[key]):
            raise RequestError(400, f"{key}: expected a non-empty string")
    if "period" in doc:
        try:
            period(doc["period"], "UTC")
        except PeriodError as exc:
            raise RequestError(400, f"period: {exc}") from None
    if "tenant" in doc and not DNS_LABEL.fullmatch(doc["tenant"]):
        raise RequestError(400, "tenant: expected a namespace name (lowercase DNS label)")
    for key in ("verify", "export"):
        # NUL, controls and lone surrogates cannot be sent to PostgreSQL (a 500, not a 404)
        if key in doc and not (len(doc[key]) <= 100 and doc[key].isprintable()):
            raise RequestError(400, f"{key}: expected an invoice number such as "
                                    "INV-2026-000042")
    if "dry_run" in doc and not isinstance(doc["dry_run"], bool):
        raise RequestError(400, "dry_run: expected true or false")
    lookups = [k for k in ("verify", "export") if k in doc]
    if lookups and len(doc) > 1:
        other = next(k for k in doc if k != lookups[0])
        raise RequestError(400, f"{other}: not allowed with {lookups[0]}")
    return Options(doc.get("period"), doc.get("tenant"), doc.get("dry_run", False),
                   doc.get("verify"), doc.get("export"))


def _utc(instant: datetime) -> datetime:
    return instant.astimezone(timezone.utc)


def windows(p: Period, books: list[PriceBook], end: datetime | None = None
            ) -> list[tuple[datetime, datetime]]:
    """The period [start, end) cut at every price change of the books."""
    stop = min(end, p.end) if end else p.end
    cuts = sorted({c for b in books for c in b.cut_points(p.start, stop)})
    edges = [p.start, *cuts, stop]
    return [(_utc(a), _utc(b)) for a, b in zip(edges, edges[1:])]


def _iso_windows(ws) -> list[list[str]]:
    return [[a.isoformat(), b.isoformat()] for a, b in ws]


@dataclass
class PeriodResult:
    period: str
    invoices: list[dict] = field(default_factory=list)
    drafts: list[dict] = field(default_factory=list)
    closed: bool = False

    def as_json(self) -> dict:
        return {"period": self.period, "closed": self.closed, "invoices": self.invoices,
                "drafts": self.drafts}


_TENANTS = """
SELECT namespace, coalesce(plan_override, plan), coalesce(currency_override, currency),
       tax_rate_override, coalesce(display_name_override, display_name, namespace),
       coalesce(email_override, email), coalesce(locale_override, locale, 'en')
  FROM openfaas_metering.tenants WHERE namespace = ANY(%s)"""

_BILLED = """
SELECT i.namespace, coalesce(l.adjustment_period, i.period), l.meter, l.sku, l.spot,
       l.price_from, l.quantity
  FROM openfaas_metering.invoice_lines l
  JOIN openfaas_metering.invoices i USING (invoice_id)
 WHERE i.status <> 'draft' AND l.kind IN ('usage', 'capacity', 'adjustment')
   AND coalesce(l.adjustment_period, i.period) = ANY(%(periods)s)
   AND (%(all)s OR i.namespace = ANY(%(namespaces)s))"""


def _late_inputs(conn: psycopg.Connection, p: Period, latest: PriceBook,
                 namespaces: list[str] | None) -> dict[str, list[dict]]:
    """namespace -> late-usage inputs for earlier months (finalized or closed) whose
    quantities now exceed what was billed for them."""
    closed = {name for (name,) in conn.execute(
        "SELECT period FROM openfaas_metering.closed_periods WHERE period < %s", (p.name,))}
    earlier = conn.execute(
        """SELECT period FROM openfaas_metering.closed_periods WHERE period < %(p)s
           UNION
           SELECT DISTINCT period FROM openfaas_metering.invoices
            WHERE period < %(p)s AND status <> 'draft'
              AND (%(all)s OR namespace = ANY(%(namespaces)s))
           ORDER BY 1""",
        {"p": p.name, "all": namespaces is None, "namespaces": namespaces or []}).fetchall()
    if not earlier:
        return {}
    names = [row[0] for row in earlier]
    billed: dict[tuple[str, str], list[tuple]] = {}
    for ns, q_period, meter, sku, spot, price_from, quantity in conn.execute(
            _BILLED, {"periods": names, "all": namespaces is None,
                      "namespaces": namespaces or []}):
        billed.setdefault((ns, q_period), []).append((meter, sku, spot, price_from, quantity))
    invoiced = {(ns, per): (plan, version) for ns, per, plan, version, status in conn.execute(
        """SELECT namespace, period, plan, price_book_version, status
             FROM openfaas_metering.invoices WHERE period = ANY(%s)""", (names,))
        if status != "draft"}
    # drafts before this month: late usage of a month before a draft goes on that draft
    drafts: dict[str, list[str]] = {}
    for ns, per in conn.execute("SELECT namespace, period FROM openfaas_metering.invoices"
                                " WHERE period < %s AND status = 'draft'", (p.name,)):
        drafts.setdefault(ns, []).append(per)
    out: dict[str, list[dict]] = {}
    for name in names:
        q = period(name, p.timezone)
        versions = {v for (_, per), (_, v) in invoiced.items() if per == name}
        books = [latest] + [pricebook_store.version(conn, v) for v in sorted(versions)]
        ws = windows(q, books)
        for ns, current in billing_store.quantities(conn, ws, namespaces).items():
            if (ns, name) not in invoiced and name not in closed:
                continue  # that month's own close (still open for it) will invoice it
            if any(name <= draft < p.name for draft in drafts.get(ns, ())):
                continue  # its own draft, or an earlier draft that will bill it
            plan, version = invoiced.get((ns, name), (None, latest.version))
            rows = billed_rows(billed.get((ns, name), []))
            billed_q = {}
            for m, s, sp, f, qty in rows:
                billed_q[(m, s, sp)] = billed_q.get((m, s, sp), Decimal(0)) + Decimal(qty)
            now_q = {}
            for (m, s, sp, _), qty in current.items():
                now_q[(m, s, sp)] = now_q.get((m, s, sp), Decimal(0)) + qty
            if all(qty <= billed_q.get(k, 0) for k, qty in now_q.items()):
                continue
            out.setdefault(ns, []).append({
                "period": name, "plan": plan, "price_book_version": version,
                "windows": _iso_windows(ws), "quantities": quantities_rows(current),
                "billed": rows})
    return out


def _tenants(conn: psycopg.Connection, namespaces: list[str]) -> dict[str, tuple]:
    # every namespace with usage is billed, whether or not meter-capacity has seen it
    conn.execute("""INSERT INTO openfaas_metering.tenants (namespace)
                    SELECT unnest(%s::text[]) ORDER BY 1 ON CONFLICT (namespace) DO NOTHING""",
                 (namespaces,))
    return {row[0]: row[1:] for row in conn.execute(_TENANTS, (namespaces,))}


def compute(conn: psycopg.Connection, p: Period, book: PriceBook,
            namespaces: list[str] | None, until: datetime | None = None
            ) -> list[tuple[dict, Draft, tuple]]:
    """(inputs, draft, tenant details) for every tenant of the period not yet finalized."""
    invoiced = dict(conn.execute(
        "SELECT namespace, status FROM openfaas_metering.invoices WHERE period = %s",
        (p.name,)).fetchall())
    closed = conn.execute("SELECT 1 FROM openfaas_metering.closed_periods WHERE period = %s",
                          (p.name,)).fetchone() is not None
    ws = windows(p, [book], until)
    current = billing_store.quantities(conn, ws, namespaces)
    late = _late_inputs(conn, p, book, namespaces) if until is None else {}
    # A closed month only recomputes its drafts (none by definition): usage that
    # arrives for it later is late usage, billed on the next invoice instead.
    billable = sorted(ns for ns in set(current) | set(late)
                      if invoiced.get(ns, "draft") == "draft"
                      and not (closed and ns not in invoiced))
    details = _tenants(conn, billable) if billable else {}
    books = {book.version: book}
    out = []
    for ns in billable:
        plan, currency, tax_override, *_ = details[ns]
        for entry in late.get(ns, []):
            books.setdefault(entry["price_book_version"],
                             pricebook_store.version(conn, entry["price_book_version"]))
        inputs = {"namespace": ns, "period": p.name, "timezone": p.timezone,
                  "price_book_version": book.version, "plan": plan,
                  "tenant_currency": currency,
                  "tax_rate_override": None if tax_override is None else str(tax_override),
                  "windows": _iso_windows(ws),
                  "quantities": quantities_rows(current.get(ns, {})),
                  "late": late.get(ns, [])}
        out.append((inputs, invoicing.build(inputs, books), details[ns]))
    return out


# Every invoice of the close in one statement (arrays in namespace order); a
# finalized invoice is never overwritten.
_UPSERT_INVOICES = """
INSERT INTO openfaas_metering.invoices AS i
    (namespace, period, period_start, period_end, billing_timezone, status, draft_reasons,
     plan, currency, price_book_version, bill_to_name, bill_to_email, locale, subtotal,
     tax_rate, tax, total, number, number_year, number_seq, issued_at, inputs,
     inputs_sha256, lines_sha256, computed_at)
SELECT namespace, %(period)s, %(period_start)s, %(period_end)s, %(timezone)s,
       status, reasons, plan, currency, %(version)s, name, email, locale, subtotal,
       tax_rate, tax, total, number,
       CASE WHEN number IS NOT NULL THEN %(year)s::integer END, seq,
       CASE WHEN number IS NOT NULL THEN %(issued_at)s::timestamptz END,
       inputs, inputs_sha256, lines_sha256, now()
  FROM unnest(%(namespace)s::text[], %(status)s::text[],
              %(plan)s::text[], %(currency)s::text[], %(name)s::text[], %(email)s::text[],
              %(locale)s::text[], %(subtotal)s::numeric[], %(tax_rate)s::numeric[],
              %(tax)s::numeric[], %(total)s::numeric[], %(number)s::text[],
              %(seq)s::integer[], %(inputs_sha256)s::text[], %(lines_sha256)s::text[])
       WITH ORDINALITY
       AS v(namespace, status, plan, currency, name, email, locale, subtotal,
            tax_rate, tax, total, number, seq, inputs_sha256, lines_sha256, n)
  -- JSON documents travel as one JSON array each (a jsonb[] array would be escaped twice)
  JOIN jsonb_array_elements(%(reasons)s::jsonb) WITH ORDINALITY AS r(reasons, n) USING (n)
  JOIN jsonb_array_elements(%(inputs)s::jsonb) WITH ORDINALITY AS j(inputs, n) USING (n)
ON CONFLICT (namespace, period) DO UPDATE SET
    status = excluded.status, draft_reasons = excluded.draft_reasons, plan = excluded.plan,
    currency = excluded.currency, price_book_version = excluded.price_book_version,
    bill_to_name = excluded.bill_to_name, bill_to_email = excluded.bill_to_email,
    locale = excluded.locale, subtotal = excluded.subtotal, tax_rate = excluded.tax_rate,
    tax = excluded.tax, total = excluded.total, number = excluded.number,
    number_year = excluded.number_year, number_seq = excluded.number_seq,
    issued_at = excluded.issued_at, inputs = excluded.inputs,
    inputs_sha256 = excluded.inputs_sha256, lines_sha256 = excluded.lines_sha256,
    computed_at = now()
 WHERE i.status = 'draft'
RETURNING namespace, invoice_id"""

_COPY_LINES = """
COPY openfaas_metering.invoice_lines
    (invoice_id, line_no, kind, meter, sku, spot, description, quantity, unit, unit_price,
     tiers, tier_mode, allowance, discount_percent, discount, amount, price_from, price_to,
     adjustment_period) FROM STDIN"""

# Numbers for `n` invoices in one statement: the counter row is locked until
# the finalizing transaction ends, so concurrent finalizers queue here and a
# rollback hands the numbers back: no gap.
_TAKE_NUMBERS = """
INSERT INTO openfaas_metering.invoice_number_counters AS c (year, last_seq)
VALUES (%(year)s, %(n)s)
ON CONFLICT (year) DO UPDATE SET last_seq = c.last_seq + %(n)s
RETURNING last_seq"""


def format_number(prefix: str, year: int, seq: int) -> str:
    return f"{prefix}{year}-{seq:06d}"


def close_period(conn: psycopg.Connection, settings: Settings, p: Period, book: PriceBook,
                 namespaces: list[str] | None = None) -> PeriodResult:
    """Close `p` inside the caller's transaction (see the module); what it did."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                 (f"chargeback close {p.name}",))
    computed = compute(conn, p, book, namespaces)
    issued_at = conn.execute("SELECT now()").fetchone()[0]
    year = _local_year(issued_at, settings)  # the calendar year of issue
    final = [c for c in computed if not c[1].reasons]
    last_seq = 0
    if final:
        last_seq = conn.execute(_TAKE_NUMBERS, {"year": year, "n": len(final)}).fetchone()[0]
    seq = last_seq - len(final)
    result = PeriodResult(p.name)
    rows: dict[str, list] = {k: [] for k in (
        "namespace", "status", "reasons", "plan", "currency", "name", "email", "locale",
        "subtotal", "tax_rate", "tax", "total", "number", "seq", "inputs", "inputs_sha256",
        "lines_sha256")}
    for inputs, draft, (_, _, _, name, email, locale) in computed:
        number = None
        if not draft.reasons:
            seq += 1
            number = format_number(settings.invoice_prefix, year, seq)
        for key, value in (
                ("namespace", draft.namespace), ("reasons", draft.reasons),
                ("status", "draft" if draft.reasons else "finalized"), ("plan", draft.plan),
                ("currency", draft.currency), ("name", name), ("email", email),
                ("locale", locale), ("subtotal", draft.subtotal), ("tax_rate", draft.tax_rate),
                ("tax", draft.tax), ("total", draft.total), ("number", number),
                ("seq", seq if number else None), ("inputs", inputs),
                ("inputs_sha256", sha256_json(inputs)), ("lines_sha256", draft.lines_sha256)):
            rows[key].append(value)
    ids = dict(conn.execute(_UPSERT_INVOICES, {
        "period": p.name, "period_start": p.start, "period_end": p.end,
        "timezone": p.timezone, "version": book.version, "year": year,
        "issued_at": issued_at, **rows, "reasons": Jsonb(rows["reasons"]),
        "inputs": Jsonb(rows["inputs"])}).fetchall()) if computed else {}
    conn.execute("DELETE FROM openfaas_metering.invoice_lines WHERE invoice_id = ANY(%s)",
                 (list(ids.values()),))
    with conn.cursor().copy(_COPY_LINES) as copy:
        for _, draft, _ in computed:
            for line_no, line in enumerate(draft.lines, 1):
                copy.write_row(_line_row(ids[draft.namespace], line_no, line))
    for (_, draft, _), number in zip(computed, rows["number"]):
        if number:
            result.invoices.append({"number": number, "tenant": draft.namespace,
                                    "total": str(draft.total), "currency": draft.currency,
                                    "status": "finalized",
                                    "invoice_id": str(ids[draft.namespace])})
        else:
            result.drafts.append({"tenant": draft.namespace, "reasons": draft.reasons})
    for invoice in result.invoices:  # the webhook, in the finalizing transaction
        webhook_outbox.emit(conn, "invoice.finalized", {**invoice, "period": p.name})
    if namespaces is None and not result.drafts:
        conn.execute(
            """INSERT INTO openfaas_metering.closed_periods
                   (period, period_start, period_end, billing_timezone, price_book_version,
                    invoices)
               VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (period) DO NOTHING""",
            (p.name, p.start, p.end, p.timezone, book.version, len(result.invoices)))
        result.closed = True
    return result


def _local_year(instant: datetime, settings: Settings) -> int:
    return period_of(instant, settings.billing_timezone).first_day.year


def _line_row(invoice_id, line_no: int, line: Line) -> tuple:
    return (invoice_id, line_no, line.kind, line.meter, line.sku, line.spot, line.description,
            line.quantity, line.unit, line.unit_price,
            Jsonb(list(line.tiers)) if line.tiers is not None else None, line.tier_mode,
            line.allowance, line.discount_percent, line.discount, line.amount,
            line.price_from, line.price_to, line.adjustment_period)


def draft_json(draft: Draft) -> dict:
    return {"tenant": draft.namespace, "period": draft.period, "plan": draft.plan,
            "currency": draft.currency, "reasons": draft.reasons,
            "subtotal": None if draft.subtotal is None else str(draft.subtotal),
            "tax": None if draft.tax is None else str(draft.tax),
            "total": None if draft.total is None else str(draft.total),
            "lines": [{k: v for k, v in line.canonical().items() if v is not None}
                      for line in draft.lines]}


def _due(settings: Settings, now: datetime) -> Period:
    """The latest period whose end plus CLOSE_GRACE_HOURS has passed."""
    running = period_of(now - timedelta(hours=settings.close_grace_hours),
                        settings.billing_timezone)
    return preceding(running)


def run(settings: Settings, options: Options, now: datetime,
        client: GatewayClient | None = None) -> dict:
    """What one call of aggregate-month does with `options`; the response body."""
    if not options.dry_run:
        # The hourly run keeps function_usage's coming months created ahead of
        # time, so no delivery ever creates one inside its own transaction.
        with db.transaction(settings) as conn:
            partitions.ensure_ahead(conn)
    pricebook_store.ensure_file_loaded(settings)
    tz = settings.billing_timezone
    namespaces = [options.tenant] if options.tenant else None
    with db.transaction(settings) as conn:
        book = pricebook_store.latest(conn)
    if options.dry_run:
        p = period(options.period, tz) if options.period else period_of(now, tz)
        with db.transaction(settings) as conn:
            computed = compute(conn, p, book, namespaces, until=min(now, p.end)
                               if now < p.end else None)
            conn.rollback()  # dry run: not even the tenants it would create are kept
        return {"dry_run": True, "period": p.name,
                "month_to_date": now < p.end,
                "invoices": [draft_json(d) for _, d, _ in computed]}
    if options.period:
        p = period(options.period, tz)
        if p.end > now:
            raise RequestError(400, f"period: {p.name} has not ended (it ends "
                                    f"{p.end.isoformat()}); use dry_run for an estimate")
        todo = [p]
    else:
        todo = _periods_to_close(settings, now)
    results = []
    for p in todo:
        with db.transaction(settings) as conn:
            results.append(close_period(conn, settings, p, book, namespaces))
    if any(r.invoices for r in results):
        webhook_outbox.wake(settings)
    queued, errors = requeue(settings, client or GatewayClient(settings), namespaces)
    return {"price_book_version": book.version, "periods": [r.as_json() for r in results],
            "queued": queued, "queue_errors": errors}


def _periods_to_close(settings: Settings, now: datetime) -> list[Period]:
    tz = settings.billing_timezone
    last = _due(settings, now)
    with db.transaction(settings) as conn:
        first_at = billing_store.first_activity(conn)
        if first_at is None:
            return []
        first = period_of(first_at, tz)
        if first.start > last.start:
            return []
        closed = {name for (name,) in conn.execute(
            "SELECT period FROM openfaas_metering.closed_periods WHERE period >= %s",
            (first.name,))}
    return [p for p in periods_between(first, last) if p.name not in closed]


_CLAIM = """
UPDATE openfaas_metering.invoices SET queued_at = now(), queued_count = queued_count + 1
 WHERE invoice_id IN (
       SELECT invoice_id FROM openfaas_metering.invoices
        WHERE status = 'finalized'
          AND (queued_at IS NULL OR queued_at < now() - make_interval(mins => %(minutes)s))
          AND (%(all)s OR namespace = ANY(%(namespaces)s))
        ORDER BY number
          FOR UPDATE SKIP LOCKED)
   AND status = 'finalized'
   AND (queued_at IS NULL OR queued_at < now() - make_interval(mins => %(minutes)s))
RETURNING invoice_id, number"""


def requeue(settings: Settings, client: GatewayClient, namespaces: list[str] | None = None
            ) -> tuple[list[str], list[str]]:
    """Hand every finalized, unsent invoice not queued lately to email-invoice, once each.

    Claimed first (committed), then invoked; an invocation the gateway refuses
    is unclaimed so the next run tries it again."""
    with db.transaction(settings) as conn:
        claimed = conn.execute(_CLAIM, {"minutes": settings.requeue_minutes,
                                        "all": namespaces is None,
                                        "namespaces": namespaces or []}).fetchall()
    queued, errors = [], []
    for invoice_id, number in sorted(claimed, key=lambda r: r[1]):
        try:
            client.invoke_async(EMAIL_FUNCTION,
                                json.dumps({"invoice_id": str(invoice_id)}).encode(),
                                headers={"Content-Type": "application/json"})
            queued.append(number)
        except GatewayError as exc:
            errors.append(f"{number}: {exc}")
            with db.transaction(settings) as conn:
                conn.execute("""UPDATE openfaas_metering.invoices
                                   SET queued_at = NULL, queued_count = queued_count - 1
                                 WHERE invoice_id = %s""", (invoice_id,))
    return queued, errors


_STORED_LINES = """
SELECT kind, description, quantity, unit, amount, meter, sku, spot, unit_price, tiers,
       tier_mode, allowance, discount_percent, discount, price_from, price_to,
       adjustment_period
  FROM openfaas_metering.invoice_lines WHERE invoice_id = %s ORDER BY line_no"""


def _invoice_by_number(conn: psycopg.Connection, number: str, field_name: str) -> tuple:
    row = conn.execute(
        """SELECT invoice_id, namespace, period, status, inputs, inputs_sha256, lines_sha256,
                  subtotal, tax, total
             FROM openfaas_metering.invoices WHERE number = %s""", (number,)).fetchone()
    if row is None:
        raise RequestError(404, f"{field_name}: no invoice numbered {number!r}")
    return row


def verify(settings: Settings, number: str) -> dict:
    """Recompute a finalized invoice's inputs (from the rows now) and lines (from its
    stored inputs and price book version) and report every difference; changes nothing."""
    with db.transaction(settings) as conn:
        (invoice_id, ns, period_name, status, inputs, inputs_sha256, lines_sha256,
         subtotal, tax, total) = _invoice_by_number(conn, number, "verify")
        versions = {inputs["price_book_version"]} | {
            late["price_book_version"] for late in inputs["late"]}
        books = {v: pricebook_store.version(conn, v) for v in versions}
        rebuilt = invoicing.build(inputs, books)
        stored = [Line(*row[:9], tuple(row[9]) if row[9] is not None else None, *row[10:])
                  for row in conn.execute(_STORED_LINES, (invoice_id,))]
        now_rows = quantities_rows(billing_store.quantities(
            conn, invoicing.windows_of(inputs), [ns]).get(ns, {}))
        adjusted_on = [n for (n,) in conn.execute(
            """SELECT DISTINCT i.number FROM openfaas_metering.invoice_lines l
                 JOIN openfaas_metering.invoices i USING (invoice_id)
                WHERE l.adjustment_period = %s AND i.namespace = %s AND i.status <> 'draft'
                ORDER BY 1""", (period_name, ns))]
    differences = []
    if sha256_json(inputs) != inputs_sha256:
        differences.append("stored inputs do not match inputs_sha256")
    if sha256_json([line.canonical() for line in stored]) != lines_sha256:
        differences.append("stored lines do not match lines_sha256")
    if rebuilt.lines_sha256 != lines_sha256 or (rebuilt.subtotal, rebuilt.tax,
                                                rebuilt.total) != (subtotal, tax, total):
        differences.append("lines recomputed from the inputs differ from the stored lines")
    stored_rows = {tuple(r[:4]): r[4] for r in inputs["quantities"]}
    current_rows = {tuple(r[:4]): r[4] for r in now_rows}
    late = [{"meter": k[0], "sku": k[1], "spot": k[2], "window": k[3],
             "invoiced": stored_rows.get(k, "0"), "now": current_rows.get(k, "0")}
            for k in sorted(set(stored_rows) | set(current_rows), key=str)
            if stored_rows.get(k) != current_rows.get(k)]
    return {"verify": number, "status": status, "match": not differences,
            "differences": differences, "inputs_sha256": inputs_sha256,
            "lines_sha256": lines_sha256,
            # usage stored after finalization: billed as adjustments, not a difference
            "late_usage": late, "late_usage_adjusted_on": adjusted_on}


def export(settings: Settings, number: str) -> str:
    """The usage CSV behind invoice `number` (see invoice_export)."""
    with db.transaction(settings) as conn:
        invoice_id = _invoice_by_number(conn, number, "export")[0]
        return invoice_export.usage_csv(conn, invoice_id)
