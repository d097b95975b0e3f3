"""What the tenant-portal tests share: the shipped price book, a client of the function
behind the local gateway, tokens, a rejected delivery through the real ingest (the
`portal` fixture that starts the function is in conftest.py)."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import requests

from chargeback.core import tokens
from chargeback.usage import events as usage
from chargeback.usage import ingest

from .billing_helpers import NS
from .conftest import PORTAL_KEY, ROOT
from .invoices import finalized_invoice

SHIPPED_BOOK = (ROOT / "pricebook.yml").read_text()
OCT = {"from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}


@dataclasses.dataclass
class Portal:
    url: str  # the API through the gateway: .../function/tenant-portal.openfaas-system
    origin: str | None = None  # the page's own origin (PORTAL_URL): http://localhost:<port>
    gateway: str | None = None

    def get(self, path: str, bearer: str | None = None, headers=None, session=None, **query):
        headers = dict(headers or {})
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        return (session or requests).get(f"{self.url}{path}", params=query, headers=headers,
                                         timeout=30, allow_redirects=False)

    def sign_in(self, token: str, session: requests.Session | None = None,
                **headers) -> requests.Session:
        """A browser-like session that opened `token`'s link on the portal's origin: as the
        page's script does with a link's `#token=`, a form POST to /signin from the page
        (Chromium sends Sec-Fetch-Site: same-origin)."""
        session = session or requests.Session()
        r = session.post(f"{self.origin}/signin", data={"token": token},
                         headers={"Sec-Fetch-Site": "same-origin", **headers},
                         timeout=30, allow_redirects=False)
        assert r.status_code in (200, 303), r.text
        return session

    def page(self, path: str = "/", token: str | None = None, session=None, headers=None,
             **query) -> requests.Response:
        """The page on its own origin, signed in with `token` first when given."""
        if token:
            session = self.sign_in(token, session)
        return (session or requests).get(f"{self.origin}{path}", params=query,
                                         headers=headers or {}, timeout=30,
                                         allow_redirects=False)


def token_for(tenant: str, days: int = 1, invoice: str | None = None, key=PORTAL_KEY) -> str:
    return tokens.issue(key, tenant, datetime.now(timezone.utc), timedelta(days=days), invoice)


def reject(settings, namespace: str, reason_event: dict) -> None:
    """A delivery with one invalid event, through the real validation and ingest."""
    batch = usage.validate([reason_event], now_ns=4_000_000_000 * NS, max_future_skew_s=300,
                           exclude_namespaces=("openfaas-system",))
    assert batch.rejected
    ingest.store(settings, "delivery-bad-1", "0" * 64, batch)


def september_invoices(database_url: str) -> tuple[str, str]:
    """acme's and globex's September invoices, finalized: (acme's number, globex's)."""
    import psycopg
    acme_id = finalized_invoice(database_url, namespace="acme")
    globex_id = finalized_invoice(database_url, namespace="globex")
    with psycopg.connect(database_url) as conn:
        numbers = dict(conn.execute("SELECT invoice_id::text, number FROM "
                                    "openfaas_metering.invoices").fetchall())
    return numbers[acme_id], numbers[globex_id]


def set_cookie(response) -> str | None:
    """The Set-Cookie header of a response, if any."""
    return response.headers.get("Set-Cookie")
