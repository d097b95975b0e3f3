"""The payment reminder: one mail per overdue document and step, sent exactly once by
the mail outbox (kind "reminder", subject "<invoice_id>/<days after the due date>"),
never for a document that is paid, voided or fully credited.

billing.reminders decides which reminders are due and writes their rows in the
hourly run; aggregate-month then wakes email-invoice with {"reminders": "due"},
which sends them here. In the claim's transaction the tenant's payment lock is taken
and the document's standing derived again (billing.payment_store): when nothing is
open any more, the mail is withdrawn and nothing is sent. A payment recorded after
the claim committed finds the mail decided, like one recorded a moment after it was
sent. The mail is in the tenant's language, says the invoice number, the due date
and what is open after payments and credit notes, and carries the invoice PDF again
(the same bytes as the invoice mail). Its Message-ID is derived from the document
and the step. Sent, the reminder is reported as invoice.reminder_sent.
"""
from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from babel.dates import format_date
from babel.numbers import format_currency

from chargeback.billing import payment_store, payments
from chargeback.core import db, jsonbody
from chargeback.core.responses import RequestError
from chargeback.core.settings import Settings
from chargeback.documents.delivery import Outcome
from chargeback.documents.message import build
from chargeback.documents.model import Invoice, Issuer
from chargeback.documents.rendered import render
from chargeback.documents.rows import read_invoice
from chargeback.mail import outbox
from chargeback.mail.i18n import labels, resolve_locale
from chargeback.mail.mime import one_address, safe_token
# a sent reminder is reported to the operator's endpoints in the transaction that
# records it
from chargeback.webhooks import outbox as webhook_outbox
from chargeback.webhooks.events import INVOICE_REMINDER_SENT

SEND_BUDGET_S = 20.0  # stop claiming reminders after this (below exec_timeout)

_NAMESPACE = "SELECT namespace FROM openfaas_metering.invoices WHERE invoice_id = %s"

_OUTCOME = """
UPDATE openfaas_metering.payment_reminders
   SET status = %(status)s, reason = %(reason)s, open_amount = %(open)s,
       sent_at = CASE WHEN %(status)s = 'sent' THEN now() END, message_id = %(message_id)s
 WHERE invoice_id = %(invoice_id)s AND days_after_due = %(days)s AND status = 'pending'"""


@dataclass(frozen=True)
class Step:
    invoice_id: str
    days_after_due: int


@dataclass(frozen=True)
class Reminder:
    step: Step
    invoice: Invoice
    supplier: Issuer
    usage: str | None
    standing: payments.Standing   # as derived in the claim: what is open now


def _step(subject_id: str) -> Step:
    invoice_id, _, days = subject_id.rpartition("/")
    return Step(invoice_id, int(days))


def _load(conn, settings: Settings, subject_id: str) -> Reminder | outbox.Withdrawn:
    step = _step(subject_id)
    row = conn.execute(_NAMESPACE, (step.invoice_id,)).fetchone()
    if row is None:
        return outbox.Withdrawn(f"no document {step.invoice_id}", step)
    payment_store.lock(conn, [row[0]])   # a payment being recorded now is seen or waits
    now = conn.execute("SELECT now()").fetchone()[0]
    ledger = payment_store.ledgers(conn, [row[0]], now)[row[0]]
    standing = ledger.standings.get(uuid.UUID(step.invoice_id))
    if standing is None or standing.status in (payments.PAID, payments.VOIDED) \
            or standing.open <= 0:
        status = standing.status if standing else "gone"
        return outbox.Withdrawn(f"{standing.number if standing else step.invoice_id} is "
                                f"{status}: nothing left to remind of", step)
    return Reminder(step, *read_invoice(conn, step.invoice_id, settings), standing)


def message_id(step: Step, mail_from: str) -> str:
    """<reminder-UUID-DAYS@domain-of-From>: the same for every attempt of this step."""
    domain = one_address("From", mail_from).domain or "chargeback.invalid"
    return f"<reminder-{step.invoice_id}-{step.days_after_due}@{safe_token(domain)}>"


def wording(r: Reminder, default_locale: str) -> tuple[str, str]:
    """(Subject, text) in the tenant's language; amounts and dates for its locale."""
    locale = resolve_locale(r.invoice.locale, default_locale)
    _ = labels(locale)[1]
    s = r.standing

    def money(amount):
        return format_currency(amount, r.invoice.currency, locale=locale)
    values = {"name": r.invoice.bill_to_name, "number": r.invoice.number,
              "due_date": format_date(r.invoice.due_date, "long", locale=locale),
              "open": money(s.open), "total": money(s.total),
              "settled": money(s.paid + s.credited)}
    said = [_("Hello {name},"),
            _("Our invoice {number} was due on {due_date}. By our records {open} of it is "
              "still open.")]
    if s.paid + s.credited > 0:
        said.append(_("Of its total of {total}, payments and credit notes have settled "
                      "{settled}."))
    said += [_("Please pay the open amount; the invoice is attached again."),
             _("If you have paid in the meantime, please disregard this reminder."),
             _("Kind regards,")]
    text = "\n\n".join(label.format(**values) for label in said)
    text += "\n" + r.supplier.name + "\n"
    subject = _("Payment reminder: invoice {number}, {open} open").format(**values)
    return subject, text


def _compose(r: Reminder, settings: Settings) -> outbox.Composed:
    subject, text = wording(r, settings.default_locale)
    pdf = render(r.invoice, r.supplier, settings, r.usage).attachments[0]
    body = "".join(f"<p>{html.escape(part).replace(chr(10), '<br>')}</p>"
                   for part in text.strip().split("\n\n"))
    msg, envelope = build(r.invoice, subject=subject, text=text,
                          html=f'<!DOCTYPE html><html><body>{body}</body></html>',
                          attachments=[pdf], mail_from=settings.mail_from,
                          reply_to=settings.mail_reply_to, bcc=settings.mail_bcc,
                          sent_at=datetime.now(timezone.utc))
    msg.replace_header("Message-ID", message_id(r.step, settings.mail_from))
    return outbox.Composed(msg, envelope.sender, envelope.recipients)


def _record(conn, step: Step, status: str, reason: str | None = None, open_amount=None,
            mid: str | None = None) -> int:
    return conn.execute(_OUTCOME, {"status": status, "reason": reason, "open": open_amount,
                                   "message_id": mid, "invoice_id": step.invoice_id,
                                   "days": step.days_after_due}).rowcount


def _on_sent(conn, r: Reminder, mid: str, note: str | None) -> None:
    if _record(conn, r.step, "sent", note, r.standing.open, mid):
        webhook_outbox.emit(conn, INVOICE_REMINDER_SENT, {
            "invoice_id": r.invoice.invoice_id, "number": r.invoice.number,
            "tenant": r.invoice.namespace, "currency": r.invoice.currency,
            "total": str(r.standing.total), "open": str(r.standing.open),
            "due_date": r.invoice.due_date.isoformat(),
            "days_after_due": r.step.days_after_due, "message_id": mid})


def _on_undeliverable(conn, r: Reminder, reason: str) -> None:
    _record(conn, r.step, "undeliverable", reason)


def _on_withdrawn(conn, step: Step, reason: str) -> None:
    _record(conn, step, "withdrawn", reason)


REMINDER_MAIL = outbox.MailKind("reminder", _load, _compose, _on_sent, _on_undeliverable,
                                _on_withdrawn)


def asked(body: bytes) -> bool:
    """True for {"reminders": "due"} (send the reminders that are due); RequestError 400
    for another value of "reminders"."""
    try:
        payload = jsonbody.parse(body, empty=None)
    except jsonbody.JsonBodyError:
        return False
    if not isinstance(payload, dict) or "reminders" not in payload:
        return False
    if payload != {"reminders": "due"}:
        raise RequestError(400, 'reminders: expected {"reminders": "due"} and nothing else')
    return True


def send_due(settings: Settings, budget_s: float = SEND_BUDGET_S) -> Outcome:
    """Send every reminder that is due; 200 with the counts, 503 while some wait for a
    retry (a retrying queue-worker asks again; so does the next hourly run)."""
    db.configured(settings)
    counts = outbox.send_due(settings, REMINDER_MAIL, budget_s)
    if counts.get("sent"):
        webhook_outbox.wake(settings)
    if counts["retrying"]:
        return Outcome(503, {"error": f"reminders: {counts['retrying']} wait for a retry",
                             **counts}, {"Retry-After": str(int(settings.mail_retry_base_s))})
    return Outcome(200, {"status": "reminders", **counts})
