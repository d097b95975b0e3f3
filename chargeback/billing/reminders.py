"""Which overdue documents get a payment reminder now (the hourly run's step, beside the
overdue detection of billing.payment_store), and the hand-off of their mails.

A step is a number of days after the due date from REMINDER_DAYS (default 7,21),
counted in the document's billing time zone. A document that is overdue (something
open after its due date: not paid, not voided, not fully credited) gets the reminder
of the latest step it has reached, unless it had that step or a later one already: a
run that comes late sends the latest step only, never a burst of the missed ones.
The reminder's row (payment_reminders) and its mail (mail_outbox, kind "reminder")
are written in the transaction that derived the standings, under the tenants' payment
locks, so a payment recorded before the run stops it; the primary keys of both make a
re-run or a second replica write it once. The mail itself is composed and sent by
email-invoice (documents.reminder), which checks again, in the mail's claim, that
something is still open.
"""
from __future__ import annotations

import json
from datetime import datetime

import psycopg

from chargeback.core import db
from chargeback.core.gateway import GatewayClient, GatewayError
from chargeback.core.settings import Settings
# a reminder is one kind of the one exactly-once mail (mail.outbox); its row is
# written in the transaction that decides it
from chargeback.mail.enqueue import enqueue

KIND = "reminder"
EMAIL_FUNCTION = "email-invoice"

_DUE = """
WITH late AS (
    SELECT i.invoice_id, i.namespace,
           (%(now)s AT TIME ZONE i.billing_timezone)::date - i.due_date AS days_late
      FROM openfaas_metering.invoices AS i
      JOIN openfaas_metering.document_payment_status AS s USING (invoice_id)
     WHERE s.status = 'overdue' AND s.open_amount > 0 AND i.voided_by IS NULL
       AND i.namespace = ANY(%(namespaces)s)
), reached AS (
    SELECT invoice_id, namespace,
           (SELECT max(d) FROM unnest(%(days)s::integer[]) AS d WHERE d <= days_late) AS step
      FROM late
)
INSERT INTO openfaas_metering.payment_reminders (invoice_id, days_after_due, namespace)
SELECT invoice_id, step, namespace FROM reached AS r
 WHERE step IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM openfaas_metering.payment_reminders AS p
                    WHERE p.invoice_id = r.invoice_id AND p.days_after_due >= r.step)
ON CONFLICT DO NOTHING
RETURNING invoice_id, days_after_due, namespace"""

_PENDING = """
SELECT count(*) FROM openfaas_metering.mail_outbox
 WHERE kind = 'reminder' AND status = 'pending' AND next_attempt_at <= now()
   AND (%(all)s OR namespace = ANY(%(namespaces)s))"""


def subject_id(invoice_id, days_after_due: int) -> str:
    """The reminder mail's key in the outbox: one per document and step."""
    return f"{invoice_id}/{days_after_due}"


def enqueue_due(conn: psycopg.Connection, namespaces: list[str], now: datetime,
                reminder_days: tuple[int, ...]) -> int:
    """Write the reminders due at `now` for the tenants `namespaces`, inside the caller's
    transaction, which holds their payment locks and has just derived their standings
    (payment_store.refresh); how many were written."""
    if not reminder_days or not namespaces:
        return 0
    rows = conn.execute(_DUE, {"now": now, "namespaces": namespaces,
                               "days": list(reminder_days)}).fetchall()
    for invoice_id, days, namespace in rows:
        enqueue(conn, KIND, subject_id(invoice_id, days), namespace)
    return len(rows)


def wake_sender(settings: Settings, client: GatewayClient, namespaces: list[str] | None
                ) -> str | None:
    """Ask email-invoice (asynchronously, through the gateway) to send the reminders that
    are due, when there are any: {"reminders": "due"} names nothing, so no caller can
    make it send a mail that is not in the outbox. The error when the gateway refused
    (the next hourly run asks again)."""
    with db.transaction(settings) as conn:
        due = conn.execute(_PENDING, {"all": namespaces is None,
                                      "namespaces": namespaces or []}).fetchone()[0]
    if not due:
        return None
    try:
        client.invoke_async(EMAIL_FUNCTION, json.dumps({"reminders": "due"}).encode(),
                            headers={"Content-Type": "application/json"})
    except GatewayError as exc:
        return f"reminders: {exc}"
    return None
