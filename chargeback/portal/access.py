"""Who is asking the portal, and for which tenant.

A tenant brings a portal token (tokens.py) as `Authorization: Bearer`, in the
portal cookie the page sets, or (the page only) as `?token=` from a link.
The operator brings the admin token as `Authorization: Bearer` and names any
tenant with `?tenant=`. Anything else is 401; the reason never says whether a
tenant or document exists.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from http.cookies import CookieError, SimpleCookie

from chargeback.core.auth import bearer_token, is_operator
from chargeback.core.meters import DNS_LABEL
from chargeback.core.responses import RequestError
from chargeback.core import tokens
from chargeback.core.tokens import signing_key

COOKIE = "portal_token"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tenant-portal"'}


@dataclass(frozen=True)
class Access:
    tenant: str
    invoice: str | None = None  # the token opens this one document only
    operator: bool = False
    token: str | None = None  # the portal token that granted it (the page keeps it)
    expires_at: datetime | None = None


def _cookie(headers: Mapping[str, str]) -> str | None:
    try:
        jar = SimpleCookie(headers.get("Cookie") or "")
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel and morsel.value else None


def unauthorized(reason: str) -> RequestError:
    return RequestError(401, reason, _CHALLENGE)


def resolve(headers: Mapping[str, str], query: Mapping[str, str], now: datetime, *,
            link_token: bool = False, environ: Mapping[str, str] | None = None) -> Access:
    """The caller's Access; RequestError 401 without a valid credential, 400 for an
    operator without ?tenant=. `link_token`: accept ?token= (the page)."""
    if is_operator(headers, environ):
        tenant = query.get("tenant") or ""
        if not DNS_LABEL.fullmatch(tenant):
            raise RequestError(400, "tenant: the operator's token reads one tenant: add "
                                    f"?tenant=<namespace>, got {tenant!r}")
        return Access(tenant, operator=True)
    token = bearer_token(headers) or (query.get("token") if link_token else None) \
        or _cookie(headers)
    if not token:
        raise unauthorized("no token: send Authorization: Bearer <portal token> "
                           "or open the portal link you were given")
    try:
        claims = tokens.verify(signing_key(environ), token, now)
    except tokens.Unauthorized as exc:
        raise unauthorized(str(exc)) from None
    asked = query.get("tenant")
    if asked and asked != claims.tenant:  # another tenant's data: nothing says it exists
        raise RequestError(404, f"tenant: no tenant {asked!r} for this token")
    return Access(claims.tenant, claims.invoice, token=token, expires_at=claims.expires_at)
