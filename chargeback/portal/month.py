"""One tenant's month as the API and the page both show it: the period asked for,
the month to date priced by the month close's code, the budget beside it, and
how a document is described."""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from urllib.parse import quote

from chargeback.billing import estimate, grant_store, payment_store, pricebook_store
from chargeback.billing.periods import PeriodError, period, period_of
from chargeback.core import db
from chargeback.core.responses import RequestError, respond
from chargeback.core.settings import Settings
from chargeback.portal import downloads, limits, store
from chargeback.portal.access import Access

# ASCII digits only: re's \d takes any script's digits (a full-width "２026")
_PERIOD = re.compile(r"[0-9]{4}-[0-9]{2}")


def period_asked(settings: Settings, query: Mapping[str, str], now: datetime):
    """The running period, or ?period=YYYY-MM not after it (a month not yet closed)."""
    running = period_of(now, settings.billing_timezone)
    raw = query.get("period")
    if not raw:
        return running
    try:
        if not _PERIOD.fullmatch(raw):
            raise PeriodError(raw)
        wanted = period(raw, settings.billing_timezone)
    except PeriodError:
        raise RequestError(400, f"period: expected YYYY-MM, got {raw[:20]!r}") from None
    if wanted.start > running.start:
        raise RequestError(400, f"period: {raw} has not started")
    return wanted


def recent_periods(settings: Settings, now: datetime, count: int = 6) -> list[str]:
    """The running period and the `count` - 1 before it, newest first (the picker)."""
    p = period_of(now, settings.billing_timezone)
    out = [p.name]
    while len(out) < count:
        p = period_of(p.start - timedelta(seconds=1), settings.billing_timezone)
        out.append(p.name)
    return out


def current(settings: Settings, tenant: str, p, now: datetime) -> dict:
    """usage/current: `tenant`'s period `p` to date, priced by the month close's code."""
    # before taking a connection: loading the deployed price book takes one of its own
    # (once per process), and four requests each holding one would wait for a fifth
    pricebook_store.ensure_file_loaded(settings)
    with db.transaction(settings) as conn:
        found = estimate.month_to_date(conn, settings, now, [tenant], p=p)
        issued = [] if found else [d for d in store.documents(conn, tenant)
                                   if d.period == p.name]
    if issued:  # closed: its figures are the invoice's (the close prices nothing twice)
        doc = issued[-1]  # the period's first document, not a later correction
        return {"tenant": tenant, "period": p.name, "currency": doc.currency,
                "as_of": min(now, p.end), "lines": [], "subtotal": doc.subtotal,
                "tax": doc.tax, "total": doc.total, "projected_total": doc.total,
                "price_book_version": None, "reasons": [], "invoiced_as": doc.number}
    if not found:  # nothing used and nothing held: nothing owed yet
        return {"tenant": tenant, "period": p.name, "currency": None,
                "as_of": min(now, p.end), "lines": [], "subtotal": "0", "tax": "0",
                "total": "0", "projected_total": "0", "price_book_version": None,
                "reasons": [], "invoiced_as": None}
    [e] = found
    d = e.draft
    return {"tenant": tenant, "period": p.name, "currency": d.currency, "as_of": e.as_of,
            "plan": d.plan,
            "lines": [{"kind": line.kind, "description": line.description,
                       "meter": line.meter, "sku": line.sku, "spot": line.spot,
                       "quantity": line.quantity, "unit": line.unit,
                       "unit_price": line.unit_price, "allowance": line.allowance,
                       "amount": line.amount}
                      for line in d.lines],
            "subtotal": d.subtotal, "tax": d.tax, "total": d.total,
            "projected_total": e.projected_total, "price_book_version": e.price_book_version,
            "reasons": list(d.reasons), "invoiced_as": None}


def budget(settings: Settings, tenant: str, month: dict) -> dict:
    """The tenant's budget beside `month` (usage/current's answer): the share used is
    the month-to-date total, tax included, over the budget, the very figures
    evaluate-budgets compares with each threshold; rounded down, so 50.00 % shows
    only once the 50 % threshold is reached."""
    with db.transaction(settings) as conn:
        amount, crossings = store.budget(conn, tenant, month["period"])
    total = month["total"]
    share = None if amount is None or total is None else \
        (Decimal(total) * 100 / amount).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    return {"tenant": tenant, "period": month["period"], "budget": amount,
            "currency": month["currency"] or next((c["currency"] for c in crossings), None),
            "month_to_date": total, "share_used_percent": share, "crossings": crossings}


def document_view(doc: store.Document, base: str) -> dict:
    """A document as the API and the page show it; `links` start with `base` (the API's
    absolute address, or the page's own /invoices)."""
    links = {suffix.lstrip("."): f"{base}/{quote(doc.number, safe='')}{suffix}"
             for suffix in downloads.FILES}
    return {"number": doc.number, "kind": doc.kind, "period": doc.period,
            "status": "voided" if doc.voided_by else "issued", "voided_by": doc.voided_by,
            "corrects": doc.corrects, "replaces": doc.replaces,
            "delivery": doc.status, "issued_at": doc.issued_at, "currency": doc.currency,
            "subtotal": doc.subtotal, "tax": doc.tax, "total": doc.total,
            "due_date": doc.due_date, "links": links,
            "payment_status": doc.payment_status, "open": doc.open,
            "reminded_at": doc.reminded_at}


def documents(settings: Settings, who: Access, base: str) -> dict:
    """The caller's issued documents (only its one invoice for a limited token)."""
    with db.transaction(settings) as conn:
        docs = store.documents(conn, who.tenant)
        accounts = balances(conn, who.tenant)
    if who.invoice is not None:
        return {"tenant": who.tenant, "data": [document_view(d, base) for d in docs
                                               if d.number == who.invoice]}
    return {"tenant": who.tenant, "data": [document_view(d, base) for d in docs], **accounts}


def balances(conn, tenant: str) -> dict:
    """What the tenant paid beyond its documents ("balance") and what the operator's
    credit grants have left, with their history ("credit"), per currency."""
    return {"balance": payment_store.balance(conn, tenant),
            "credit": {"balance": grant_store.tenant_balance(conn, tenant),
                       "grants": grant_store.history(conn, tenant)}}


def document(settings: Settings, who: Access, name: str, head: bool, base: str) -> dict:
    """One document (JSON) or one of its files, `name` = number[.suffix]; the page's
    downloads (views.py) come here too."""
    number, suffix = name, ""
    for candidate in sorted(downloads.FILES, key=len, reverse=True):
        if name.endswith(candidate):
            number, suffix = name[:-len(candidate)], candidate
            break
    if not downloads.NUMBER.fullmatch(number):
        raise RequestError(400, f"number: {number[:40]!r} is not a document number")
    missing = RequestError(404, f"no invoice {number}")
    if who.invoice is not None and who.invoice != number:
        raise missing
    with db.transaction(settings) as conn:
        found = store.document_id(conn, who.tenant, number)
        docs = store.documents(conn, who.tenant) if found and not suffix else []
    if found is None:
        raise missing
    if not suffix:
        [doc] = [d for d in docs if d.number == number]
        return respond(200, document_view(doc, base), {"Content-Security-Policy": downloads.API_CSP})
    invoice_id, locale = found
    cached = downloads.cached(settings, invoice_id, locale)
    if cached is None and head:
        return downloads.head_cold(number, suffix)
    if cached is None:
        with limits.rendering(who.tenant):
            cached = downloads.files(settings, invoice_id, locale)
    return downloads.answer(cached, number, suffix, head)
