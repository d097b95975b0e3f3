"""Links into the portal: the page for a tenant, and the hosted invoice link an e-mail
carries. `scripts/portal-token` is `main()`.

The hosted invoice link (Stripe's hosted invoice page) opens one document: its
token is limited to the invoice by the `invoice` claim and valid
HOSTED_LINK_DAYS from the invoice's issue, so the same invoice always renders
the same link (and the e-mail the same bytes).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from chargeback.core.settings import ConfigError, Settings
from chargeback.portal import tokens
from chargeback.portal.access import signing_key

HOSTED_LINK_DAYS = 120
LOCAL_PORTAL = "http://127.0.0.1:{port}/function/tenant-portal.openfaas-system"


def page_url(portal_url: str, token: str, period: str | None = None) -> str:
    """The page's address with a token (the page keeps it in a cookie and drops it)."""
    url = f"{portal_url.rstrip('/')}/?token={quote(token, safe='')}"
    return url + (f"&period={period}" if period else "")


def hosted_invoice_url(settings: Settings, tenant: str, number: str, issued_at: datetime,
                       environ: Mapping[str, str] | None = None) -> str | None:
    """The link an invoice e-mail carries to that invoice's page, or None when PORTAL_URL
    is not set. ConfigError when PORTAL_URL is set but the signing key is missing."""
    if not settings.portal_url:
        return None
    token = tokens.issue(signing_key(environ), tenant, issued_at,
                         timedelta(days=HOSTED_LINK_DAYS), invoice=number)
    return page_url(settings.portal_url, token)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/portal-token",
        description="Print a portal token for TENANT, and the portal link that uses it.")
    parser.add_argument("tenant")
    parser.add_argument("--days", type=int, default=7, help="valid for N days (default 7)")
    parser.add_argument("--invoice", help="limit the token to this one invoice number")
    args = parser.parse_args(argv)
    if not 0 < args.days <= 366:
        parser.error("--days: expected 1 to 366")
    try:
        token = tokens.issue(signing_key(), args.tenant, datetime.now(timezone.utc),
                             timedelta(days=args.days), invoice=args.invoice)
    except (ConfigError, ValueError) as exc:
        print(f"scripts/portal-token: {exc}", file=sys.stderr)
        return 2
    portal = os.environ.get("PORTAL_URL") or LOCAL_PORTAL.format(
        port=os.environ.get("GATEWAY_PORT", "8080"))
    print(token)
    print(f"open {page_url(portal, token)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
