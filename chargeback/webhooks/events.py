"""What an outbound event is: its type, and the body every attempt posts. Pure.

Body: {"type": ..., "timestamp": <when the fact happened, RFC 3339 UTC>,
"sequence": <strictly increasing per tenant>, "data": {...}}
serialized once, the same way for every attempt (compact JSON, keys in the
order stored), so a receiver that hashes bodies sees the same bytes again.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

INVOICE_FINALIZED = "invoice.finalized"
INVOICE_HELD = "invoice.held"   # kept in draft: a price, a rate or legal data is missing
INVOICE_SENT = "invoice.sent"
INVOICE_UNDELIVERABLE = "invoice.undeliverable"
INVOICE_VOIDED = "invoice.voided"            # emitted where the documents capability voids
CREDIT_NOTE_FINALIZED = "credit_note.finalized"  # emitted where corrections finalize one
INVOICE_PAID = "invoice.paid"                    # billing.payment_store: nothing left open
INVOICE_PAYMENT_OVERDUE = "invoice.payment_overdue"  # ... something open after the due date
INVOICE_REMINDER_SENT = "invoice.reminder_sent"  # documents.reminder: a reminder mail sent
CREDIT_BALANCE_LOW = "credit.balance_low"        # billing.grants: below the threshold
BUDGET_THRESHOLD_CROSSED = "budget.threshold_crossed"
BUDGET_FORECAST_EXCEEDED = "budget.forecast_exceeded"
USAGE_REJECTED = "usage.rejected"
USAGE_DRIFT_DETECTED = "usage.drift_detected"   # metrics.drift: billed < the gateway's counter
EVENT_TYPES = (INVOICE_FINALIZED, INVOICE_HELD, INVOICE_SENT, INVOICE_UNDELIVERABLE, INVOICE_VOIDED,
               CREDIT_NOTE_FINALIZED, INVOICE_PAID, INVOICE_PAYMENT_OVERDUE,
               INVOICE_REMINDER_SENT, CREDIT_BALANCE_LOW,
               BUDGET_THRESHOLD_CROSSED, BUDGET_FORECAST_EXCEEDED, USAGE_REJECTED,
               USAGE_DRIFT_DETECTED)


def jsonable(value: Any) -> Any:
    """JSON for what facts carry: money as a decimal string (never a float), instants as
    RFC 3339, ids as strings."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def rfc3339(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def data_json(data: dict) -> str:
    return json.dumps(data, default=jsonable, separators=(",", ":"))


def body(event_type: str, created_at: datetime, sequence: int, data: dict) -> str:
    """The body of every attempt of one event. Delivery order is not guaranteed;
    `sequence` orders the events of one tenant (data.tenant)."""
    return json.dumps({"type": event_type, "timestamp": rfc3339(created_at),
                       "sequence": sequence, "data": data},
                      default=jsonable, separators=(",", ":"))
