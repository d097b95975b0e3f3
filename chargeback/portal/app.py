"""tenant-portal's routes: one tenant's month to date, series, documents and quarantine.

`answer()` maps one GET to a response dict (the template's shape). It reads only
what the caller's Access names; another tenant's document answers 404 like a
number that does not exist. Every answer carries HEADERS (no caching, no
sniffing, no referrer); the page adds its Content-Security-Policy.

Documents come from `chargeback.documents.delivery.rerender`: the portal must
serve the very bytes the e-mail carried, and rendering is the documents
capability's one job, so the portal calls it instead of rendering again.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from urllib.parse import quote

from chargeback.billing import estimate, pricebook_store
from chargeback.billing.periods import PeriodError, period, period_of
from chargeback.core import db
from chargeback.core.responses import RequestError, respond
from chargeback.core.settings import Settings
from chargeback.documents import delivery
from chargeback.portal import access, page, series, store
from chargeback.portal.access import Access

HEADERS = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer"}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# the invoice's own HTML carries inline CSS (it is an e-mail part) and loads nothing
DOCUMENT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; " \
               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_DOCUMENT = re.compile(r"/api/v1/invoices/([^/]+?)(\.pdf|\.html|\.csv)?")
_PERIOD = re.compile(r"\d{4}-\d{2}")
# the hosted invoice link's validity, as Stripe's hosted invoice page (at most 120 days)
COOKIE_MAX_AGE_S = 120 * 86400


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]


def answer(settings: Settings, req: Request, now: datetime) -> dict:
    path = req.path.rstrip("/") or "/"
    if req.method not in ("GET", "HEAD"):
        raise RequestError(405, f"method {req.method} not allowed; use GET", {"Allow": "GET"})
    if path == "/":
        return _page(settings, req, now)
    who = access.resolve(req.headers, req.query, now)
    if path == "/api/v1/invoices":
        return _json(_documents(settings, who))
    found = _DOCUMENT.fullmatch(path)
    if found:
        return _document(settings, who, found.group(1), found.group(2))
    if who.invoice is not None and path in ("/api/v1/usage/current", "/api/v1/usage",
                                            "/api/v1/rejected", "/api/v1/budget"):
        raise RequestError(403, f"this link opens invoice {who.invoice} only")
    if path == "/api/v1/usage/current":
        month = current(settings, who.tenant, _period(settings, req.query, now), now)
        if month["invoiced_as"]:
            raise RequestError(409, f"period: {month['period']} is closed and invoiced as "
                                    f"{month['invoiced_as']}; read /api/v1/invoices/"
                                    f"{month['invoiced_as']}")
        return _json(month)
    if path == "/api/v1/budget":
        p = _period(settings, req.query, now)
        return _json(budget(settings, who.tenant, current(settings, who.tenant, p, now)))
    if path == "/api/v1/usage":
        p = period_of(now, settings.billing_timezone)
        q = series.parse(req.query, now, p.start)
        with db.transaction(settings) as conn:
            found_rows = store.series(conn, who.tenant, q)
        return _json({"tenant": who.tenant, "from": q.start, "to": q.end, "window": q.window,
                      "group_by": q.group_by, "data": series.rows(q, found_rows)})
    if path == "/api/v1/rejected":
        limit = series.parse_limit(req.query)
        with db.transaction(settings) as conn:
            return _json({"tenant": who.tenant,
                          "data": store.rejected(conn, who.tenant, limit)})
    raise RequestError(404, f"no route {path}; see /api/v1/usage/current, /api/v1/usage, "
                            "/api/v1/budget, /api/v1/invoices, /api/v1/rejected")


def _json(body: dict) -> dict:
    return respond(200, body, {"Content-Security-Policy": API_CSP})


def _period(settings: Settings, query: Mapping[str, str], now: datetime):
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
        raise RequestError(400, f"period: expected YYYY-MM, got {raw!r}") from None
    if wanted.start > running.start:
        raise RequestError(400, f"period: {raw} has not started")
    return wanted


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
                       "quantity": line.quantity, "unit": line.unit, "amount": line.amount}
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


def _document_view(doc: store.Document) -> dict:
    # relative to the portal's address (the page's own links resolve against it)
    links = {ext: f"api/v1/invoices/{quote(doc.number, safe='')}.{ext}"
             for ext in ("pdf", "html", "csv")}
    return {"number": doc.number, "kind": doc.kind, "period": doc.period,
            "status": "voided" if doc.voided_by else "issued", "voided_by": doc.voided_by,
            "corrects": doc.corrects, "replaces": doc.replaces,
            "delivery": doc.status, "issued_at": doc.issued_at, "currency": doc.currency,
            "subtotal": doc.subtotal, "tax": doc.tax, "total": doc.total, "links": links}


def _documents(settings: Settings, who: Access) -> dict:
    with db.transaction(settings) as conn:
        docs = store.documents(conn, who.tenant)
    if who.invoice is not None:
        docs = [d for d in docs if d.number == who.invoice]
    return {"tenant": who.tenant, "data": [_document_view(d) for d in docs]}


def _document(settings: Settings, who: Access, number: str, ext: str | None) -> dict:
    missing = RequestError(404, f"no invoice {number}")
    if who.invoice is not None and who.invoice != number:
        raise missing
    with db.transaction(settings) as conn:
        invoice_id = store.document_id(conn, who.tenant, number)
        docs = store.documents(conn, who.tenant) if invoice_id and not ext else []
    if invoice_id is None:
        raise missing
    if not ext:
        [doc] = [d for d in docs if d.number == number]
        return _json(_document_view(doc))
    rendered = delivery.rerender(settings, invoice_id)
    if ext == ".html":
        return respond(200, rendered.html, {"Content-Type": "text/html; charset=utf-8",
                                            "Content-Security-Policy": DOCUMENT_CSP})
    attachment = rendered.attachments[0 if ext == ".pdf" else 1]
    return respond(200, attachment.data, {
        "Content-Type": "application/pdf" if ext == ".pdf" else "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{attachment.filename}"',
        "Content-Security-Policy": API_CSP})


def _page(settings: Settings, req: Request, now: datetime) -> dict:
    who = access.resolve(req.headers, req.query, now, link_token=True)
    if req.query.get("token") and who.token:
        # keep the token in a cookie and drop it from the address bar (and history)
        rest = f"?period={req.query['period']}" if req.query.get("period") else ""
        secure = "; Secure" if req.headers.get("X-Forwarded-Proto") == "https" else ""
        max_age = min(COOKIE_MAX_AGE_S, int((who.expires_at - now).total_seconds()))
        return respond(303, "", {"Location": f"./{rest}", "Set-Cookie":
                                 f"{access.COOKIE}={who.token}; Max-Age={max_age}; "
                                 f"HttpOnly; SameSite=Strict{secure}"})
    p = _period(settings, req.query, now)
    with db.transaction(settings) as conn:
        locale, name = store.tenant_details(conn, who.tenant)
        docs = store.documents(conn, who.tenant)
    if who.invoice is not None:
        docs = [_document_view(d) for d in docs if d.number == who.invoice]
        html = page.render_invoice_page(name, locale or settings.default_locale, docs)
    else:
        month = current(settings, who.tenant, p, now)
        q = series.parse({}, min(now, p.end - series.WINDOWS["day"]), p.start)
        with db.transaction(settings) as conn:
            by_function = store.series(conn, who.tenant, q)
            q_sku = series.SeriesQuery(q.start, q.end, "day", "sku")
            by_sku = store.series(conn, who.tenant, q_sku)
            rejected = store.rejected(conn, who.tenant, 20)
        html = page.render_page(name, locale or settings.default_locale, month, q,
                                by_function, by_sku, [_document_view(d) for d in docs],
                                rejected, budget(settings, who.tenant, month))
    return respond(200, html, {"Content-Type": "text/html; charset=utf-8",
                               "Content-Security-Policy": page.CSP})
