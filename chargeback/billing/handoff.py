"""The hand-off to email-invoice: every finalized, unsent document not queued lately is
claimed and invoked asynchronously through the gateway, once each (an id, never
content)."""
from __future__ import annotations

import json

from chargeback.core import db
from chargeback.core.gateway import GatewayClient, GatewayError
from chargeback.core.settings import Settings

EMAIL_FUNCTION = "email-invoice"

_CLAIM = """
UPDATE openfaas_metering.invoices SET queued_at = now(), queued_count = queued_count + 1
 WHERE invoice_id IN (
       SELECT invoice_id FROM openfaas_metering.invoices
        WHERE status = 'finalized'
          AND (queued_at IS NULL OR queued_at < now() - make_interval(mins => %(minutes)s))
          AND (%(all)s OR namespace = ANY(%(namespaces)s))
        ORDER BY number
          FOR UPDATE SKIP LOCKED)
   AND status = 'finalized'
   AND (queued_at IS NULL OR queued_at < now() - make_interval(mins => %(minutes)s))
RETURNING invoice_id, number"""


def requeue(settings: Settings, client: GatewayClient, namespaces: list[str] | None = None
            ) -> tuple[list[str], list[str]]:
    """Hand every finalized, unsent invoice not queued lately to email-invoice, once each.

    Claimed first (committed), then invoked; an invocation the gateway refuses
    is unclaimed so the next run tries it again."""
    with db.transaction(settings) as conn:
        claimed = conn.execute(_CLAIM, {"minutes": settings.requeue_minutes,
                                        "all": namespaces is None,
                                        "namespaces": namespaces or []}).fetchall()
    queued, errors = [], []
    for invoice_id, number in sorted(claimed, key=lambda r: r[1]):
        try:
            client.invoke_async(EMAIL_FUNCTION,
                                json.dumps({"invoice_id": str(invoice_id)}).encode(),
                                headers={"Content-Type": "application/json"})
            queued.append(number)
        except GatewayError as exc:
            errors.append(f"{number}: {exc}")
            with db.transaction(settings) as conn:
                conn.execute("""UPDATE openfaas_metering.invoices
                                   SET queued_at = NULL, queued_count = queued_count - 1
                                 WHERE invoice_id = %s""", (invoice_id,))
    return queued, errors
