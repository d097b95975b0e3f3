"""The page's session: a link's token becomes a cookie, and the cookie opens the page.

A mailed link carries its token in the fragment (`/#token=…`, core.tokens.page_url),
which a browser never sends: no proxy, gateway or watchdog log sees it (of-watchdog
logs every request's URI, query included). The page's inline script (page.py) takes
it out of the address bar and posts it to `/signin`, which answers as the legacy
`GET /?token=` always did (links mailed before keep working): a 303 to the page with
the cookie set or kept, the question below, or the expired-link page.

Decided (issue 33): the cookie is `SameSite=Lax`, so a link clicked in webmail or on
any other site opens the page on the first request (a Lax cookie rides the
top-level GET after the 303 that takes the token out of the address bar). Lax
lets another site send a link, so a link never silently replaces a live session
of a *different* tenant (login CSRF: a page would sign the customer into the
attacker's portal); the page asks first, and its "open it instead" button is
honoured only from the portal's own page (Sec-Fetch-Site: same-origin). `/signin`
takes a POST from the portal's own page only (Sec-Fetch-Site, else Origin). A link
limited to one invoice never replaces a full session of the same tenant either:
the full session shows that invoice.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from chargeback.core import tokens
from chargeback.core.responses import RequestError, respond
from chargeback.core.settings import Settings
from chargeback.portal import access
from chargeback.portal.access import Access
from chargeback.portal.origin import Origin


class PageRefusal(RequestError):
    """A refusal a person sees in a browser: rendered as a page (refusals.py).
    `kind` says which page; `tenant`, when known, gives its locale and the
    "send me a new link" button."""

    def __init__(self, status: int, reason: str, kind: str, tenant: str | None = None,
                 headers: dict[str, str] | None = None, **extra):
        super().__init__(status, reason, headers)
        self.kind = kind
        self.tenant = tenant
        self.extra = extra


@dataclass(frozen=True)
class Conflict:
    """A link for `new` while `current`'s session is open in this browser."""
    current: Access
    new: Access


def _expired_tenant(token: str, settings: Settings) -> str | None:
    """The tenant a well-signed but expired (or too long-lived) token names, else None."""
    return tokens.signed_tenant(tokens.signing_key(), token)


def session(settings: Settings, origin: Origin, headers: Mapping[str, str],
            now: datetime) -> Access:
    """The page's Access from its cookie; PageRefusal 401 without a live one."""
    token = access.cookie(headers, origin.cookie)
    if not token:
        raise PageRefusal(401, "no session: open the link from your e-mail", "no-session")
    try:
        return access.check(token, now, settings.portal_token_max_days)
    except RequestError as exc:
        raise PageRefusal(401, exc.reason, "expired",
                          _expired_tenant(token, settings), token=token) from None


def _current(settings: Settings, origin: Origin, headers: Mapping[str, str],
             now: datetime) -> Access | None:
    try:
        return session(settings, origin, headers, now)
    except PageRefusal:
        return None


def from_own_page(origin: Origin, headers: Mapping[str, str]) -> None:
    """PageRefusal 403 unless a POST came from the portal's own page: Sec-Fetch-Site
    `same-origin` (a sibling host, same-site, is a tenant's), or without it an Origin
    that is the portal's."""
    site = headers.get("Sec-Fetch-Site")
    if site is not None:
        if site != "same-origin":
            raise PageRefusal(403, f"Sec-Fetch-Site: {site[:20]!r}: sign in from the "
                                   "portal's own page (open the link from your e-mail)",
                              "bad-request")
        return
    sent = (headers.get("Origin") or "").rstrip("/")
    if sent != origin.url:
        raise PageRefusal(403, f"Origin: {sent[:60]!r} is not {origin.url}: sign in from "
                               "the portal's own page (open the link from your e-mail)",
                          "bad-request")


def sign_in(settings: Settings, origin: Origin, headers: Mapping[str, str], token: str,
            switch: bool, now: datetime, rest: str) -> dict | Conflict:
    """The token of a link (POST /signin, or the legacy GET /?token=): 303 to the page
    (`rest` is its query) with the cookie set or kept, or the Conflict to ask about;
    PageRefusal when the link itself is no good. `switch`: the person chose the new
    tenant on the portal's own question page."""
    try:
        new = access.check(token, now, settings.portal_token_max_days)
    except RequestError as exc:
        raise PageRefusal(401, exc.reason, "expired",
                          _expired_tenant(token, settings), token=token) from None
    current = _current(settings, origin, headers, now)
    location = {"Location": f"/{rest}"}
    if current is not None and current.tenant == new.tenant \
            and current.invoice is None and new.invoice is not None:
        # the full session already shows that invoice: keep it
        return respond(303, "", {**location, "Location": f"/invoices/{new.invoice}"})
    if current is not None and current.tenant != new.tenant:
        same_origin = headers.get("Sec-Fetch-Site") == "same-origin"
        if not (switch and same_origin):
            return Conflict(current, new)
    max_age = min(settings.portal_token_max_days * 86400,
                  int((new.expires_at - now).total_seconds()))
    return respond(303, "", {**location, "Set-Cookie": origin.set_cookie(token, max_age)})


def sign_out(origin: Origin) -> dict:
    """Forget the session (a link on the page; another site's link could only sign a
    customer out, which a new click on the mail's link undoes)."""
    return respond(303, "", {"Location": "/", "Set-Cookie": origin.clear_cookie()})
