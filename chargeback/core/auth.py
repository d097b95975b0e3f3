"""Who may call what: the operator's `admin-token`, sent as `Authorization: Bearer <token>`.

The gateway routes /function/<name>.openfaas-system for any caller, so every
function decides for itself. An operator option (anything that reveals or
changes a tenant's billing data) calls `require_operator`; without the secret
nobody is an operator, so a missing secret locks those options rather than
opening them.
"""
from __future__ import annotations

import hmac
from collections.abc import Mapping

from chargeback.core.responses import RequestError
from chargeback.core.settings import read_secret

ADMIN_TOKEN_SECRET = "admin-token"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="chargeback"'}


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    value = headers.get("Authorization") or ""
    scheme, _, token = value.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def is_operator(headers: Mapping[str, str], environ: Mapping[str, str] | None = None) -> bool:
    """True when the request carries the admin token (compared in constant time)."""
    expected = read_secret(ADMIN_TOKEN_SECRET, environ)
    given = bearer_token(headers)
    if not expected or given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def require_operator(headers: Mapping[str, str], what: str,
                     environ: Mapping[str, str] | None = None) -> None:
    """Refuse with 401 naming `what` unless the request carries the admin token."""
    if not is_operator(headers, environ):
        raise RequestError(401, f"{what} needs the operator's token: "
                                f"Authorization: Bearer <admin-token secret>", _CHALLENGE)
