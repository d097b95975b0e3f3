"""Demo sections for tenant-portal: what each tenant's usage/current said the instant
September ended (before the close), then, after the close, the same figures beside the
invoices, and a portal link for one tenant (open it while scripts/up runs)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import os

import psycopg
import requests

from chargeback.core import tokens

PORTAL = "/function/tenant-portal.openfaas-system"
LINK_TENANT = "acme-shop"
_asked: dict[str, dict] = {}  # usage/current before the close, by tenant


class DemoError(RuntimeError):
    pass


def before_close(gateway_url: str, database_url: str, admin_token: str) -> None:
    """usage/current?period=2026-09 for every tenant, as the operator, before the close."""
    with psycopg.connect(database_url) as conn:
        tenants = [ns for (ns,) in conn.execute(  # seen by meter-capacity, or with usage
            """SELECT namespace FROM openfaas_metering.tenants
                UNION
               SELECT DISTINCT namespace FROM openfaas_metering.function_usage_daily
                WHERE day_start >= '2026-09-01T00:00:00Z' AND day_start < '2026-10-01T00:00:00Z'
                ORDER BY 1""")]
    for ns in tenants:
        r = requests.get(f"{gateway_url}{PORTAL}/api/v1/usage/current",
                         params={"tenant": ns, "period": "2026-09"},
                         headers={"Authorization": f"Bearer {admin_token}"}, timeout=60)
        if r.status_code == 409:  # a second demo against scripts/up: already invoiced
            continue
        if r.status_code != 200:
            raise DemoError(f"tenant-portal usage/current for {ns}: {r.status_code} "
                            f"{r.text[:200]}")
        _asked[ns] = r.json()
        month = _asked[ns]
        print(f"{ns:<14} {month['total'] or 'draft':>14} {month['currency'] or ''}")


def run(gateway_url: str, database_url: str, signing_key: str) -> None:
    with psycopg.connect(database_url) as conn:
        invoices = conn.execute(
            """SELECT namespace, number, currency, subtotal, tax, total
                 FROM openfaas_metering.invoices
                WHERE period = '2026-09' AND status <> 'draft'
                  AND document_kind = 'invoice'  -- the close's invoice, not later corrections
                ORDER BY namespace""").fetchall()
    print(f"{'tenant':<14} {'usage/current before the close':>32}   {'the invoice':>28}")
    for ns, number, currency, subtotal, tax, total in invoices:
        month = _asked.get(ns)
        if month is None:
            continue
        said = (Decimal(month["subtotal"]), Decimal(month["tax"]), Decimal(month["total"]))
        mark = "equal" if said == (subtotal, tax, total) else "DIFFERENT"
        print(f"{ns:<14} {said[2]:>28} {month['currency']}   {number} {total:>12} {currency}"
              f"  {mark}")
        if mark != "equal":
            raise DemoError(f"{ns}: usage/current {said} but invoice {number} "
                            f"{(subtotal, tax, total)}")
    token = tokens.issue(signing_key, LINK_TENANT, datetime.now(timezone.utc),
                         timedelta(days=7))
    print(f"\n{LINK_TENANT}'s portal (September's usage and invoice; valid 7 days, while "
          f"the runtime runs, e.g. under scripts/up):\n  "
          f"{tokens.page_url(_portal_origin(), token, '2026-09')}")


def _portal_origin() -> str:
    """The page's own origin under scripts/up and the demo (devstack.up.portal_url)."""
    return f"http://localhost:{os.environ.get('PORTAL_PORT') or 8081}"
