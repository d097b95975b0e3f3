"""Month close against real PostgreSQL: events through the real ingest, capacity through
the real tick store, invoices read back from the tables."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from chargeback import db, month_close
from chargeback.month_close import Options

from .billing_helpers import GiB, NS, event, send, settings_for, ticks

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


class Recorder:
    """Stands in for the gateway client where the hand-off is not what a test is about."""

    def __init__(self):
        self.calls = []

    def invoke_async(self, function, body=b"", **kwargs):
        self.calls.append((function, body))
        return "call"


def close(settings, now=NOW, **options):
    return month_close.run(settings, Options(**options), now, Recorder())


def invoices(settings):
    with db.transaction(settings) as conn:
        return {row[0]: row[1:] for row in conn.execute(
            """SELECT namespace || ' ' || period, status, number, total, currency, draft_reasons
                 FROM openfaas_metering.invoices""")}


def lines(settings, namespace, period):
    with db.transaction(settings) as conn:
        return conn.execute(
            """SELECT kind, meter, sku, spot, quantity, amount, adjustment_period
                 FROM openfaas_metering.invoice_lines JOIN openfaas_metering.invoices
                USING (invoice_id) WHERE namespace = %s AND period = %s ORDER BY line_no""",
            (namespace, period)).fetchall()


def test_smoke_close_a_month(database_url, tmp_path):
    s = settings_for(database_url, tmp_path)
    send(s, [event("acme", "2026-09-10T10:00:00Z", 2 * NS),
             event("acme", "2026-09-30T23:59:59.999999999Z", 1 * NS),
             event("acme", "2026-10-01T00:00:00Z", 5 * NS)])
    out = close(s, period="2026-09")
    assert out["periods"][0]["invoices"][0]["total"] == "0.0030", out
    print(lines(s, "acme", "2026-09"))
