"""aggregate-month: cron-connector calls it hourly (POST, empty body); operators call it
with options.

Empty body: close every past period not yet closed whose end plus
CLOSE_GRACE_HOURS has passed, and re-queue finalized invoices not yet sent.
JSON options: {"period": "2026-09"}, {"tenant": "acme"}, {"dry_run": true},
{"verify": "<number>"}, {"export": "<number>"} (CSV). A bad option answers
400 naming it; the database down 503. The work is in chargeback.month_close.
"""
from datetime import datetime, timezone

from chargeback.billing import month_close
from chargeback.core.responses import guarded, require_method, respond
from chargeback.core.settings import load


@guarded
def handle(event, context):
    require_method(event, "POST")
    options = month_close.parse_options(event.body)
    settings = load()
    if options.verify:
        return respond(200, month_close.verify(settings, options.verify))
    if options.export:
        return respond(200, month_close.export(settings, options.export),
                       {"Content-Type": "text/csv; charset=utf-8"})
    return respond(200, month_close.run(settings, options, datetime.now(timezone.utc)))
