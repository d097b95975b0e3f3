"""Who is asking the portal, and for which tenant.

The JSON API (`resolve`) takes a portal token (core.tokens) or the operator's
admin token as `Authorization: Bearer` only, never a cookie, so a script on
any origin cannot ride a customer's session; the operator names the tenant
with `?tenant=`. The page (`session`) takes only its cookie, on the portal's
own origin (origin.py); a link's `?token=` is read by signin.py. Anything else
is 401; the reason never says whether a tenant or document exists.
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

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tenant-portal"'}


@dataclass(frozen=True)
class Access:
    tenant: str
    invoice: str | None = None  # the token opens this one document only
    operator: bool = False
    token: str | None = None  # the portal token that granted it (the page keeps it)
    expires_at: datetime | None = None


def cookie(headers: Mapping[str, str], name: str) -> str | None:
    try:
        jar = SimpleCookie(headers.get("Cookie") or "")
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel and morsel.value else None


def unauthorized(reason: str) -> RequestError:
    return RequestError(401, reason, _CHALLENGE)


def resolve(headers: Mapping[str, str], query: Mapping[str, str], now: datetime,
            max_days: int = tokens.MAX_DAYS,
            environ: Mapping[str, str] | None = None) -> Access:
    """The API caller's Access, from `Authorization: Bearer` only; RequestError 401
    without a valid credential, 400 for an operator without ?tenant=."""
    if is_operator(headers, environ):
        tenant = query.get("tenant") or ""
        if not DNS_LABEL.fullmatch(tenant):
            raise RequestError(400, "tenant: the operator's token reads one tenant: add "
                                    f"?tenant=<namespace>, got {tenant!r}")
        return Access(tenant, operator=True)
    token = bearer_token(headers)
    if not token:
        raise unauthorized("no token: the API takes Authorization: Bearer <portal token> "
                           "(the page's cookie opens the page only)")
    who = check(token, now, max_days, environ)
    asked = query.get("tenant")
    if asked and asked != who.tenant:  # another tenant's data: nothing says it exists
        raise RequestError(404, f"tenant: no tenant {asked!r} for this token")
    return who


def check(token: str, now: datetime, max_days: int = tokens.MAX_DAYS,
          environ: Mapping[str, str] | None = None) -> Access:
    """The Access a portal token grants; RequestError 401 naming why not."""
    try:
        claims = tokens.verify(signing_key(environ), token, now, max_days)
    except tokens.Unauthorized as exc:
        raise unauthorized(str(exc)) from None
    return Access(claims.tenant, claims.invoice, token=token, expires_at=claims.expires_at)
