"""evaluate-budgets: cron-connector calls it every minute (POST, empty body).

Prices every budgeted tenant's month to date with the month close's code
(chargeback.billing.estimate), fires each threshold crossing (BUDGET_THRESHOLDS
percent of the tenant's monthly budget) and the month's forecast once: a
webhook event and a mail to the tenant's billing contact. 200 with counts
only; 503 + Retry-After when the database is unavailable. The work is in
chargeback.budgets.evaluate.
"""
from chargeback.budgets import evaluate
from chargeback.core import startup
from chargeback.core.responses import guarded, require_method, respond
from chargeback.core.settings import load

# what it cannot work without, checked once at start (chargeback.core.startup)
check = startup.requires(evaluate.ready)


@guarded
def handle(event, context):
    require_method(event, "POST")
    return respond(200, evaluate.evaluate(load()))
