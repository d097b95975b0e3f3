"""tenant-portal's routes: the JSON API (here) and the page (views.py).

`answer()` maps one request to a response dict (the template's shape). The API
reads only what the caller's Bearer token names (access.py); another tenant's
document answers 404 like a number that does not exist. Every answer carries
HEADERS (no caching, no sniffing, no referrer, same-origin resource and opener
policies); each kind of answer adds its Content-Security-Policy.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from chargeback.billing.periods import period_of
from chargeback.core import db, tokens
from chargeback.core.responses import RequestError, respond
from chargeback.core.settings import Settings
from chargeback.portal import access, downloads, limits, month, series, store, views
from chargeback.portal.access import Access
from chargeback.portal.origin import SECURITY_HEADERS
from chargeback.portal.views import Request

HEADERS = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", **SECURITY_HEADERS}
API_CSP = downloads.API_CSP
_API_DOCUMENT = "/api/v1/invoices/"



def ready(settings: Settings, environ: Mapping[str, str]) -> None:
    """What tenant-portal cannot work without (checked at start): a database and the key
    that checks portal tokens."""
    db.configured(settings)
    tokens.signing_key(environ)


def answer(settings: Settings, req: Request, now: datetime) -> dict:
    if req.path.startswith("/api/"):
        if req.method not in ("GET", "HEAD"):
            raise RequestError(405, f"method {req.method} not allowed; use GET",
                               {"Allow": "GET, HEAD"})
        who = access.resolve(req.headers, req.query, now, settings.portal_token_max_days)
        with limits.gate(who.tenant, settings.waitress_threads):
            return _api(settings, req, who, req.path.rstrip("/"), now)
    return views.answer(settings, req, now)


def _api(settings: Settings, req: Request, who: Access, path: str, now: datetime) -> dict:
    if path == "/api/v1/invoices":
        return _json(month.documents(settings, who, _api_base(settings)))
    if path.startswith(_API_DOCUMENT):
        return month.document(settings, who, path[len(_API_DOCUMENT):], req.method == "HEAD",
                        _api_base(settings))
    if who.invoice is not None and path in ("/api/v1/usage/current", "/api/v1/usage",
                                            "/api/v1/rejected", "/api/v1/budget"):
        raise RequestError(403, f"this link opens invoice {who.invoice} only")
    if path == "/api/v1/usage/current":
        found = month.current(settings, who.tenant, month.period_asked(settings, req.query, now),
                              now)
        if found["invoiced_as"]:
            raise RequestError(409, f"period: {found['period']} is closed and invoiced as "
                                    f"{found['invoiced_as']}; read /api/v1/invoices/"
                                    f"{found['invoiced_as']}")
        return _json(found)
    if path == "/api/v1/budget":
        p = month.period_asked(settings, req.query, now)
        return _json(month.budget(settings, who.tenant,
                                  month.current(settings, who.tenant, p, now)))
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
    raise RequestError(404, f"no route {path[:80]!r}; see /api/v1/usage/current, "
                            "/api/v1/usage, /api/v1/budget, /api/v1/invoices, /api/v1/rejected")


def _json(body: dict) -> dict:
    return respond(200, body, {"Content-Security-Policy": API_CSP})


def _api_base(settings: Settings) -> str:
    """Where the API's document links point: absolute under PORTAL_URL when it is set."""
    return f"{(settings.portal_url or '').rstrip('/')}{_API_DOCUMENT.rstrip('/')}"
