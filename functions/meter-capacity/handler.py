"""meter-capacity: cron-connector calls it every minute (POST, empty body).

It records, per tenant, what the tenant held in the cluster since the previous
completed tick (dedicated nodes, CPU, memory, GPUs by SKU, storage, load
balancers) and answers a summary of the tick. The work is in
chargeback.capacity.tick; the status codes are chargeback.core.responses's.
"""
from chargeback.capacity import tick as capacity_tick
from chargeback.core.responses import guarded, require_method, respond
from chargeback.core.settings import load


@guarded
def handle(event, context):
    require_method(event, "POST")
    settings = load()
    requested = capacity_tick.requested_now(event.body, settings)
    return respond(200, capacity_tick.run_tick(settings, requested))
