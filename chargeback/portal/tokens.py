"""Portal tokens: HS256 JWTs signed with the `portal-signing-key` secret. Pure.

`sub` is the tenant (a namespace), `exp` is required, and an optional
`invoice` claim limits the token to that one document (the hosted invoice
link). Only HS256 is accepted, so `alg: none` or a token signed another way
is refused like a wrong key or an expired token: all are `Unauthorized`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from chargeback.core.meters import DNS_LABEL

ALGORITHM = "HS256"
SIGNING_KEY_SECRET = "portal-signing-key"
# What the key must hold: RFC 7518 3.2 asks for a key at least as long as the hash.
MIN_KEY_BYTES = 32


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


def verify(key: str, token: str, now: datetime) -> Claims:
    """The claims of a token signed with `key`, unexpired at `now`; Unauthorized otherwise."""
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM],
                            options={"require": ["exp", "sub"], "verify_iat": False},
                            leeway=0)
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired; ask for a new link") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"the token is not valid: {exc}") from None
    # PyJWT checks exp against its own clock; `now` is the caller's (tests, the demo)
    expires_at = datetime.fromtimestamp(claims["exp"], tz=now.tzinfo)
    if expires_at <= now:
        raise Unauthorized("the token has expired; ask for a new link")
    tenant, invoice = claims["sub"], claims.get("invoice")
    if not isinstance(tenant, str) or not DNS_LABEL.fullmatch(tenant):
        raise Unauthorized("the token's sub is not a tenant name")
    if invoice is not None and not isinstance(invoice, str):
        raise Unauthorized("the token's invoice claim is not a document number")
    return Claims(tenant, expires_at, invoice)
