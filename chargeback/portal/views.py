"""tenant-portal's page routes, served only on the portal's own origin (origin.py):

  /                      the page (?period=); its script posts a link's #token= to /signin
  /signin                POST (form field `token`, from the portal's own page): the session
  /?token=               legacy links (mailed before the fragment): the same, by GET
  /invoices/<number>     one invoice; /invoices/<number>.pdf|.html|.csv|.xml|.usage.csv
  /sign-out              forget this browser's session
  /new-link              POST: mail a fresh link to the billing address on file

Every refusal a browser can see is a page (refusals.py), in the tenant's locale
when the tenant is known, never raw JSON.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qs

from chargeback.core import db
from chargeback.core.responses import RequestError, respond
from chargeback.core.settings import Settings
from chargeback.portal import limits, month, newlink, origin, page, refusals, series, signin
from chargeback.portal import store
from chargeback.portal.access import Access
from chargeback.portal.signin import PageRefusal

_HTML = {"Content-Type": "text/html; charset=utf-8"}


@dataclass(frozen=True)
class Request:
    """One request to tenant-portal, the API's (app.py) or the page's (here)."""
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    host: str = ""  # the public Host (X-Forwarded-Host from a trusted proxy)
    body: bytes = b""


def answer(settings: Settings, req: Request, now: datetime) -> dict:
    portal = origin.parse(settings.portal_url)
    try:
        if not portal.serves(req.host):
            raise PageRefusal(421, f"the portal lives at {portal.url}/", "elsewhere")
        return _route(settings, portal, req, now)
    except PageRefusal as exc:
        return refusals.render(settings, exc, portal)
    except RequestError as exc:  # a bad period, a missing document: a page too
        return refusals.render(settings, PageRefusal(exc.status, exc.reason, "bad-request",
                                                     headers=exc.headers), portal)


def _route(settings, portal, req: Request, now: datetime) -> dict:
    path = req.path.rstrip("/") or "/"
    if path == "/new-link":
        if req.method != "POST":
            raise PageRefusal(405, "use the button on the page", "bad-request",
                              headers={"Allow": "POST"})
        return newlink.request(settings, portal, req.body, now)
    if path == "/signin":
        if req.method != "POST":
            raise PageRefusal(405, "open the link from your e-mail", "bad-request",
                              headers={"Allow": "POST"})
        signin.from_own_page(portal, req.headers)
        form = parse_qs(req.body.decode("utf-8", "replace"), max_num_fields=4)
        token = (form.get("token") or [""])[0]
        if not token:
            raise PageRefusal(400, "token: the form carries the link's token; open the "
                                   "link from your e-mail again", "bad-request")
        return _sign_in(settings, portal, req, token, form.get("switch") == ["1"], now)
    if req.method not in ("GET", "HEAD"):
        raise PageRefusal(405, f"method {req.method} not allowed; use GET", "bad-request",
                          headers={"Allow": "GET, HEAD"})
    if path == "/sign-out":
        return signin.sign_out(portal)
    if path == "/" and req.query.get("token"):  # a legacy link
        return _sign_in(settings, portal, req, req.query["token"],
                        req.query.get("switch") == "1", now)
    who = signin.session(settings, portal, req.headers, now)
    try:
        with limits.gate(who.tenant, settings.waitress_threads):
            if path == "/":
                return _page(settings, who, req.query, now)
            if path.startswith("/invoices/"):
                name = path[len("/invoices/"):]
                if "." in name:
                    return month.document(settings, who, name, req.method == "HEAD",
                                          "/invoices")
                return _invoice_page(settings, who, name)
    except PageRefusal:
        raise
    except RequestError as exc:  # the tenant is known: its page in its language
        raise PageRefusal(exc.status, exc.reason, "bad-request", who.tenant,
                          headers=exc.headers) from None
    raise PageRefusal(404, f"no page {path[:60]!r}", "bad-request", who.tenant)


def _sign_in(settings, portal, req: Request, token: str, switch: bool, now: datetime) -> dict:
    p = month.period_asked(settings, req.query, now)  # refused before it is echoed
    rest = f"?period={p.name}" if req.query.get("period") else ""
    signed = signin.sign_in(settings, portal, req.headers, token, switch, now, rest)
    if isinstance(signed, signin.Conflict):
        return refusals.conflict(settings, signed, token, rest)
    return signed


def _html(body: str, status: int = 200) -> dict:
    return respond(status, body, {**_HTML, "Content-Security-Policy": page.CSP})


def _invoice_page(settings: Settings, who: Access, number: str) -> dict:
    if who.invoice is not None and who.invoice != number:
        raise PageRefusal(404, f"no invoice {number[:40]}", "bad-request", who.tenant)
    with db.transaction(settings) as conn:
        locale, name = store.tenant_details(conn, who.tenant)
        docs = [month.document_view(d, "/invoices") for d in store.documents(conn, who.tenant)
                if d.number == number]
    if not docs:
        raise PageRefusal(404, f"no invoice {number[:40]}", "bad-request", who.tenant)
    return _html(page.render_invoice_page(name, locale or settings.default_locale, docs,
                                          full=who.invoice is None))


def _page(settings: Settings, who: Access, query: Mapping[str, str], now: datetime) -> dict:
    if who.invoice is not None:
        return _invoice_page(settings, who, who.invoice)
    p = month.period_asked(settings, query, now)
    with db.transaction(settings) as conn:
        locale, name = store.tenant_details(conn, who.tenant)
        docs = store.documents(conn, who.tenant)
        accounts = month.balances(conn, who.tenant)
    found = month.current(settings, who.tenant, p, now)
    q = series.parse({}, min(now, p.end - series.WINDOWS["day"]), p.start)
    with db.transaction(settings) as conn:
        by_function = store.series(conn, who.tenant, q)
        by_sku = store.series(conn, who.tenant, series.SeriesQuery(q.start, q.end, "day", "sku"))
        rejected = store.rejected(conn, who.tenant, 20)
    periods = month.recent_periods(settings, now)
    return _html(page.render_page(name, locale or settings.default_locale, found, q,
                                  by_function, by_sku,
                                  [month.document_view(d, "/invoices") for d in docs],
                                  rejected, month.budget(settings, who.tenant, found), periods,
                                  accounts))
