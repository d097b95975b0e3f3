"""Standard Webhooks signatures, made by the `standardwebhooks` library.

The secret `webhook-signing-secret` holds `whsec_` + base64 of the key (the
format receivers' verifiers take as it is). Each attempt is signed at the
moment it is made: webhook-timestamp is that moment, which verifiers compare
with their clock (5 minutes of tolerance), while webhook-id stays the event's.
"""
from __future__ import annotations

import base64
import binascii
from datetime import datetime

from standardwebhooks import Webhook

from chargeback.core.settings import ConfigError

SECRET_NAME = "webhook-signing-secret"
PREFIX = "whsec_"


def signer(secret: str | None) -> Webhook:
    """The signer for the secret's text; ConfigError naming the secret when unusable."""
    secret = (secret or "").strip()
    if not secret:
        raise ConfigError(f"no webhook signing secret: create the {SECRET_NAME} secret "
                          f"({PREFIX} followed by base64 of at least 24 random bytes)")
    if not secret.startswith(PREFIX):
        raise ConfigError(f"{SECRET_NAME}: expected {PREFIX} followed by base64")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{SECRET_NAME}: the part after {PREFIX} is not base64") from None
    if len(key) < 24:
        raise ConfigError(f"{SECRET_NAME}: the key is {len(key)} bytes; use at least 24")
    return Webhook(secret)


def headers(webhook: Webhook, event_id: str, attempt_at: datetime, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt, and the content type."""
    return {"webhook-id": event_id,
            "webhook-timestamp": str(int(attempt_at.timestamp())),
            "webhook-signature": webhook.sign(event_id, attempt_at, body),
            "Content-Type": "application/json"}
