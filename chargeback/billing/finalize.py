"""Finalizing a close's documents: numbers (gap-free per series and calendar year of
issue, taken in the finalizing transaction so a rollback gives them back), the
documents and their lines in one statement each, their usage CSVs, their legal
fields frozen, and their webhooks in the same transaction."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import psycopg
from psycopg.types.json import Jsonb

from chargeback.billing import export as invoice_export
from chargeback.billing import invoicing
# the legal fields (addresses, tax IDs, supplier, due date, tax note) and the VAT
# exchange rate are frozen on a document when it is finalized
from chargeback.billing import grant_store, legal, vat
from chargeback.billing.invoicing import Draft, sha256_json
from chargeback.billing.lines import COPY_LINES, copy_row
from chargeback.billing.month_inputs import TenantDetails
from chargeback.billing.periods import Period
from chargeback.billing.pricebook import PriceBook
from chargeback.core.meters import GB_SECONDS, INVOCATIONS
from chargeback.core.settings import Settings
# billing reports its facts to the operator's endpoints through the outbox, in the
# transaction that makes them (the event exists exactly when the invoice does)
from chargeback.webhooks import outbox as webhook_outbox

# One lock for every close and correction: what a close reads (usage, documents of
# the period) and writes (documents, numbers) is never read by another close at once.
CLOSE_LOCK = "chargeback close"
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


@dataclass
class Document:
    kind: str
    inputs: dict
    draft: Draft
    details: TenantDetails
    corrects: object = None       # the corrected invoice's id
    corrects_number: str | None = None
    correction_no: int | None = None
    replaces: object = None       # a reissue: the voided invoice's id
    replaces_number: str | None = None


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

def format_number(prefix: str, year: int, seq: int) -> str:
    return f"{prefix}{year}-{seq:06d}"


def finalize(conn: psycopg.Connection, settings: Settings, p: Period, book: PriceBook,
             documents: list[Document], issued_at: datetime, year: int,
             result: PeriodResult) -> None:
    """Number the final documents and write them and their lines, one statement each."""
    # documents: VAT also shown in ISSUER_VAT_CURRENCY needs the month's rate, else a draft
    vat.hold_without_rate(conn, settings, p.name, [doc.draft for doc in documents])
    # ... and what EN 16931 and art. 226 make mandatory (addresses, VAT IDs, tax category)
    terms = legal.assess(conn, settings, book, [doc.draft for doc in documents])
    # a correction or a reissue that cannot be finalized is not kept as a draft: it is
    # computed again by the next close (or refused to the operator who asked for it)
    for doc in [d for d in documents if d.draft.reasons and _not_the_month(d)]:
        documents.remove(doc)
        result.held.append({"tenant": doc.draft.namespace, "kind": doc.kind,
                            "corrects": doc.corrects_number or doc.replaces_number,
                            "reasons": doc.draft.reasons})
    was_held = _stored_reasons(conn, p.name, [d.draft.namespace for d in documents
                                              if d.draft.reasons])
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
        draft, details = doc.draft, doc.details
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
                ("currency", draft.currency), ("name", details.name),
                ("email", details.email), ("locale", details.locale),
                ("subtotal", draft.subtotal), ("tax_rate", draft.tax_rate),
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
    with conn.cursor().copy(COPY_LINES) as copy:
        for doc in documents:
            for line_no, line in enumerate(doc.draft.lines, 1):
                copy.write_row(copy_row(ids[doc.draft.namespace], line_no, line))
    # documents: the legal fields (addresses, tax IDs, supplier, due date, tax note) go on
    # the finalized documents in this transaction, before the database seals them
    legal.freeze(conn, settings, book, {ids[doc.draft.namespace]: terms[doc.draft.namespace]
                                        for doc in documents if not doc.draft.reasons})
    # what each final document took from the tenant's credit grants (billing.grants)
    grant_store.record_uses(conn, [(grant_id, ids[doc.draft.namespace], amount)
                                   for doc in documents if not doc.draft.reasons
                                   for grant_id, amount in doc.draft.credits.items()])
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
            if was_held.get(draft.namespace) != draft.reasons:  # newly held, or for new reasons
                events.append(("invoice.held", {
                    "invoice_id": str(ids[draft.namespace]), "tenant": draft.namespace,
                    "period": p.name, "status": "draft", "reasons": draft.reasons}))
    webhook_outbox.emit_many(conn, events)  # the webhooks, in the finalizing transaction


def _not_the_month(doc: Document) -> bool:
    return doc.kind != "invoice" or doc.replaces is not None


_STORED_REASONS = """
SELECT namespace, draft_reasons FROM openfaas_metering.invoices
 WHERE period = %s AND namespace = ANY(%s) AND status = 'draft'
   AND document_kind = 'invoice' AND replaces_invoice_id IS NULL"""


def _stored_reasons(conn: psycopg.Connection, period: str, namespaces: list[str]
                    ) -> dict[str, list]:
    """The reasons each of `namespaces`' month invoice of `period` is a draft for now."""
    if not namespaces:
        return {}
    return dict(conn.execute(_STORED_REASONS, (period, namespaces)).fetchall())


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
