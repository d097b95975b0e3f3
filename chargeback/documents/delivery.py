"""email-invoice's work: one invoice's mail, sent exactly once by the mail outbox.

The invoice is one kind of mail (INVOICE_MAIL) of chargeback.mail.outbox,
which claims, sends and records it (see there: per-mail attempts and backoff,
an attempt limit, a claim kept until its lease ends when the server may have
the message). This module says what is particular to invoices: the mail row
is written when email-invoice is first asked for a finalized invoice; the
message is rendered from the database only, with a Message-ID derived from
the invoice; sent and undeliverable move the invoice's status and report it
to the operator's endpoints (invoice.sent, invoice.undeliverable) in the
transaction that records the outcome.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from chargeback.core import db, jsonbody, tokens
from chargeback.core.responses import RequestError
from chargeback.core.settings import Settings
from chargeback.documents.message import build
from chargeback.documents.model import Invoice, Issuer
from chargeback.documents.rendered import render, subject
from chargeback.documents.rows import read_invoice
from chargeback.mail import outbox, sender
from chargeback.mail import smtp as mailer
# a sent or bounced invoice is reported to the operator's endpoints through the
# outbox, in the transaction that records it
from chargeback.webhooks import outbox as webhook_outbox

_INVOICE = """
SELECT status, namespace FROM openfaas_metering.invoices WHERE invoice_id = %s"""

_SENT = """
UPDATE openfaas_metering.invoices
   SET status = 'sent', sent_at = now(), message_id = %(message_id)s,
       last_send_error = %(note)s
 WHERE invoice_id = %(invoice_id)s AND status = 'finalized'"""

_UNDELIVERABLE = """
UPDATE openfaas_metering.invoices
   SET status = 'undeliverable', undeliverable_reason = %(reason)s,
       last_send_error = %(reason)s
 WHERE invoice_id = %(invoice_id)s AND status = 'finalized'"""


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def ready(settings: Settings, environ: Mapping[str, str]) -> None:
    """What email-invoice cannot work without (checked at start): a database, an SMTP
    server, a sender of its own, and, when PORTAL_URL puts the hosted invoice link in
    every mail, the key that signs the link."""
    db.configured(settings)
    mailer.parse_url(settings.smtp_url, settings.smtp_timeout_s)
    sender.refuse_example(settings)
    if settings.portal_url:
        tokens.signing_key(environ)


def requested_invoice_id(body: bytes) -> str:
    """The invoice id from a request body {"invoice_id": "<uuid>"}; RequestError 400 otherwise."""
    expected = 'body: expected JSON {"invoice_id": "<uuid>"}'
    try:
        payload = jsonbody.parse(body, empty=None)
    except jsonbody.JsonBodyError as exc:
        raise RequestError(400, f"{expected}; {exc}") from None
    if payload is None:
        raise RequestError(400, f"{expected}, got an empty body")
    raw = payload.get("invoice_id") if isinstance(payload, dict) else None
    try:
        return str(uuid.UUID(raw))
    except (ValueError, TypeError, AttributeError):
        raise RequestError(400, f"invoice_id: expected a UUID string, got {raw!r}") from None


@dataclass(frozen=True)
class _Subject:
    invoice: Invoice
    supplier: Issuer
    usage: str | None


def _load(conn, settings: Settings, invoice_id: str) -> _Subject:
    return _Subject(*read_invoice(conn, invoice_id, settings))


def _compose(s: _Subject, settings: Settings) -> outbox.Composed:
    rendered = render(s.invoice, s.supplier, settings, s.usage)
    msg, envelope = build(s.invoice, subject=subject(s.invoice, rendered),
                          text=rendered.text, html=rendered.html,
                          attachments=rendered.attachments, mail_from=settings.mail_from,
                          reply_to=settings.mail_reply_to, bcc=settings.mail_bcc,
                          sent_at=datetime.now(timezone.utc))
    return outbox.Composed(msg, envelope.sender, envelope.recipients)


def _on_sent(conn, s: _Subject, mid: str, note: str | None) -> None:
    if conn.execute(_SENT, {"invoice_id": s.invoice.invoice_id, "message_id": mid,
                            "note": note}).rowcount:
        webhook_outbox.emit(conn, "invoice.sent", {**_webhook_data(s.invoice),
                                                   "message_id": mid})


def _on_undeliverable(conn, s: _Subject, reason: str) -> None:
    if conn.execute(_UNDELIVERABLE, {"invoice_id": s.invoice.invoice_id,
                                     "reason": reason}).rowcount:
        webhook_outbox.emit(conn, "invoice.undeliverable", {**_webhook_data(s.invoice),
                                                            "reason": reason})


INVOICE_MAIL = outbox.MailKind("invoice", _load, _compose, _on_sent, _on_undeliverable)


def _webhook_data(invoice: Invoice) -> dict:
    return {"invoice_id": invoice.invoice_id, "number": invoice.number,
            "tenant": invoice.namespace, "period": invoice.period,
            "total": str(invoice.total), "currency": invoice.currency}


def _enqueue(settings: Settings, invoice_id: str) -> None:
    """The invoice's mail row, written the first time it is asked for; RequestError
    404 for no invoice, 409 for a draft."""
    with db.transaction(settings) as conn:
        row = conn.execute(_INVOICE, (invoice_id,)).fetchone()
        if row is None:
            raise RequestError(404, f"invoice_id: no invoice {invoice_id}")
        status, namespace = row
        if status == "draft":
            raise RequestError(409, f"invoice {invoice_id} is still a draft; only finalized "
                                    "invoices are sent")
        if status == "finalized":
            outbox.enqueue(conn, INVOICE_MAIL.name, invoice_id, namespace)


def _not_claimed(settings: Settings, invoice_id: str) -> Outcome:
    with db.transaction(settings) as conn:
        mail = outbox.state(conn, INVOICE_MAIL.name, invoice_id)
    if mail is None:  # sent or bounced before the mail outbox existed
        with db.transaction(settings) as conn:
            row = conn.execute("""SELECT status, sent_at, message_id, undeliverable_reason
                                    FROM openfaas_metering.invoices WHERE invoice_id = %s""",
                               (invoice_id,)).fetchone()
        mail = outbox.State(row[0], 0, datetime.now(timezone.utc), False, None, *row[1:3],
                            None, row[3])
    if mail.status == "sent":
        return Outcome(200, {"status": "already-sent", "invoice_id": invoice_id,
                             "sent_at": mail.sent_at.isoformat(),
                             "message_id": mail.message_id})
    if mail.status == "undeliverable":
        return Outcome(200, {"status": "undeliverable", "invoice_id": invoice_id,
                             "reason": mail.undeliverable_reason})
    retry_after = str(outbox.Result("pending", None,
                                    next_attempt_at=mail.next_attempt_at).retry_after_s())
    if mail.claimed:
        return Outcome(503, {"error": f"invoice {invoice_id} is being sent by another request "
                                      f"since {mail.claimed_at.isoformat()}; retry later"},
                       {"Retry-After": retry_after})
    return Outcome(503, {"error": f"invoice {invoice_id}: next attempt at "
                                  f"{mail.next_attempt_at.isoformat()} (attempts so far: "
                                  f"{mail.attempts}; last error: {mail.last_error}); "
                                  "retry later"}, {"Retry-After": retry_after})


def deliver(settings: Settings, invoice_id: str) -> Outcome:
    """Send invoice `invoice_id` unless it was sent; see the module docstring."""
    server = mailer.parse_url(settings.smtp_url, settings.smtp_timeout_s)  # before claiming
    _enqueue(settings, invoice_id)
    claimed = outbox.claim(settings, INVOICE_MAIL, invoice_id)
    if claimed is None:
        return _not_claimed(settings, invoice_id)
    result = outbox.attempt(settings, INVOICE_MAIL, claimed, server)
    invoice = claimed.subject.invoice
    if result.status in ("sent", "undeliverable"):
        webhook_outbox.wake(settings)
    if result.status == "sent":
        return Outcome(200, {"status": "sent", "invoice_id": invoice_id,
                             "number": invoice.number, "message_id": result.message_id,
                             "to": result.recipients[0]})
    if result.status == "undeliverable":
        return Outcome(200, {"status": "undeliverable", "invoice_id": invoice_id,
                             "reason": result.reason})
    if result.status == "misconfigured":
        return Outcome(500, {"error": f"misconfigured: {result.reason}"})
    return Outcome(503, {"error": f"SMTP unavailable, retry later: {result.reason}"},
                   {"Retry-After": str(result.retry_after_s())})
