"""Portal tokens: HS256 JWTs signed with the `portal-signing-key` secret, and the links
that carry them. Below every capability: documents put the hosted invoice link in a
mail, the portal checks the tokens.

`sub` is the tenant (a namespace), `exp` is required, and an optional
`invoice` claim limits the token to that one document (the hosted invoice
link). Only HS256 is accepted, so `alg: none` or a token signed another way
is refused like a wrong key or an expired token: all are `Unauthorized`. A
token that would live longer than PORTAL_TOKEN_MAX_DAYS from now (an `exp` in
year 9999, a float, a string) is refused too, whoever signed it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

import jwt

from chargeback.core.meters import DNS_LABEL
from chargeback.core.settings import ConfigError, Settings, read_secret

ALGORITHM = "HS256"
SIGNING_KEY_SECRET = "portal-signing-key"
# What the key must hold: RFC 7518 3.2 asks for a key at least as long as the hash.
MIN_KEY_BYTES = 32
HOSTED_LINK_DAYS = 120
MAX_DAYS = 120  # PORTAL_TOKEN_MAX_DAYS' default


class Unauthorized(Exception):
    """The token cannot be accepted; the message says why in one line."""


@dataclass(frozen=True)
class Claims:
    tenant: str
    expires_at: datetime
    invoice: str | None = None  # the one document this token opens, if limited


def issue(key: str, tenant: str, issued_at: datetime, valid_for: timedelta,
          invoice: str | None = None) -> str:
    """A token for `tenant`, valid from `issued_at` for `valid_for`. The same arguments give
    the same token (no random id), so a document that embeds one renders the same bytes."""
    if not DNS_LABEL.fullmatch(tenant):
        raise ValueError(f"tenant: {tenant!r} is not a namespace name (a DNS label)")
    claims = {"sub": tenant, "iat": int(issued_at.timestamp()),
              "exp": int((issued_at + valid_for).timestamp())}
    if invoice is not None:
        claims["invoice"] = invoice
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify(key: str, token: str, now: datetime, max_days: int = MAX_DAYS) -> Claims:
    """The claims of a token signed with `key`, unexpired at `now` and expiring at most
    `max_days` after it; Unauthorized otherwise."""
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM],
                            options={"require": ["exp", "sub"], "verify_iat": False},
                            leeway=0)
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired; ask for a new link") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"the token is not valid: {exc}") from None
    tenant, invoice = claims["sub"], claims.get("invoice")
    if not isinstance(tenant, str) or not DNS_LABEL.fullmatch(tenant):
        raise Unauthorized("the token's sub is not a tenant name")
    if invoice is not None and not isinstance(invoice, str):
        raise Unauthorized("the token's invoice claim is not a document number")
    # PyJWT checks exp against its own clock; `now` is the caller's (tests, the demo)
    exp = claims["exp"]
    if type(exp) is not int:  # PyJWT takes "123" and 1e20; bool is an int too
        raise Unauthorized("the token's exp is not a whole number of seconds")
    if exp > now.timestamp() + max_days * 86400:
        raise Unauthorized(f"the token's exp is more than {max_days} days away "
                           "(PORTAL_TOKEN_MAX_DAYS)")
    expires_at = datetime.fromtimestamp(exp, tz=now.tzinfo)
    if expires_at <= now:
        raise Unauthorized("the token has expired; ask for a new link")
    return Claims(tenant, expires_at, invoice)


def signed_tenant(key: str, token: str) -> str | None:
    """The tenant a token signed with `key` names, expired or not (the page offers that
    tenant a new link); None for anything not signed with `key`."""
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM],
                            options={"verify_exp": False, "verify_iat": False,
                                     "require": ["sub"]})
    except jwt.InvalidTokenError:
        return None
    tenant = claims["sub"]
    return tenant if isinstance(tenant, str) and DNS_LABEL.fullmatch(tenant) else None


def signing_key(environ: Mapping[str, str] | None = None) -> str:
    key = read_secret(SIGNING_KEY_SECRET, environ)
    if not key:
        raise ConfigError(f"secret {SIGNING_KEY_SECRET} is missing: portal tokens "
                          "can be neither issued nor checked")
    if len(key.encode()) < MIN_KEY_BYTES:
        raise ConfigError(f"secret {SIGNING_KEY_SECRET} is shorter than "
                          f"{MIN_KEY_BYTES} bytes")
    return key


def page_url(portal_url: str, token: str, period: str | None = None) -> str:
    """The page's address with a token in its fragment (`/#token=…`): a browser never
    sends a fragment, so no server, proxy or log sees the token; the page's script posts
    it to /signin (portal.signin). The period, no secret, rides in the query."""
    query = f"?period={period}" if period else ""
    return f"{portal_url.rstrip('/')}/{query}#token={quote(token, safe='')}"


def hosted_invoice_url(settings: Settings, tenant: str, number: str, issued_at: datetime,
                       environ: Mapping[str, str] | None = None) -> str | None:
    """The link an invoice e-mail carries to that invoice's page (Stripe's hosted invoice
    page), or None when PORTAL_URL is not set: a token limited to the invoice by the
    `invoice` claim and valid HOSTED_LINK_DAYS from its issue, so the same invoice always
    renders the same link (and the e-mail the same bytes). ConfigError when PORTAL_URL
    is set but the signing key is missing."""
    if not settings.portal_url:
        return None
    days = min(HOSTED_LINK_DAYS, settings.portal_token_max_days)
    token = issue(signing_key(environ), tenant, issued_at, timedelta(days=days),
                  invoice=number)
    return page_url(settings.portal_url, token)
