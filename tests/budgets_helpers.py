"""Budget tests' shared set-up: a tenant with a budget, and the fixed instant the
in-process evaluations run at."""
from __future__ import annotations

from datetime import datetime, timezone

from chargeback.core import db

# two days into September, so the run rate projects 15 times the month to date
# (30 days / 2); the forecast needs BUDGET_FORECAST_MIN_DAYS=2 then (three by default)
NOW = datetime(2026, 9, 3, tzinfo=timezone.utc)


def budget_tenant(settings, namespace, budget, *, email="billing@acme.example", locale=None):
    """A tenant `namespace` with a monthly budget, its billing address and locale."""
    with db.transaction(settings) as conn:
        conn.execute("""INSERT INTO openfaas_metering.tenants
                            (namespace, budget_override, email_override, locale_override,
                             display_name_override)
                        VALUES (%s, %s, %s, %s, 'ACME GmbH')""",
                     (namespace, budget, email, locale))
