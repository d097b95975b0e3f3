"""`scripts/portal-token`: print a portal token for a tenant and the link that uses it
(core.tokens signs it)."""
from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timedelta, timezone

from chargeback.core import tokens
from chargeback.core.settings import ConfigError
from chargeback.core.tokens import page_url, signing_key

LOCAL_PORTAL = "http://localhost:{port}"  # scripts/up's Ingress stand-in (PORTAL_PORT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/portal-token",
        description="Print a portal token for TENANT, and the portal link that uses it.")
    parser.add_argument("tenant")
    parser.add_argument("--days", type=int, default=7, help="valid for N days (default 7)")
    parser.add_argument("--invoice", help="limit the token to this one invoice number")
    args = parser.parse_args(argv)
    if not 0 < args.days <= 120:
        parser.error("--days: expected 1 to 120 (tokens live at most "
                     "PORTAL_TOKEN_MAX_DAYS, default 120)")
    try:
        token = tokens.issue(signing_key(), args.tenant, datetime.now(timezone.utc),
                             timedelta(days=args.days), invoice=args.invoice)
    except (ConfigError, ValueError) as exc:
        print(f"scripts/portal-token: {exc}", file=sys.stderr)
        return 2
    portal = os.environ.get("PORTAL_URL") or LOCAL_PORTAL.format(
        port=os.environ.get("PORTAL_PORT", "8081"))
    print(token)
    print(f"open {page_url(portal, token)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
