"""email-invoice's work: claim one invoice, render it, send it once, record what happened.

Exactly once, as far as SMTP allows:
1. Claim: one committed UPDATE sets send_claimed_at on a finalized invoice
   nobody holds (or whose holder died: a claim older than
   SEND_CLAIM_TIMEOUT_SECONDS). Two requests at once: the row lock lets one
   through; the other answers 503 and its retry finds the invoice sent.
2. Render from the database only, and send with a Message-ID derived from
   the invoice.
3. Record: sent (sent_at, message_id), undeliverable (reason), or release the
   claim after a transient failure (503, the queue retries).
If the process dies after the server accepted the mail and before step 3
commits, the claim stays until it is stale; the next request then sends the
same message again with the same Message-ID, which receivers use to drop
the duplicate. That window cannot be closed with SMTP; it is kept short.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from chargeback.core import db, jsonbody
from chargeback.core.responses import RETRY_AFTER_S, RequestError
from chargeback.core.settings import Settings
from chargeback.core.tokens import hosted_invoice_url
from chargeback.documents import einvoice
from chargeback.documents.message import Attachment, attachment_names, build, message_id
from chargeback.documents.model import Invoice, Issuer
from chargeback.documents.pdf import render_pdf
from chargeback.documents.presentation import present
from chargeback.documents.rendering import lines_csv, render_html, render_text
from chargeback.documents.rows import read_invoice
from chargeback.mail import smtp as mailer
from chargeback.mail.mime import Undeliverable
# a sent or bounced invoice is reported to the operator's endpoints through the
# outbox, in the transaction that records it
from chargeback.webhooks import outbox as webhook_outbox

_CLAIM = """
UPDATE openfaas_metering.invoices
   SET send_claimed_at = clock_timestamp(), send_attempts = send_attempts + 1
 WHERE invoice_id = %(invoice_id)s
   AND status = 'finalized'
   AND (send_claimed_at IS NULL
        OR send_claimed_at < clock_timestamp() - make_interval(secs => %(stale_s)s))
RETURNING send_claimed_at
"""

_STATE = """
SELECT status, send_claimed_at, sent_at, message_id, undeliverable_reason
  FROM openfaas_metering.invoices WHERE invoice_id = %s
"""

_SENT = """
UPDATE openfaas_metering.invoices
   SET status = 'sent', sent_at = now(), message_id = %(message_id)s,
       send_claimed_at = NULL, last_send_error = %(note)s
 WHERE invoice_id = %(invoice_id)s AND status = 'finalized'
"""

_UNDELIVERABLE = """
UPDATE openfaas_metering.invoices
   SET status = 'undeliverable', undeliverable_reason = %(reason)s,
       last_send_error = %(reason)s, send_claimed_at = NULL
 WHERE invoice_id = %(invoice_id)s AND status = 'finalized'
   AND send_claimed_at = %(claimed_at)s
"""

_RELEASE = """
UPDATE openfaas_metering.invoices
   SET send_claimed_at = NULL, last_send_error = %(reason)s
 WHERE invoice_id = %(invoice_id)s AND send_claimed_at = %(claimed_at)s
"""


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    """Everything one invoice renders to; the same invoice gives the same bytes."""
    view: dict[str, Any]
    text: str
    html: str
    pdf: bytes
    attachments: list[Attachment]


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


def render(invoice: Invoice, issuer: Issuer, settings: Settings,
           usage: str | None = None) -> Rendered:
    """All parts of the mail for `invoice`: text, HTML, PDF and the CSV attachments
    (the usage CSV, aggregate-month's export, when `usage` is given)."""
    usage_bytes = usage.encode() if usage is not None else None
    withheld = None  # a usage CSV over MAX_ATTACHMENT_BYTES is not attached; the mail says so
    if usage_bytes is not None and len(usage_bytes) > settings.max_attachment_bytes:
        withheld, usage_bytes = len(usage_bytes), None
    names = attachment_names(invoice, issuer.name, usage_bytes is not None)
    view = present(invoice, issuer, settings.default_locale, names, withheld)
    # in the PDF and attached: the same bytes, its item names as the PDF shows them
    xml = einvoice.cii_xml(invoice, issuer, {line["no"]: line["description"]
                                             for line in view["lines"]})
    # the hosted invoice page (tenant-portal), when PORTAL_URL is set
    view["hosted_url"] = hosted_invoice_url(settings, invoice.namespace, invoice.number,
                                            invoice.issued_at)
    pdf = render_pdf(view, invoice.issued_at, xml)
    files = [Attachment(names[0], "application/pdf", pdf),
             Attachment(names[1], "text/csv", lines_csv(invoice).encode()),
             Attachment(names[2], "application/xml", xml)]
    if usage_bytes is not None:
        files.append(Attachment(names[3], "text/csv", usage_bytes))
    return Rendered(view, render_text(view), render_html(view), pdf, files)


def subject(invoice: Invoice, rendered: Rendered) -> str:
    """In the invoice's label language, like the document."""
    return rendered.view["subject"]


def rerender(settings: Settings, invoice_id: str) -> Rendered:
    """Render a finalized or sent invoice again: the same bytes as the mail carried."""
    with db.transaction(settings) as conn:
        invoice, supplier, usage = read_invoice(conn, invoice_id, settings)
    return render(invoice, supplier, settings, usage)


class _NotClaimed(Exception):
    """The invoice is not this request's to send; `outcome` is the answer."""

    def __init__(self, outcome: Outcome):
        super().__init__(outcome.status)
        self.outcome = outcome


def _claim(settings: Settings, invoice_id: str) -> tuple[Invoice, Issuer, datetime, str]:
    """The claimed invoice, its supplier, its claim time and its usage CSV; _NotClaimed
    otherwise."""
    with db.transaction(settings) as conn:
        row = conn.execute(_CLAIM, {"invoice_id": invoice_id,
                                    "stale_s": settings.send_claim_timeout_s}).fetchone()
        if row is None:
            raise _NotClaimed(_not_claimed(conn, invoice_id))
        invoice, supplier, usage = read_invoice(conn, invoice_id, settings)
    return invoice, supplier, row[0], usage


def _not_claimed(conn, invoice_id: str) -> Outcome:
    state = conn.execute(_STATE, (invoice_id,)).fetchone()
    if state is None:
        raise RequestError(404, f"invoice_id: no invoice {invoice_id}")
    status, claimed_at, sent_at, sent_message_id, reason = state
    if status == "draft":
        raise RequestError(409, f"invoice {invoice_id} is still a draft; only finalized "
                                "invoices are sent")
    if status == "sent":
        return Outcome(200, {"status": "already-sent", "invoice_id": invoice_id,
                             "sent_at": sent_at.isoformat(), "message_id": sent_message_id})
    if status == "undeliverable":
        return Outcome(200, {"status": "undeliverable", "invoice_id": invoice_id,
                             "reason": reason})
    return Outcome(503, {"error": f"invoice {invoice_id} is being sent by another request "
                                  f"since {claimed_at.isoformat()}; retry later"},
                   {"Retry-After": str(RETRY_AFTER_S)})


def _record(settings: Settings, statement: str, event: tuple[str, dict] | None = None,
            **params) -> None:
    with db.transaction(settings) as conn:
        moved = conn.execute(statement, params).rowcount
        if event and moved:  # the status moved: its webhook, once
            webhook_outbox.emit(conn, *event)
    if event and moved:
        webhook_outbox.wake(settings)


def _webhook_data(invoice: Invoice) -> dict:
    return {"invoice_id": invoice.invoice_id, "number": invoice.number,
            "tenant": invoice.namespace, "period": invoice.period,
            "total": str(invoice.total), "currency": invoice.currency}


def deliver(settings: Settings, invoice_id: str) -> Outcome:
    """Send invoice `invoice_id` unless it was sent; see the module docstring."""
    server = mailer.parse_url(settings.smtp_url, settings.smtp_timeout_s)  # before claiming
    try:
        invoice, supplier, claimed_at, usage = _claim(settings, invoice_id)
    except _NotClaimed as refused:
        return refused.outcome
    try:
        rendered = render(invoice, supplier, settings, usage)
        msg, envelope = build(invoice, subject=subject(invoice, rendered),
                              text=rendered.text, html=rendered.html,
                              attachments=rendered.attachments, mail_from=settings.mail_from,
                              reply_to=settings.mail_reply_to, bcc=settings.mail_bcc,
                              sent_at=datetime.now(timezone.utc))
        archive_refused = mailer.send(server, msg, envelope.sender, envelope.recipients,
                                      settings.smtp_ca_file)
    except (Undeliverable, mailer.SmtpRejected) as exc:
        _record(settings, _UNDELIVERABLE, invoice_id=invoice_id, reason=str(exc),
                claimed_at=claimed_at, event=("invoice.undeliverable", {
                    **_webhook_data(invoice), "reason": str(exc)}))
        return Outcome(200, {"status": "undeliverable", "invoice_id": invoice_id,
                             "reason": str(exc)})
    except mailer.SmtpTransient as exc:
        _record(settings, _RELEASE, invoice_id=invoice_id, reason=str(exc),
                claimed_at=claimed_at)
        return Outcome(503, {"error": f"SMTP unavailable, retry later: {exc}"},
                       {"Retry-After": str(RETRY_AFTER_S)})
    except Exception as exc:  # misconfigured SMTP, a bug: free the invoice for a retry
        _record(settings, _RELEASE, invoice_id=invoice_id,
                reason=db.one_line(exc), claimed_at=claimed_at)
        if isinstance(exc, mailer.SmtpMisconfigured):
            return Outcome(500, {"error": f"misconfigured: {exc}"})
        raise
    note = "; ".join(f"archive copy to {a} refused: {r}" for a, r in archive_refused.items())
    mid = message_id(invoice, settings.mail_from)
    _record(settings, _SENT, invoice_id=invoice_id, message_id=mid, note=note or None,
            event=("invoice.sent", {**_webhook_data(invoice), "message_id": mid}))
    return Outcome(200, {"status": "sent", "invoice_id": invoice_id, "number": invoice.number,
                         "message_id": mid, "to": envelope.recipients[0]})
