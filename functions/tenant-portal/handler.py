"""tenant-portal: each tenant reads its own usage and charges live, its invoices and
its rejected events.

The JSON API, any Host, `Authorization: Bearer` only (a portal token, or the
operator's admin token with ?tenant=); GET/HEAD:

  /api/v1/usage/current      the month to date, priced by the month close's code
  /api/v1/usage              a series: from, to, window=hour|day, group_by=function|meter|sku
  /api/v1/budget             the monthly budget, the share of it used, the period's crossings
  /api/v1/invoices[/<number>[.pdf|.html|.csv|.xml|.usage.csv]]   the bytes the e-mail carried
  /api/v1/rejected?limit=    quarantined events, newest first

The page, only on PORTAL_URL's origin (an Ingress in front of this function), with a
cookie set from a link's #token= (the page's script posts it to POST `/signin`; legacy
links' ?token= still work): `/`, `/invoices/<number>[.<file>]`, `/sign-out`,
POST `/new-link`. 401 without a valid token, 404 for what is not the caller's, 400
naming a bad field, 429 past a tenant's limits (a request past its rate first waits
its turn, up to 1 s), 503 + Retry-After when the database is down. The work is in
chargeback.portal.
"""
from datetime import datetime, timezone

from chargeback.core import startup
from chargeback.core.responses import guarded
from chargeback.core.settings import load
from chargeback.portal import app

# what it cannot work without, checked once at start (chargeback.core.startup)
check = startup.requires(app.ready)


@guarded
def _answer(event, context):
    req = app.Request(event.method, event.path, event.query, event.headers,
                      getattr(event, "host", ""), event.body)
    return app.answer(load(), req, datetime.now(timezone.utc))


def handle(event, context):
    out = _answer(event, context)
    out["headers"] = {**app.HEADERS, "Content-Security-Policy": app.API_CSP,
                      **out.get("headers", {})}
    return out
