"""deliver-webhooks: posts the outbox's events to WEBHOOK_URLS, signed (Standard Webhooks).

Empty body (cron every minute, or the async wake-up a function sends after
committing an event): deliver what is due; 200 with counts only. Operator
options (admin-token as Bearer, chargeback.webhooks.operator): {"list":
"failed" | "pending" | "delivered" | "cancelled"} and {"replay": "<event id>" |
"failed" | {"endpoint": ..., "from": ..., "to": ...}}. A WEBHOOK_URLS entry that is neither
https:// nor loopback, or no usable webhook-signing-secret, is refused when the
function starts (logged once; /_/health and every call answer 503 with that
line): nothing is sent. The work is in chargeback.webhooks.delivery.
"""
from chargeback.core import startup
from chargeback.core.auth import require_operator
from chargeback.core.responses import guarded, require_method, respond
from chargeback.core.settings import load
from chargeback.webhooks import delivery, operator

# what it cannot work without, checked once at start (chargeback.core.startup)
check = startup.requires(delivery.ready)


@guarded
def handle(event, context):
    require_method(event, "POST")
    options = operator.parse_options(event.body)
    settings = load()
    if options.list:
        require_operator(event.headers, "list")
        return respond(200, operator.listing(settings, options.list))
    if options.replay:
        require_operator(event.headers, "replay")
        return respond(200, operator.replay(settings, options.replay))
    return respond(200, delivery.drain(settings))
