"""Budget evaluations (issue 31, item 9): the crossings of one evaluation each at their
own instant and in their tenant's webhook sequence, and no forecast from minutes of data."""
from __future__ import annotations

from datetime import datetime, timezone

import psycopg

from chargeback.budgets import evaluate

from .billing_helpers import NS, event, send, settings_for
from .invoices import MAIL_ENV
from .budgets_helpers import NOW
from .budgets_helpers import budget_tenant as _tenant

GiB = 2**30


def _rows(database_url, sql):
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql).fetchall()


def test_the_crossings_of_one_evaluation_each_have_their_own_instant_and_sequence(
        database_url, tmp_path, smtp):
    s = settings_for(database_url, tmp_path, SMTP_URL=smtp.url, **MAIL_ENV)
    _tenant(s, "acme", "10.00")
    # 10,000 GB-s at 0.001 USD = 10.00 USD: 50, 80 and 100 % in one evaluation
    send(s, [event("acme", "2026-09-02T10:00:00Z", 10_000 * NS)])
    assert evaluate.evaluate(s, NOW)["crossed"] == 3
    crossed = [at for (at,) in _rows(database_url, "SELECT crossed_at FROM"
                                     " openfaas_metering.budget_crossings")]
    assert len(set(crossed)) == 3
    emitted = _rows(database_url, """SELECT created_at, sequence, data->>'threshold_percent'
                                       FROM openfaas_metering.webhook_events
                                      WHERE tenant = 'acme' ORDER BY sequence""")
    assert len({at for at, _, _ in emitted}) == 3
    assert [q for _, q, _ in emitted] == [1, 2, 3]  # acme's first three events


def test_no_forecast_before_the_minimum_observed_time(database_url, tmp_path, smtp):
    s = settings_for(database_url, tmp_path, SMTP_URL=smtp.url, **MAIL_ENV)
    _tenant(s, "acme", "10.00")
    # 1,500 GB-s (100 GiB for 15 s) = 1.50 USD, 15 % of the budget: no threshold
    send(s, [event("acme", "2026-09-01T00:05:00Z", 15 * NS, memory_bytes=100 * GiB)])
    # 30 minutes into September, the run rate would project 1.50 x 1,440 = 2,160 USD
    half_past = datetime(2026, 9, 1, 0, 30, tzinfo=timezone.utc)
    assert evaluate.evaluate(s, half_past)["crossed"] == 0
    # after BUDGET_FORECAST_MIN_DAYS (3): 1.50 x 30 / 3 = 15.00 USD >= 10.00: forecast
    three_days = datetime(2026, 9, 4, tzinfo=timezone.utc)
    assert evaluate.evaluate(s, three_days)["crossed"] == 1
    assert _rows(database_url, "SELECT kind FROM openfaas_metering.budget_crossings") == [
        ("forecast",)]
