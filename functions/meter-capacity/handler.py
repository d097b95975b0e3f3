"""meter-capacity: cron-connector calls it every minute (POST, empty body).

It records, per tenant, what the tenant held in the cluster since the previous
completed tick (dedicated nodes, CPU, memory, GPUs by SKU, storage, load
balancers) and answers a summary of the tick. The work is in
chargeback.capacity.tick; the status codes are chargeback.core.responses's.
When PROMETHEUS_URL is set it then collects the Prometheus meters of every
hour not collected yet (chargeback.metrics.collect) and reconciles each complete hour
once against the gateway's counter (chargeback.metrics.drift); Prometheus being down
never fails the tick: the answer says so and the next call collects the hour.
"""
from datetime import datetime, timezone

from chargeback.capacity import tick as capacity_tick
from chargeback.core import startup
from chargeback.core.responses import guarded, require_method, respond
from chargeback.core.settings import load
from chargeback.metrics import collect, drift, prometheus

# what it cannot work without, checked once at start (chargeback.core.startup)
check = startup.requires(capacity_tick.ready)


@guarded
def handle(event, context):
    require_method(event, "POST")
    settings = load()
    requested = capacity_tick.requested_now(event.body, settings)
    summary = capacity_tick.run_tick(settings, requested)
    now = requested or datetime.now(timezone.utc)
    try:
        summary.update(collect.collect(settings, now))
        summary.update(drift.reconcile_due(settings, now))
    except prometheus.PrometheusUnavailable as exc:
        summary["prometheus"] = exc.public_reason()
    return respond(200, summary)
