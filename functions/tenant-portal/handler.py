"""tenant-portal: each tenant reads its own usage and charges live, its invoices and
its rejected events, with a portal token (or the operator with the admin token and
?tenant=). GET only:

  /                          the page (?token= from a link sets the cookie)
  /api/v1/usage/current      the month to date, priced by the month close's code
  /api/v1/usage              a series: from, to, window=hour|day, group_by=function|meter|sku
  /api/v1/budget             the monthly budget, the share of it used, the period's crossings
  /api/v1/invoices[/<number>[.pdf|.html|.csv]]   issued documents, the bytes the e-mail carried
  /api/v1/rejected?limit=    quarantined events, newest first

401 without a valid token, 404 for what is not the caller's, 400 naming a bad
field, 503 + Retry-After when the database is down. The work is in chargeback.portal.
"""
from datetime import datetime, timezone

from chargeback.core.responses import guarded
from chargeback.core.settings import load
from chargeback.portal import app


@guarded
def _answer(event, context):
    req = app.Request(event.method, event.path, event.query, event.headers)
    return app.answer(load(), req, datetime.now(timezone.utc))


def handle(event, context):
    out = _answer(event, context)
    out["headers"] = {**app.HEADERS, "Content-Security-Policy": app.API_CSP,
                      **out.get("headers", {})}
    return out
