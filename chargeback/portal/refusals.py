"""The pages a person sees instead of the page: every refusal a browser can meet.

An expired link offers "send me a new link" (newlink.py) when the tenant is known;
a page on the wrong Host says where the portal lives; a link for another tenant
than the session open in this browser asks which to keep (signin.py). Each page
is in the tenant's locale when the tenant is known (its `lang`, its dates).
"""
from __future__ import annotations

from chargeback.core import db
from chargeback.core.responses import respond
from chargeback.core.settings import Settings
from chargeback.portal import page, store
from chargeback.portal.origin import Origin

_TITLES = {"expired": "This link has expired", "no-session": "Open the link from your e-mail",
           "elsewhere": "The billing portal lives elsewhere", "bad-request": "Not here",
           "sent": "Check your e-mail", "conflict": "Another account is open"}


def _locale(settings: Settings, tenant: str | None) -> tuple[str, str | None]:
    if tenant is None:
        return settings.default_locale, None
    try:
        with db.transaction(settings) as conn:
            locale, name = store.tenant_details(conn, tenant)
    except Exception:  # the page must show even while the database is down
        return settings.default_locale, None
    return locale or settings.default_locale, name


def _page(settings: Settings, status: int, kind: str, tenant: str | None,
          headers: dict | None = None, **values) -> dict:
    locale, name = _locale(settings, tenant)
    html = page.render_refusal(locale, kind, _TITLES.get(kind, "Not here"), name=name,
                               status=status, **values)
    return respond(status, html, {**(headers or {}),
                                  "Content-Type": "text/html; charset=utf-8",
                                  "Content-Security-Policy": page.CSP})


def render(settings: Settings, exc, portal: Origin) -> dict:
    """A PageRefusal as its page, with its status and headers (Retry-After, Allow)."""
    token = exc.extra.get("token") if exc.kind == "expired" and exc.tenant else None
    headers = dict(exc.headers)
    if exc.status == 401:
        headers["Set-Cookie"] = portal.clear_cookie()  # an expired session goes
    return _page(settings, exc.status, exc.kind, exc.tenant, headers, reason=exc.reason,
                 token=token, portal=portal.url)


def conflict(settings: Settings, found, token: str, rest: str) -> dict:
    """The question; "open it instead" posts the token to /signin (never in a URL)."""
    return _page(settings, 200, "conflict", found.current.tenant, reason="",
                 current=found.current.tenant, new=found.new.tenant,
                 switch=f"/signin{rest}", token=token)


def link_sent(settings: Settings, tenant: str) -> dict:
    return _page(settings, 200, "sent", tenant, reason="")
