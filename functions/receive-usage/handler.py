"""receive-usage: the OpenFaaS metering webhook (function_usage events).

Signature first (401, nothing touched), then the batch is validated and stored
once per delivery. 200 with {"delivery", "accepted", "duplicates", "excluded",
"rejected": [{"index", "reason"}]}; a replayed delivery gets its original
summary. The same route takes custom usage events as CloudEvents
(Content-Type application/cloudevents+json or application/cloudevents-batch+json,
see chargeback.usage.cloudevents and docs/meters.md). 503 + Retry-After when the database is unavailable: nothing was
written, and the sender's retry is then counted exactly once.
"""
from chargeback.core import startup
from chargeback.core.responses import guarded, require_method, respond
from chargeback.core.settings import load
from chargeback.usage import receiver

# what it cannot work without, checked once at start (chargeback.core.startup)
check = startup.requires(receiver.ready)


@guarded
def handle(event, context):
    require_method(event, "POST")
    outcome = receiver.receive(load(), event.headers, event.body)
    return respond(outcome.status, outcome.body, outcome.headers)
