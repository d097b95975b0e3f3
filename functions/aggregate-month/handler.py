"""aggregate-month: cron-connector calls it hourly (POST, empty body); operators call it
with options.

Empty body: close every past period not yet closed whose end plus
CLOSE_GRACE_HOURS has passed, and re-queue finalized invoices not yet sent.
JSON options: {"period": "2026-09"}, {"tenant": "acme"}, {"dry_run": true},
{"verify": "<number>"} (also checks its series' hash chain), {"export": "<number>"} (CSV),
{"void": "<number>", "reason": "<code>", "note": "...", "reissue": true,
"price_book_version": N} (a credit note for everything left of it; with reissue, the
month priced again into a new invoice that replaces it), {"credit": "<number>",
"lines": [{"line": 3, "amount": "12.50"}], "reason": "<code>"} (a partial credit
note); reasons: duplicated_charge, product_unsatisfactory, order_change,
order_cancellation, fraudulent_charge, other; {"payment": {"invoice": "<number>",
"amount": "12.50", "date": "YYYY-MM-DD", "reference": "..."}} and {"camt053": "<XML>"}
(payments, chargeback.billing.payment_requests); {"reconcile": "2026-09"} (the month's
invocations billed against the gateway's Prometheus counter, per hour; drift recorded
and announced once: chargeback.metrics.drift). Every option is the operator's: without `Authorization: Bearer <admin-token>` it answers 401, and
the cron call's answer says how many, never which tenant, number or amount.
A bad option answers 400 naming it; an unknown number 404; a document that cannot
take the adjustment (voided already, a credit note, more than is left) 409; the
database down 503. The work is in chargeback.billing.month_close and (void, credit)
chargeback.billing.adjustments.
"""
from datetime import datetime, timezone

from chargeback.billing import adjustments, audit, month_close, payment_requests
from chargeback.core import startup
from chargeback.core.auth import is_operator, require_operator
from chargeback.core.responses import guarded, require_method, respond
from chargeback.core.settings import load
from chargeback.documents import chain
from chargeback.metrics import drift

# what it cannot work without, checked once at start (chargeback.core.startup)
check = startup.requires(month_close.ready)

_OPERATOR_OPTIONS = ("dry_run", "verify", "export", "tenant", "period")


def _counts(result: dict) -> dict:
    """The cron call's answer for a caller who is not the operator: counts only."""
    return {"price_book_version": result["price_book_version"],
            "periods": [{"period": p["period"], "closed": p["closed"],
                         "invoices": len(p["invoices"]), "drafts": len(p["drafts"])}
                        for p in result["periods"]],
            "queued": len(result["queued"]), "queue_errors": len(result["queue_errors"]),
            "reminders": result["reminders"]}


@guarded
def handle(event, context):
    require_method(event, "POST")
    action = adjustments.action_of(event.body)
    if action:
        require_operator(event.headers, action)  # before anything about the body is said
        return respond(200, adjustments.apply(load(), adjustments.parse(event.body)))
    action = payment_requests.action_of(event.body)
    if action:
        require_operator(event.headers, action)
        return respond(200, payment_requests.apply(load(), *payment_requests.parse(event.body),
                                                   datetime.now(timezone.utc)))
    if drift.asks(event.body):
        require_operator(event.headers, drift.OPTION)
        return respond(200, drift.reconcile_month(load(), drift.parse(event.body),
                                                  datetime.now(timezone.utc)))
    options = month_close.parse_options(event.body)
    for name in _OPERATOR_OPTIONS:
        if getattr(options, name):
            require_operator(event.headers, name)
    settings = load()
    if options.verify:
        report = audit.verify(settings, options.verify)
        report["chain"] = chain.verify(settings, options.verify)  # removed or altered documents
        report["match"] = report["match"] and report["chain"]["intact"]
        return respond(200, report)
    if options.export:
        return respond(200, audit.export(settings, options.export),
                       {"Content-Type": "text/csv; charset=utf-8"})
    result = month_close.run(settings, options, datetime.now(timezone.utc))
    return respond(200, result if is_operator(event.headers) else _counts(result))
