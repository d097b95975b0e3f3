"""The OpenFaaS webhook envelope: headers, HMAC-SHA256 signature, delivery id. Pure.

The event-worker signs the raw body with the `webhook-secret` and sends
`X-Openfaas-Signature-256: sha256=<hex>`, `X-Openfaas-Event` and
`X-Openfaas-Delivery` (the blog spells them `X-OpenFaas-...`: names match
case-insensitively). Whether the sender keys the HMAC with the secret file's
trailing newline is not published, so a signature made with the secret as
stored or with its trailing whitespace removed is accepted, each compared in
constant time.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Openfaas-Signature-256"
EVENT_HEADER = "X-Openfaas-Event"
DELIVERY_HEADER = "X-Openfaas-Delivery"
MAX_DELIVERY_ID_CHARS = 200

_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")


class SignatureError(ValueError):
    """The delivery is not proven to come from the gateway; the message says why."""


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The header `name`, matched case-insensitively; None when absent."""
    getter = getattr(headers, "get", None)
    value = getter(name) if getter else None  # werkzeug's Headers already ignore case
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def signing_keys(secret_as_stored: str) -> list[bytes]:
    """The HMAC keys to try: the secret as stored, then without trailing whitespace."""
    keys = [secret_as_stored.encode(), secret_as_stored.rstrip().encode()]
    return [k for i, k in enumerate(keys) if k and k not in keys[:i]]


def sign(body: bytes, key: str | bytes) -> str:
    """The header value the event-worker sends for `body`: `sha256=<lowercase hex>`."""
    key = key.encode() if isinstance(key, str) else key
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, signature: str | None, keys: list[bytes],
                     name: str = SIGNATURE_HEADER) -> None:
    """Raise SignatureError unless `signature` (header `name`) is a valid HMAC of `body`
    under one key."""
    if not keys:
        raise ValueError("no signing key")  # callers refuse to run without a secret
    if not signature:
        raise SignatureError(f"missing {name} header: deliveries must be signed")
    match = _SIGNATURE.fullmatch(signature.strip())
    if not match:
        algorithm = signature.split("=", 1)[0] if "=" in signature else ""
        if algorithm and algorithm.lower() != "sha256":
            raise SignatureError(f"{name} uses {algorithm!r}; "
                                 "expected sha256=<64 hex digits>")
        raise SignatureError(f"{name} is malformed; expected sha256=<64 hex digits>")
    given = match.group(1).lower().encode()
    valid = False
    for key in keys:  # no early exit: every key is compared, in constant time
        expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
        valid |= hmac.compare_digest(expected, given)
    if not valid:
        raise SignatureError(f"{name} does not match the body "
                             "(wrong webhook-secret, or the body was altered)")


def delivery_id(header_value: str | None, body_sha256: str) -> str:
    """The delivery's id: X-Openfaas-Delivery, or `sha256:<body hash>` when it is absent.

    Deriving the id from the body makes a resent identical body a replay, so
    a sender that omits the header still never gets counted twice.
    """
    value = (header_value or "").strip()
    if not value:
        return f"sha256:{body_sha256}"
    if len(value) > MAX_DELIVERY_ID_CHARS:
        raise ValueError(f"{DELIVERY_HEADER} is longer than {MAX_DELIVERY_ID_CHARS} characters")
    return value
