"""email-invoice: aggregate-month hands it one finalized invoice, {"invoice_id": "<uuid>"}
(asynchronously, through the gateway); it renders the invoice from the database
(HTML, text, PDF, CSV) and e-mails it to the tenant exactly once.

200 {"status": "sent" | "already-sent" | "undeliverable", ...}; 400 without a
valid invoice_id; 404 unknown invoice; 409 still a draft; 503 + Retry-After when
SMTP or the database is unavailable or another request is sending it (the
queue retries). The work is in chargeback.documents.delivery.

{"reminders": "due"} (aggregate-month's hourly run): send the payment reminders
that are due, each once, none for a document settled since (documents.reminder);
200 with the counts, 503 + Retry-After while some wait for a retry. The supplier
shown is the one frozen on the invoice at finalization, not this function's
environment.
"""
from chargeback.core import startup
from chargeback.core.responses import guarded, require_method, respond
from chargeback.core.settings import load
from chargeback.documents import delivery as invoice_delivery
from chargeback.documents import reminder

# what it cannot work without, checked once at start (chargeback.core.startup)
check = startup.requires(invoice_delivery.ready)


@guarded
def handle(event, context):
    require_method(event, "POST")
    settings = load()
    if reminder.asked(event.body):
        outcome = reminder.send_due(settings)
        return respond(outcome.status, outcome.body, outcome.headers)
    invoice_id = invoice_delivery.requested_invoice_id(event.body)
    outcome = invoice_delivery.deliver(settings, invoice_id)
    return respond(outcome.status, outcome.body, outcome.headers)
