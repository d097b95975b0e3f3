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

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import psycopg

from chargeback.billing import export as invoice_export
from chargeback.billing import (
    corrections,
    grant_store,
    legal,
    payment_store,
    pricebook_store,
    reminders,
)
from chargeback.billing.finalize import CLOSE_LOCK, Document, PeriodResult, finalize
from chargeback.billing.handoff import requeue
from chargeback.billing.invoicing import Draft
from chargeback.billing.month_inputs import compute
from chargeback.billing.period_bounds import (
    Resolved,
    late_periods,
    periods_to_settle,
    resolve,
    year_of_issue,
)
from chargeback.billing.periods import Period, PeriodError, period, period_of
from chargeback.billing.pricebook import PriceBook
from chargeback.core import db, jsonbody, partitions
from chargeback.core.gateway import GatewayClient
from chargeback.core.meters import DNS_LABEL
from chargeback.core.responses import RequestError
from chargeback.core.settings import Settings
from chargeback.webhooks import outbox as webhook_outbox

_OPTIONS = ("period", "tenant", "dry_run", "verify", "export")


@dataclass(frozen=True)
class Options:
    period: str | None = None
    tenant: str | None = None
    dry_run: bool = False
    verify: str | None = None
    export: str | None = None


def ready(settings: Settings, environ: Mapping[str, str]) -> None:
    """What aggregate-month cannot work without (checked at start): a database, and a
    supplier of its own on the invoices it finalizes."""
    db.configured(settings)
    legal.refuse_example_issuer(settings)


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
    billed = corrections.billed(conn, p, namespaces)
    held = False
    if billed:
        held = corrections.correct(conn, settings, p, book, billed, documents, result)
    issued_at = conn.execute("SELECT now()").fetchone()[0]
    year = year_of_issue(issued_at, settings)  # the calendar year of issue
    finalize(conn, settings, p, book, documents, issued_at, year, result)
    held = held or bool(result.held)  # a correction finalize held (legal data missing)
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


def close_period(conn: psycopg.Connection, settings: Settings, p: Period, book: PriceBook,
                 namespaces: list[str] | None = None) -> PeriodResult:
    """Settle period `p` (named; its stored bounds win) with `book` as the version in
    force now, inside the caller's transaction."""
    return settle(conn, settings, Resolved(p, None, False), book, namespaces)


def draft_json(draft: Draft) -> dict:
    return {"tenant": draft.namespace, "period": draft.period, "plan": draft.plan,
            "currency": draft.currency, "reasons": draft.reasons,
            "subtotal": None if draft.subtotal is None else str(draft.subtotal),
            "tax": None if draft.tax is None else str(draft.tax),
            "total": None if draft.total is None else str(draft.total),
            "lines": [{k: v for k, v in line.canonical().items() if v is not None}
                      for line in draft.lines]}


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
            todo = [resolve(conn, name, tz) for name in late_periods(conn)
                    if name < options.period] + [asked]
        if asked.period.end > now:
            raise RequestError(400, f"period: {asked.period.name} has not ended (it ends "
                                    f"{asked.period.end.isoformat()}); use dry_run for an "
                                    "estimate")
    else:
        todo = periods_to_settle(settings, now)
    results = [_settled(settings, resolved, book, namespaces) for resolved in todo]
    with db.transaction(settings) as conn:   # new documents' standings, invoices now overdue
        ledgers, status_events = payment_store.refresh(conn, namespaces, now)
        # ... and the reminders due now, decided under the same payment locks
        reminded = reminders.enqueue_due(conn, list(ledgers), now, settings.reminder_days)
        # grants past their expiry keep what was left of them as expired (after the
        # closes: a grant valid in a month applies to it however late it closes)
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (CLOSE_LOCK,))
        grant_store.expire(conn, now)
        status_events += grant_store.alert_low(conn, settings, namespaces)
    if status_events or any(r.invoices for r in results):
        webhook_outbox.wake(settings)  # after the commits: the outbox rows exist
    client = client or GatewayClient(settings)
    queued, errors = requeue(settings, client, namespaces)
    errors += [e for e in [reminders.wake_sender(settings, client, namespaces)] if e]
    # a closed month looked at again for late usage is shown only when it changed
    shown = [r for r in results if r.period == options.period or not r.was_closed
             or r.invoices or r.drafts or r.held or r.waived]
    return {"price_book_version": book.version, "periods": [r.as_json() for r in shown],
            "queued": queued, "queue_errors": errors, "reminders": reminded}


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
