"""aggregate-month's work: close periods into invoices, correct closed months that got
late usage, re-queue unsent documents, verify, export.

Every close and correction holds one transaction-scoped advisory lock
(`CLOSE_LOCK`) from its first read to its commit, so two calls at once (the
hourly run beside an operator's request, two periods) never bill anything
twice: the second reads what the first committed.

Settling a period P (`settle`): P's bounds are what was stored for it (its
first close fixed them; a change of BILLING_TIMEZONE starts the next period
at the last closed period's end: one transitional period), priced with the
price book version current when P was first closed. Every tenant with usage,
capacity or a subscription in P without a finalized invoice for P gets one:
finalized with a number (gap-free per calendar year of issue, from
invoice_number_counters in this transaction, so a rollback gives the numbers
back) or kept in draft with the reasons. A tenant whose invoice for P is
finalized is re-priced at P's terms (its invoice's stored plan, currency, tax
and subscription) from everything now known for P; the difference from all
documents billed for P becomes a supplementary invoice (positive, invoice
numbers) or a credit note (negative, CREDIT_NOTE_PREFIX numbers), unless it
is below CORRECTION_MIN_AMOUNT (held back, recomputed at every close). A
closed period is re-read only when the daily rollup holds rows of its days
written after it was last checked, so a close costs the new month plus the
months that really got late usage, not the whole history.

After the commit each finalized document that is neither sent nor
undeliverable, and was not queued within REQUEUE_MINUTES, is claimed
(queued_at, queued_count) and handed to email-invoice by asynchronous
invocation with {"invoice_id": ...}.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
from psycopg.types.json import Jsonb

from chargeback.billing import export as invoice_export
from chargeback.billing import credits, invoicing, pricebook_store
from chargeback.billing import store as billing_store
from chargeback.billing.invoicing import (
    Draft,
    Line,
    quantities_rows,
    sha256_json,
)
from chargeback.billing.periods import (
    Period,
    PeriodError,
    following,
    local_days,
    period,
    period_of,
    preceding,
)
from chargeback.billing.pricebook import PriceBook
from chargeback.core import db, jsonbody, partitions
from chargeback.core.gateway import GatewayClient, GatewayError
from chargeback.core.meters import DNS_LABEL, GB_SECONDS, INVOCATIONS
from chargeback.core.responses import RequestError
from chargeback.core.settings import Settings
# billing freezes documents' legal fields inside the finalizing transaction, and keeps
# a document whose VAT needs a missing exchange rate in draft
from chargeback.documents import legal, vat
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
    try:
        doc = jsonbody.parse(body, empty={})
    except jsonbody.JsonBodyError as exc:
        raise RequestError(400, 'body: expected a JSON object such as {"period": "2026-09"}; '
                                f"{exc}") from None
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


# One lock for every close and correction: what a close reads (usage, documents of
# the period) and writes (documents, numbers) is never read by another close at once.
CLOSE_LOCK = "chargeback close"
# A rollup row written by a transaction that began before a check but committed
# after it carries an earlier updated_at: look back this far (longer than any
# ingest transaction may run; every statement and lock wait is bounded).
LATE_USAGE_LOOKBACK = timedelta(minutes=10)


@dataclass
class PeriodResult:
    period: str
    period_start: datetime
    period_end: datetime
    price_book_version: int
    transitional: bool = False
    was_closed: bool = False      # closed before: this settle looked for late usage
    invoices: list[dict] = field(default_factory=list)
    drafts: list[dict] = field(default_factory=list)
    held: list[dict] = field(default_factory=list)
    waived: list[dict] = field(default_factory=list)   # late usage of a voided month
    closed: bool = False

    def as_json(self) -> dict:
        out = {"period": self.period, "closed": self.closed,
               "period_start": self.period_start.isoformat(),
               "period_end": self.period_end.isoformat(),
               "price_book_version": self.price_book_version,
               "invoices": self.invoices, "drafts": self.drafts}
        if self.transitional:
            out["transitional"] = True
        if self.held:
            out["held"] = self.held
        if self.waived:
            out["waived"] = self.waived
        return out


# What fixed a period's bounds and price book version: its close, or its first
# documents (drafts included) when some tenant kept it open.
_FIXED = """
SELECT period_start, period_end, billing_timezone, price_book_version, 0 AS o
  FROM openfaas_metering.closed_periods WHERE period = %(name)s
UNION ALL
(SELECT period_start, period_end, billing_timezone, price_book_version, 1
   FROM openfaas_metering.invoices
  WHERE period = %(name)s AND document_kind = 'invoice' AND price_book_version IS NOT NULL
  ORDER BY computed_at LIMIT 1)
ORDER BY o LIMIT 1"""


def _fixed(conn: psycopg.Connection, name: str) -> tuple[Period, int] | None:
    row = conn.execute(_FIXED, {"name": name}).fetchone()
    if row is None:
        return None
    return Period(name, _utc(row[0]), _utc(row[1]), row[2]), row[3]


def _name_before(name: str) -> str:
    return preceding(period(name, "UTC")).name


def _name_after(name: str) -> str:
    return following(period(name, "UTC")).name


@dataclass(frozen=True)
class Resolved:
    period: Period
    version: int | None     # None: not fixed yet (the version current now)
    transitional: bool


def resolve(conn: psycopg.Connection, name: str, tz: str) -> Resolved:
    """Period `name` as stored, or as it will be: in `tz`, starting where the month
    before it ended when that month is fixed (a changed BILLING_TIMEZONE)."""
    fixed = _fixed(conn, name)
    if fixed is not None:
        p, version = fixed
        return Resolved(p, version, p.start != period(name, p.timezone).start)
    p = period(name, tz)
    before = _fixed(conn, _name_before(name))
    if before is not None and before[0].end != p.start and before[0].end < p.end:
        return Resolved(Period(name, before[0].end, p.end, tz), None, True)
    return Resolved(p, None, False)


_TENANTS = """
SELECT namespace, coalesce(plan_override, plan), coalesce(currency_override, currency),
       tax_rate_override, coalesce(display_name_override, display_name, namespace),
       coalesce(email_override, email), coalesce(locale_override, locale, 'en'),
       subscribed_at, gone_at
  FROM openfaas_metering.tenants WHERE namespace = ANY(%s)"""

_SUBSCRIBED = """
SELECT namespace FROM openfaas_metering.tenants
 WHERE subscribed_at < %(end)s AND (gone_at IS NULL OR gone_at > %(start)s)
   AND (%(all)s OR namespace = ANY(%(namespaces)s))"""


def tenant_details(conn: psycopg.Connection, namespaces: list[str]) -> dict[str, tuple]:
    # every namespace with usage is billed, whether or not meter-capacity has seen it
    conn.execute("""INSERT INTO openfaas_metering.tenants (namespace)
                    SELECT unnest(%s::text[]) ORDER BY 1 ON CONFLICT (namespace) DO NOTHING""",
                 (namespaces,))
    return {row[0]: row[1:] for row in conn.execute(_TENANTS, (namespaces,))}


def subscription(p: Period, subscribed_at: datetime | None, gone_at: datetime | None
                 ) -> dict | None:
    """{"days": local days of `p` the tenant was subscribed (a day begun counts),
    "of": the period's local days}; None for a tenant never seen by meter-capacity."""
    if subscribed_at is None:
        return None
    start, end = max(p.start, subscribed_at), min(p.end, gone_at or p.end)
    days = local_days(p.start, p.end, p.timezone)
    return {"days": sum(1 for _, a, b in days if a < end and start < b), "of": len(days)}


def tenant_inputs(ns: str, p: Period, version: int, details: tuple, ws, quantities: dict,
            settings_rounding: str) -> dict:
    plan, currency, tax_override, *_, subscribed_at, gone_at = details
    return {"namespace": ns, "period": p.name, "timezone": p.timezone,
            "price_book_version": version, "plan": plan, "tenant_currency": currency,
            "tax_rate_override": None if tax_override is None else str(tax_override),
            "tax_rounding": settings_rounding,
            "subscription": subscription(p, subscribed_at, gone_at),
            "windows": _iso_windows(ws), "quantities": quantities_rows(quantities)}


def compute(conn: psycopg.Connection, p: Period, book: PriceBook,
            namespaces: list[str] | None, until: datetime | None = None,
            tax_rounding: str = "half_up") -> list[tuple[dict, Draft, tuple]]:
    """(inputs, draft, tenant details) for every tenant of the period without a
    finalized invoice for it: usage or capacity in [p.start, until or p.end), or
    subscribed during p. A subscribed tenant with nothing to bill is left out."""
    finalized = {ns for (ns,) in conn.execute(
        """SELECT namespace FROM openfaas_metering.invoices
            WHERE period = %s AND document_kind = 'invoice' AND status <> 'draft'""",
        (p.name,))}
    ws = windows(p, [book], until)
    current = billing_store.quantities(conn, ws, namespaces)
    subscribed = {ns for (ns,) in conn.execute(_SUBSCRIBED, {
        "start": p.start, "end": p.end, "all": namespaces is None,
        "namespaces": namespaces or []})}
    billable = sorted((set(current) | subscribed) - finalized)
    details = tenant_details(conn, billable) if billable else {}
    out = []
    for ns in billable:
        inputs = tenant_inputs(ns, p, book.version, details[ns], ws, current.get(ns, {}),
                         tax_rounding)
        draft = invoicing.build(inputs, {book.version: book})
        if not draft.lines and not draft.reasons:
            continue   # subscribed, nothing to bill this month
        out.append((inputs, draft, details[ns]))
    return out


# Every document of the settle in one statement (arrays in namespace order): a
# month's invoice (a draft is recomputed in place, a finalized one never
# overwritten) or a correction of it.
_UPSERT_DOCUMENTS = """
INSERT INTO openfaas_metering.invoices AS i
    (namespace, period, period_start, period_end, billing_timezone, status, draft_reasons,
     plan, currency, price_book_version, bill_to_name, bill_to_email, locale, subtotal,
     tax_rate, tax, total, number, number_year, number_seq, issued_at, inputs,
     inputs_sha256, lines_sha256, computed_at, document_kind, corrects_invoice_id,
     correction_no, usage_csv_sha256, replaces_invoice_id)
SELECT namespace, %(period)s, %(period_start)s, %(period_end)s, %(timezone)s,
       status, reasons, plan, currency, %(version)s, name, email, locale, subtotal,
       tax_rate, tax, total, number,
       CASE WHEN number IS NOT NULL THEN %(year)s::integer END, seq,
       CASE WHEN number IS NOT NULL THEN %(issued_at)s::timestamptz END,
       inputs, inputs_sha256, lines_sha256, now(), kind, corrects, correction_no,
       usage_csv_sha256, replaces
  FROM unnest(%(namespace)s::text[], %(status)s::text[],
              %(plan)s::text[], %(currency)s::text[], %(name)s::text[], %(email)s::text[],
              %(locale)s::text[], %(subtotal)s::numeric[], %(tax_rate)s::numeric[],
              %(tax)s::numeric[], %(total)s::numeric[], %(number)s::text[],
              %(seq)s::integer[], %(inputs_sha256)s::text[], %(lines_sha256)s::text[],
              %(kind)s::text[], %(corrects)s::uuid[], %(correction_no)s::integer[],
              %(usage_csv_sha256)s::text[], %(replaces)s::uuid[])
       WITH ORDINALITY
       AS v(namespace, status, plan, currency, name, email, locale, subtotal,
            tax_rate, tax, total, number, seq, inputs_sha256, lines_sha256, kind, corrects,
            correction_no, usage_csv_sha256, replaces, n)
  -- JSON documents travel as one JSON array each (a jsonb[] array would be escaped twice)
  JOIN jsonb_array_elements(%(reasons)s::jsonb) WITH ORDINALITY AS r(reasons, n) USING (n)
  JOIN jsonb_array_elements(%(inputs)s::jsonb) WITH ORDINALITY AS j(inputs, n) USING (n)
-- (a reissue, replaces_invoice_id set, is a new row: billing.adjustments)
ON CONFLICT (namespace, period) WHERE document_kind = 'invoice' AND replaces_invoice_id IS NULL
DO UPDATE SET
    status = excluded.status, draft_reasons = excluded.draft_reasons, plan = excluded.plan,
    currency = excluded.currency, price_book_version = excluded.price_book_version,
    bill_to_name = excluded.bill_to_name, bill_to_email = excluded.bill_to_email,
    locale = excluded.locale, subtotal = excluded.subtotal, tax_rate = excluded.tax_rate,
    tax = excluded.tax, total = excluded.total, number = excluded.number,
    number_year = excluded.number_year, number_seq = excluded.number_seq,
    issued_at = excluded.issued_at, inputs = excluded.inputs,
    inputs_sha256 = excluded.inputs_sha256, lines_sha256 = excluded.lines_sha256,
    computed_at = now(), usage_csv_sha256 = excluded.usage_csv_sha256
 WHERE i.status = 'draft'
RETURNING namespace, invoice_id"""

_COPY_LINES = """
COPY openfaas_metering.invoice_lines
    (invoice_id, line_no, kind, meter, sku, spot, description, quantity, unit, unit_price,
     tiers, tier_mode, allowance, discount_percent, discount, amount, price_from, price_to,
     adjustment_period, gross, billed_days, period_days) FROM STDIN"""

# Numbers for `n` documents of a series in one statement: the counter row is
# locked until the finalizing transaction ends, so concurrent finalizers queue
# here and a rollback hands the numbers back: no gap.
_TAKE_NUMBERS = {
    "invoice": """
INSERT INTO openfaas_metering.invoice_number_counters AS c (year, last_seq)
VALUES (%(year)s, %(n)s)
ON CONFLICT (year) DO UPDATE SET last_seq = c.last_seq + %(n)s
RETURNING last_seq""",
    "credit_note": """
INSERT INTO openfaas_metering.credit_note_number_counters AS c (year, last_seq)
VALUES (%(year)s, %(n)s)
ON CONFLICT (year) DO UPDATE SET last_seq = c.last_seq + %(n)s
RETURNING last_seq"""}

# Every finalized document of the period (for the tenants asked), its stored inputs and
# figures, and what decides whether it counts as billed (see counted()).
_DOCUMENTS = """
SELECT namespace, invoice_id, document_kind, number, inputs, subtotal, tax, voided_by,
       corrects_invoice_id, correction_no, credit_reason IS NOT NULL
  FROM openfaas_metering.invoices
 WHERE period = %(period)s AND status <> 'draft'
   AND (%(all)s OR namespace = ANY(%(namespaces)s))
 ORDER BY namespace, document_kind = 'invoice' DESC, issued_at, correction_no"""

_BILLED_LINES = """
SELECT i.namespace, l.invoice_id, l.kind, l.description, l.quantity, l.unit, l.amount, l.meter, l.sku,
       l.spot, l.unit_price, l.tiers, l.tier_mode, l.allowance, l.discount_percent,
       l.discount, l.price_from, l.price_to, l.adjustment_period, l.gross, l.billed_days,
       l.period_days
  FROM openfaas_metering.invoice_lines l
  JOIN openfaas_metering.invoices i USING (invoice_id)
 WHERE i.period = %(period)s AND i.status <> 'draft'
   AND (%(all)s OR i.namespace = ANY(%(namespaces)s))
 ORDER BY i.namespace, i.issued_at, l.line_no"""


def format_number(prefix: str, year: int, seq: int) -> str:
    return f"{prefix}{year}-{seq:06d}"


def stored_line(row) -> Line:
    """A Line from the invoice_lines columns in _BILLED_LINES' order (after namespace and
    invoice id)."""
    (kind, description, quantity, unit, amount, meter, sku, spot, unit_price, tiers,
     tier_mode, allowance, discount_percent, discount, price_from, price_to,
     adjustment_period, gross, billed_days, period_days) = row
    return Line(kind, description, quantity, unit, amount, meter, sku, spot, unit_price,
                tuple(tiers) if tiers is not None else None, tier_mode, allowance,
                discount_percent, discount, price_from, price_to, adjustment_period, gross,
                billed_days, period_days)


@dataclass
class _Billed:
    """What has been billed for one tenant's period so far."""
    invoice_id: object = None
    number: str | None = None
    inputs: dict | None = None
    corrections: int = 0          # the last correction_no against the invoice
    subtotal: Decimal = Decimal(0)
    tax: Decimal = Decimal(0)
    lines: list = field(default_factory=list)
    ids: set = field(default_factory=set)
    waived: bool = False          # the month's invoice was voided without a reissue


@dataclass(frozen=True)
class MonthDocument:
    """A finalized document of one tenant's month, as far as counted() needs it."""
    invoice_id: object
    kind: str
    voided_by: object = None
    corrects: object = None       # corrects_invoice_id
    operator: bool = False        # an operator's credit note (credit_reason set)


def counted(docs: list[MonthDocument]) -> tuple[MonthDocument | None, list[MonthDocument]]:
    """(the month's live invoice, the documents that count as billed for the month).

    What a month's usage has been billed is its live invoice (the month's invoice,
    or the reissue that replaced a voided one) and the corrections of that invoice
    (supplementary invoices, correction credit notes). An operator's credit note or
    void is a concession, not a re-pricing: it never counts, so the next close does
    not bill again what it took off. A month whose invoice was voided without a
    reissue has no live invoice: it is waived (None, [])."""
    live = next((d for d in docs if d.kind == "invoice" and d.voided_by is None), None)
    if live is None:
        return None, []
    return live, [d for d in docs if d is live
                  or (d.corrects == live.invoice_id and not d.operator)]


def _billed(conn: psycopg.Connection, p: Period, namespaces: list[str] | None
            ) -> dict[str, _Billed]:
    params = {"period": p.name, "all": namespaces is None, "namespaces": namespaces or []}
    rows: dict[str, list] = {}
    for row in conn.execute(_DOCUMENTS, params):
        rows.setdefault(row[0], []).append(row)
    out: dict[str, _Billed] = {}
    for ns, docs in rows.items():
        month = [MonthDocument(r[1], r[2], r[7], r[8], r[10]) for r in docs]
        live, billed = counted(month)
        if live is None:
            voided = next(r for r in docs if r[2] == "invoice")
            out[ns] = _Billed(voided[1], voided[3], voided[4], waived=True)
            continue
        b = out[ns] = _Billed()
        ids = {d.invoice_id for d in billed}
        for (_, invoice_id, kind, number, inputs, subtotal, tax, _, corrects, correction_no,
             _) in docs:
            if invoice_id == live.invoice_id:
                b.invoice_id, b.number, b.inputs = invoice_id, number, inputs
            if corrects == live.invoice_id:  # operator credit notes take numbers here too
                b.corrections = max(b.corrections, correction_no)
            if invoice_id in ids:
                b.subtotal += subtotal
                b.tax += tax
        b.ids = ids
    if out:
        for row in conn.execute(_BILLED_LINES, params):
            if row[0] in out and row[1] in out[row[0]].ids:
                out[row[0]].lines.append(stored_line(row[2:]))
    return out


@dataclass
class Document:
    kind: str
    inputs: dict
    draft: Draft
    details: tuple
    corrects: object = None       # the corrected invoice's id
    corrects_number: str | None = None
    correction_no: int | None = None
    replaces: object = None       # a reissue: the voided invoice's id
    replaces_number: str | None = None


def settle(conn: psycopg.Connection, settings: Settings, resolved: Resolved,
           latest: PriceBook, namespaces: list[str] | None = None) -> PeriodResult:
    """Close or correct the period inside the caller's transaction (see the module)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (CLOSE_LOCK,))
    # what another close committed while this one waited decides the bounds and version
    resolved = resolve(conn, resolved.period.name, resolved.period.timezone) \
        if resolved.version is None else resolved
    p = resolved.period
    book = latest if resolved.version is None else pricebook_store.version(
        conn, resolved.version)
    result = PeriodResult(p.name, p.start, p.end, book.version, resolved.transitional)
    result.was_closed = conn.execute(
        "SELECT 1 FROM openfaas_metering.closed_periods WHERE period = %s",
        (p.name,)).fetchone() is not None
    documents = [Document("invoice", inputs, draft, details) for inputs, draft, details
                 in compute(conn, p, book, namespaces, tax_rounding=settings.tax_rounding)]
    billed = _billed(conn, p, namespaces)
    held = False
    if billed:
        held = _corrections(conn, settings, p, book, billed, documents, result)
    issued_at = conn.execute("SELECT now()").fetchone()[0]
    year = year_of_issue(issued_at, settings)  # the calendar year of issue
    finalize(conn, settings, p, book, documents, issued_at, year, result)
    if namespaces is None and not result.drafts:
        result.closed = True
        if not held:  # a held correction is looked at again at the next close
            conn.execute(
                """INSERT INTO openfaas_metering.closed_periods
                       (period, period_start, period_end, billing_timezone, price_book_version,
                        invoices, usage_checked_at)
                   VALUES (%s, %s, %s, %s, %s, %s, now())
                   ON CONFLICT (period) DO UPDATE SET usage_checked_at = now()""",
                (p.name, p.start, p.end, p.timezone, book.version, len(result.invoices)))
        else:
            conn.execute(
                """INSERT INTO openfaas_metering.closed_periods
                       (period, period_start, period_end, billing_timezone, price_book_version,
                        invoices, usage_checked_at)
                   VALUES (%s, %s, %s, %s, %s, %s, '-infinity')
                   ON CONFLICT (period) DO NOTHING""",
                (p.name, p.start, p.end, p.timezone, book.version, len(result.invoices)))
    return result


def _corrections(conn: psycopg.Connection, settings: Settings, p: Period, book: PriceBook,
                 billed: dict[str, _Billed], documents: list[Document],
                 result: PeriodResult) -> bool:
    """Append a correction to `documents` for every tenant whose finalized month now
    prices differently; True when one was held back (CORRECTION_MIN_AMOUNT, a draft)."""
    held = False
    by_windows: dict[str, list] = {}
    for ns, b in billed.items():
        if b.inputs is not None:
            by_windows.setdefault(json.dumps(b.inputs["windows"]), []).append(ns)
    for windows_json, names in by_windows.items():
        ws = [(datetime.fromisoformat(a), datetime.fromisoformat(z))
              for a, z in json.loads(windows_json)]
        current = billing_store.quantities(conn, ws, names)
        for ns in names:
            b = billed[ns]
            inputs = {**b.inputs, "quantities": quantities_rows(current.get(ns, {}))}
            if b.waived:  # voided without a reissue: late usage is reported, never billed
                if inputs["quantities"] != b.inputs["quantities"]:
                    result.waived.append({"tenant": ns, "voided": b.number})
                continue
            inputs.pop("late", None)  # invoices made before corrections carried late usage
            month = invoicing.build(inputs, {book.version: book} if
                                    inputs["price_book_version"] == book.version else
                                    {inputs["price_book_version"]: pricebook_store.version(
                                        conn, inputs["price_book_version"])})
            if month.reasons:
                held = True
                result.held.append({"tenant": ns, "corrects": b.number,
                                    "reasons": month.reasons})
                continue
            owed = invoicing.correction(month, b.lines, b.subtotal, b.tax)
            if not owed.total:
                continue
            if abs(owed.total) < settings.correction_min_amount:
                held = True
                result.held.append({"tenant": ns, "corrects": b.number,
                                    "total": str(owed.total), "currency": owed.currency,
                                    "reasons": ["below CORRECTION_MIN_AMOUNT"]})
                continue
            kind = invoicing.SUPPLEMENTARY if owed.total > 0 else invoicing.CREDIT_NOTE
            details = tenant_details(conn, [ns])[ns]
            documents.append(Document(kind, {**inputs, "corrects": b.number}, owed, details,
                                      b.invoice_id, b.number, b.corrections + 1))
    return held


def finalize(conn: psycopg.Connection, settings: Settings, p: Period, book: PriceBook,
             documents: list[Document], issued_at: datetime, year: int,
             result: PeriodResult) -> None:
    """Number the final documents and write them and their lines, one statement each."""
    # documents: VAT also shown in ISSUER_VAT_CURRENCY needs the month's rate, else a draft
    vat.hold_without_rate(conn, settings, p.name, [doc.draft for doc in documents])
    seqs = {}
    for series in ("invoice", "credit_note"):
        n = sum(1 for d in documents if not d.draft.reasons
                and (d.kind == "credit_note") == (series == "credit_note"))
        if n:
            last = conn.execute(_TAKE_NUMBERS[series], {"year": year, "n": n}).fetchone()[0]
            seqs[series] = last - n
    rows: dict[str, list] = {k: [] for k in (
        "namespace", "status", "reasons", "plan", "currency", "name", "email", "locale",
        "subtotal", "tax_rate", "tax", "total", "number", "seq", "inputs", "inputs_sha256",
        "lines_sha256", "kind", "corrects", "correction_no", "usage_csv_sha256", "replaces")}
    # the usage CSV of every final document, stored with it (a finalized row never changes)
    csvs = invoice_export.store_csvs(conn, p.timezone, {
        doc.draft.namespace: (doc.kind != "invoice", _csv_lines(doc))
        for doc in documents if not doc.draft.reasons})
    for doc in documents:
        draft, (_, _, _, name, email, locale, *_) = doc.draft, doc.details
        number = seq = None
        if not draft.reasons:
            series = "credit_note" if doc.kind == "credit_note" else "invoice"
            seqs[series] += 1
            seq = seqs[series]
            prefix = settings.credit_note_prefix if series == "credit_note" \
                else settings.invoice_prefix
            number = format_number(prefix, year, seq)
        for key, value in (
                ("namespace", draft.namespace), ("reasons", draft.reasons),
                ("status", "draft" if draft.reasons else "finalized"), ("plan", draft.plan),
                ("currency", draft.currency), ("name", name), ("email", email),
                ("locale", locale), ("subtotal", draft.subtotal), ("tax_rate", draft.tax_rate),
                ("tax", draft.tax), ("total", draft.total), ("number", number),
                ("seq", seq), ("inputs", doc.inputs),
                ("inputs_sha256", sha256_json(doc.inputs)),
                ("lines_sha256", draft.lines_sha256), ("kind", doc.kind),
                ("corrects", doc.corrects), ("correction_no", doc.correction_no),
                ("usage_csv_sha256", csvs.get(draft.namespace)), ("replaces", doc.replaces)):
            rows[key].append(value)
    if not documents:
        return
    # a draft's lines go while it is still a draft: once the upsert below finalizes it,
    # the database refuses to change its lines (sql/050)
    conn.execute(_DELETE_DRAFT_LINES, (p.name, [doc.draft.namespace for doc in documents]))
    ids = dict(conn.execute(_UPSERT_DOCUMENTS, {
        "period": p.name, "period_start": p.start, "period_end": p.end,
        "timezone": p.timezone, "version": book.version, "year": year,
        "issued_at": issued_at, **rows, "reasons": Jsonb(rows["reasons"]),
        "inputs": Jsonb(rows["inputs"])}).fetchall())
    with conn.cursor().copy(_COPY_LINES) as copy:
        for doc in documents:
            for line_no, line in enumerate(doc.draft.lines, 1):
                copy.write_row(_line_row(ids[doc.draft.namespace], line_no, line))
    # documents: the legal fields (addresses, tax IDs, supplier, due date, tax note) go on
    # the finalized documents in this transaction, before the database seals them
    legal.freeze(conn, settings, book,
                 [ids[doc.draft.namespace] for doc in documents if not doc.draft.reasons])
    events = []
    for doc, number in zip(documents, rows["number"]):
        draft = doc.draft
        if number:
            entry = {"number": number, "tenant": draft.namespace, "total": str(draft.total),
                     "currency": draft.currency, "status": "finalized",
                     "invoice_id": str(ids[draft.namespace])}
            if doc.kind != "invoice":
                entry.update(kind=doc.kind, corrects=doc.corrects_number)
            if doc.replaces_number:
                entry.update(replaces=doc.replaces_number)
            result.invoices.append(entry)
            events.append(("credit_note.finalized" if doc.kind == "credit_note"
                           else "invoice.finalized", {**entry, "period": p.name}))
        else:
            result.drafts.append({"tenant": draft.namespace, "reasons": draft.reasons})
    webhook_outbox.emit_many(conn, events)  # the webhooks, in the finalizing transaction


def _csv_lines(doc: Document) -> list[invoice_export.CsvLine]:
    """The document's lines with a meter, for its usage CSV; a usage line over whole
    windows of the document with the usage of those windows it was priced from, which
    its rows must add up to (the CSV is read after the pricing: usage written in
    between is caught there)."""
    ws = invoicing.windows_of(doc.inputs) if "windows" in doc.inputs else []
    starts, ends = {a for a, _ in ws}, {z for _, z in ws}
    quantities = doc.inputs.get("quantities", [])

    def expected(meter: str, start: datetime, end: datetime) -> Decimal | None:
        if meter not in (GB_SECONDS, INVOCATIONS) or start not in starts or end not in ends:
            return None
        return sum((Decimal(q) for m, _, _, w, q in quantities
                    if m == meter and start <= ws[w][0] and ws[w][1] <= end), Decimal(0))

    return [invoice_export.CsvLine(
        n, line.kind, line.meter, line.sku, line.spot, line.unit, line.price_from,
        line.price_to, line.quantity, expected(line.meter, line.price_from, line.price_to))
        for n, line in enumerate(doc.draft.lines, 1) if line.meter]


_DELETE_DRAFT_LINES = """
DELETE FROM openfaas_metering.invoice_lines AS l
 USING openfaas_metering.invoices AS i
 WHERE l.invoice_id = i.invoice_id AND i.status = 'draft' AND i.period = %s
   AND i.namespace = ANY(%s) AND i.document_kind = 'invoice' AND i.replaces_invoice_id IS NULL
"""  # the rows _UPSERT_DOCUMENTS updates; the documents it inserts have no lines yet


def close_period(conn: psycopg.Connection, settings: Settings, p: Period, book: PriceBook,
                 namespaces: list[str] | None = None) -> PeriodResult:
    """Settle period `p` (named; its stored bounds win) with `book` as the version in
    force now, inside the caller's transaction."""
    return settle(conn, settings, Resolved(p, None, False), book, namespaces)


def year_of_issue(instant: datetime, settings: Settings) -> int:
    return period_of(instant, settings.billing_timezone).first_day.year


def _line_row(invoice_id, line_no: int, line: Line) -> tuple:
    return (invoice_id, line_no, line.kind, line.meter, line.sku, line.spot, line.description,
            line.quantity, line.unit, line.unit_price,
            Jsonb(list(line.tiers)) if line.tiers is not None else None, line.tier_mode,
            line.allowance, line.discount_percent, line.discount, line.amount,
            line.price_from, line.price_to, line.adjustment_period, line.gross,
            line.billed_days, line.period_days)


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
        with db.transaction(settings) as conn:
            name = options.period or period_of(now, tz).name
            resolved = resolve(conn, name, tz)
            p = resolved.period
            if resolved.version is not None:
                book = pricebook_store.version(conn, resolved.version)
            computed = compute(conn, p, book, namespaces, until=min(now, p.end)
                               if now < p.end else None, tax_rounding=settings.tax_rounding)
            conn.rollback()  # dry run: not even the tenants it would create are kept
        return {"dry_run": True, "period": p.name, "price_book_version": book.version,
                "month_to_date": now < p.end,
                "invoices": [draft_json(d) for _, d, _ in computed]}
    if options.period:
        with db.transaction(settings) as conn:
            asked = resolve(conn, options.period, tz)
            # closing a month also corrects the closed months before it that got late usage
            todo = [resolve(conn, name, tz) for name in _late_periods(conn)
                    if name < options.period] + [asked]
        if asked.period.end > now:
            raise RequestError(400, f"period: {asked.period.name} has not ended (it ends "
                                    f"{asked.period.end.isoformat()}); use dry_run for an "
                                    "estimate")
    else:
        todo = _periods_to_settle(settings, now)
    results = [_settled(settings, resolved, book, namespaces) for resolved in todo]
    if any(r.invoices for r in results):
        webhook_outbox.wake(settings)  # after the commits: the outbox rows exist
    queued, errors = requeue(settings, client or GatewayClient(settings), namespaces)
    # a closed month looked at again for late usage is shown only when it changed
    shown = [r for r in results if r.period == options.period or not r.was_closed
             or r.invoices or r.drafts or r.held or r.waived]
    return {"price_book_version": book.version, "periods": [r.as_json() for r in shown],
            "queued": queued, "queue_errors": errors}


SETTLE_ATTEMPTS = 3


def _settled(settings: Settings, resolved: Resolved, book: PriceBook,
             namespaces: list[str] | None) -> PeriodResult:
    """settle() in a transaction of its own, again from the start when usage of the
    period was written while it ran (UsageMoved: nothing of that attempt is kept)."""
    for attempt in range(1, SETTLE_ATTEMPTS + 1):
        try:
            with db.transaction(settings) as conn:
                return settle(conn, settings, resolved, book, namespaces)
        except invoice_export.UsageMoved:
            if attempt == SETTLE_ATTEMPTS:
                raise


# Closed periods with rollup rows of their days written since they were last
# checked (late usage), oldest first: the daily rollup's updated_at index finds
# the few rows written lately, whatever the history's length.
_LATE = """
SELECT DISTINCT c.period
  FROM openfaas_metering.closed_periods c
  -- the stripes themselves (sql/080): the view's max(updated_at) cannot use the index
  JOIN openfaas_metering.function_usage_daily_stripes d
    ON d.updated_at > c.usage_checked_at - %(lookback)s
   AND d.day_start > c.period_start - interval '1 day' AND d.day_start < c.period_end
 WHERE d.updated_at > (SELECT min(usage_checked_at) FROM openfaas_metering.closed_periods)
                      - %(lookback)s
   -- (the month still open is written all the time: left out in the index, sql/122)
   AND d.day_start < (SELECT max(period_end) FROM openfaas_metering.closed_periods)
 ORDER BY 1"""


def _late_periods(conn: psycopg.Connection) -> list[str]:
    return [name for (name,) in conn.execute(_LATE, {"lookback": LATE_USAGE_LOOKBACK})]


def _periods_to_settle(settings: Settings, now: datetime) -> list[Resolved]:
    """Closed periods with late usage, then every period from the first activity to the
    latest due one that is not closed, in order."""
    tz = settings.billing_timezone
    last = _due(settings, now)
    with db.transaction(settings) as conn:
        late = _late_periods(conn)
        first_at = billing_store.first_activity(conn)
        closed = {name for (name,) in conn.execute(
            "SELECT period FROM openfaas_metering.closed_periods")}
        out = [resolve(conn, name, tz) for name in late]
        if first_at is not None:
            name = period_of(first_at, tz).name
            while name <= last.name:
                if name not in closed:
                    out.append(resolve(conn, name, tz))
                name = _name_after(name)
    return [r for r in out if r.period.end <= now]


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


def _invoice_by_number(conn: psycopg.Connection, number: str, field_name: str) -> tuple:
    row = conn.execute(
        f"""SELECT invoice_id, namespace, period, status, inputs, inputs_sha256, lines_sha256,
                   subtotal, tax, total, document_kind, issued_at, {invoice_export.STORED_CSV},
                   usage_csv_sha256
              FROM openfaas_metering.invoices i WHERE number = %s""", (number,)).fetchone()
    if row is None:
        raise RequestError(404, f"{field_name}: no invoice numbered {number!r}")
    return row


_MONTH_DOCUMENTS = """
SELECT invoice_id, number, document_kind, issued_at, subtotal, tax, total, voided_by,
       corrects_invoice_id, correction_no, credit_reason IS NOT NULL, inputs
  FROM openfaas_metering.invoices
 WHERE namespace = %s AND period = %s AND status <> 'draft'
 ORDER BY issued_at, document_kind <> 'invoice', correction_no"""


def verify(settings: Settings, number: str) -> dict:
    """Check a finalized document (invoice, supplementary invoice, credit note) and its
    month; changes nothing. The document: its stored inputs, lines and usage CSV
    against their hashes, and its lines rebuilt from its inputs (a correction: from
    its month re-priced less the documents before it). The month: re-derived from
    the raw events and capacity intervals (not the rollups) at the month's terms and
    compared with everything billed for it, both ways: rows now below what was
    billed is a mismatch; rows above it is late usage the next close corrects."""
    with db.transaction(settings) as conn:
        (invoice_id, ns, period_name, status, inputs, inputs_sha256, lines_sha256,
         subtotal, tax, total, kind, issued_at, usage, usage_sha256) = _invoice_by_number(
            conn, number, "verify")
        if inputs is None:
            raise RequestError(409, f"verify: {number} is a draft; nothing to verify")
        month_docs = conn.execute(_MONTH_DOCUMENTS, (ns, period_name)).fetchall()
        docs = [MonthDocument(d[0], d[2], d[7], d[8], d[10]) for d in month_docs]
        live, counted_docs = counted(docs)
        if live is None:  # voided without a reissue: what was billed before the void
            counted_docs = [d for d in docs if not d.operator]
        def strip(doc_inputs: dict) -> dict:
            return {k: v for k, v in doc_inputs.items() if k not in ("corrects", "late")}
        # the month the document was priced from (None: an operator's credit note), and
        # the month compared with the raw rows: the document's own while it counts as
        # billed, else (voided, superseded, an operator's credit) the live invoice's
        own = strip(inputs) if "action" not in inputs else None
        if own is not None and (live is None or invoice_id in {d.invoice_id
                                                               for d in counted_docs}):
            month_inputs = own
        else:
            month_inputs = strip(next(d[11] for d in month_docs
                                      if d[0] == (live or counted_docs[0]).invoice_id))
        books = {v: pricebook_store.version(conn, v) for v in {
            month_inputs["price_book_version"], (own or month_inputs)["price_book_version"]}}
        lines_of = {doc[0]: stored_lines(conn, doc[0]) for doc in month_docs}
        raw = quantities_rows(billing_store.quantities_raw(
            conn, invoicing.windows_of(month_inputs), [ns]).get(ns, {}))
    differences = []
    if sha256_json(inputs) != inputs_sha256:
        differences.append("stored inputs do not match inputs_sha256")
    stored = lines_of.get(invoice_id, [])
    if sha256_json([line.canonical() for line in stored]) != lines_sha256:
        differences.append("stored lines do not match lines_sha256")
    if usage is not None and hashlib.sha256(usage.encode()).hexdigest() != usage_sha256:
        differences.append("stored usage CSV does not match usage_csv_sha256")
    this = next(d for d in month_docs if d[0] == invoice_id)
    if own is None:  # an operator's credit note: rebuilt from what it credited
        rebuilt = credits.build(inputs)
    else:
        rebuilt = invoicing.build(own, books)
    if own is not None and kind != "invoice":
        # the invoice it corrects and the corrections of that invoice before it
        before = [d for d in month_docs if d[0] == this[8] or (
            d[8] == this[8] and not d[10] and d[9] < this[9])]
        rebuilt = invoicing.correction(
            rebuilt, [line for d in before for line in lines_of[d[0]]],
            sum((d[4] for d in before), Decimal(0)), sum((d[5] for d in before), Decimal(0)))
    if rebuilt.lines_sha256 != lines_sha256 or (rebuilt.subtotal, rebuilt.tax,
                                                rebuilt.total) != (subtotal, tax, total):
        differences.append("lines recomputed from the inputs differ from the stored lines")
    # the month as the raw rows price it now, against every document billed for it
    from_raw = invoicing.build({**month_inputs, "quantities": raw}, books)
    # what counts as billed for the month (counted(): no operator credit, no voided invoice)
    billed_ids = {d.invoice_id for d in counted_docs}
    billed_total = sum((d[6] for d in month_docs if d[0] in billed_ids), Decimal(0))
    stored_rows = {tuple(r[:4]): r[4] for r in month_inputs["quantities"]}
    raw_rows = {tuple(r[:4]): r[4] for r in raw}
    keys = sorted(set(stored_rows) | set(raw_rows), key=str)
    below = [k for k in keys if Decimal(raw_rows.get(k, "0")) < Decimal(stored_rows.get(k, "0"))]
    if below or (from_raw.total is not None and from_raw.total < billed_total):
        differences.append(f"raw usage of {period_name} is below what was billed for it "
                           f"(billed {billed_total}, the raw rows price at {from_raw.total})")
    late = [{"meter": k[0], "sku": k[1], "spot": k[2], "window": k[3],
             "invoiced": stored_rows.get(k, "0"), "now": raw_rows.get(k, "0")}
            for k in keys if stored_rows.get(k) != raw_rows.get(k)]
    return {"verify": number, "kind": kind, "status": status, "match": not differences,
            "differences": differences, "inputs_sha256": inputs_sha256,
            "lines_sha256": lines_sha256, "usage_csv_sha256": usage_sha256,
            "month": {"period": period_name, "documents": [d[1] for d in month_docs],
                      "billed_total": str(billed_total),
                      "from_raw_total": None if from_raw.total is None
                      else str(from_raw.total)},
            # usage stored after this document was made: a later close corrects it
            "late_usage": late}


_STORED_LINES = """
SELECT kind, description, quantity, unit, amount, meter, sku, spot, unit_price, tiers,
       tier_mode, allowance, discount_percent, discount, price_from, price_to,
       adjustment_period, gross, billed_days, period_days
  FROM openfaas_metering.invoice_lines WHERE invoice_id = %s ORDER BY line_no"""


def stored_lines(conn: psycopg.Connection, invoice_id) -> list[Line]:
    """The lines stored for document `invoice_id`, in order."""
    return [stored_line(row) for row in conn.execute(_STORED_LINES, (invoice_id,))]


def export(settings: Settings, number: str) -> str:
    """The usage CSV behind invoice `number` (see invoice_export)."""
    with db.transaction(settings) as conn:
        invoice_id = _invoice_by_number(conn, number, "export")[0]
        return invoice_export.usage_csv(conn, invoice_id)
