"""Postgres side of credit grants (billing.grants): grant one, what each tenant may use
at a close, what each document took, expiries, and credit.balance_low.

A grant's balance is its amount less what the documents not voided took (a void
gives its credit back) less what expired. Everything that reads a balance to spend
it runs under the close's lock (month_close.settle, adjustments), so two closes
never spend one balance twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg
from psycopg.rows import namedtuple_row

from chargeback.billing.pricing import minor_units
from chargeback.core.responses import RequestError
from chargeback.core.settings import Settings
# credit.balance_low goes to the operator's endpoints in the transaction that lowers it
from chargeback.webhooks import outbox as webhook_outbox
from chargeback.webhooks.events import CREDIT_BALANCE_LOW


@dataclass(frozen=True)
class GrantRequest:
    tenant: str
    amount: Decimal
    currency: str
    reason: str
    expires_at: datetime | None = None
    plan: str | None = None
    meter: str | None = None


# every grant with what is left of it (expired: nothing)
_BALANCES = """
SELECT g.grant_id, g.namespace, g.amount, g.currency, g.reason, g.expires_at, g.plan,
       g.meter, g.granted_at, e.amount AS expired, e.expired_at,
       g.amount - coalesce(u.used, 0) - coalesce(e.amount, 0) AS remaining
  FROM openfaas_metering.credit_grants g
  LEFT JOIN LATERAL (SELECT sum(u.amount) AS used
                       FROM openfaas_metering.credit_grant_uses u
                       JOIN openfaas_metering.invoices i USING (invoice_id)
                      WHERE u.grant_id = g.grant_id AND i.voided_by IS NULL) u ON true
  LEFT JOIN openfaas_metering.credit_grant_expiries e USING (grant_id)
 WHERE g.namespace = ANY(%(namespaces)s)
 ORDER BY g.expires_at NULLS LAST, g.granted_at, g.grant_id"""


def balances(conn: psycopg.Connection, namespaces: list[str]) -> list:
    """Every grant of `namespaces`, the earliest expiry first, with `remaining`."""
    return conn.cursor(row_factory=namedtuple_row).execute(
        _BALANCES, {"namespaces": namespaces}).fetchall()


def available(conn: psycopg.Connection, namespaces: list[str], period_start: datetime
              ) -> dict[str, list[dict]]:
    """The grants each tenant may use for a month starting at `period_start`, in the
    order they are applied, as a month's inputs carry them (billing.grants)."""
    out: dict[str, list[dict]] = {}
    for g in balances(conn, namespaces):
        if g.remaining > 0 and g.expired is None and (
                g.expires_at is None or g.expires_at > period_start):
            out.setdefault(g.namespace, []).append({
                "grant_id": str(g.grant_id), "available": str(g.remaining),
                "currency": g.currency, "plan": g.plan, "meter": g.meter})
    return out


def record_uses(conn: psycopg.Connection, uses: list[tuple[str, object, Decimal]]) -> None:
    """(grant id, document id, amount) rows: what each document took."""
    if uses:
        conn.cursor().executemany(
            """INSERT INTO openfaas_metering.credit_grant_uses (grant_id, invoice_id, amount)
               VALUES (%s, %s, %s)""", [u for u in uses if u[2]])


def taken_by(conn: psycopg.Connection, invoice_ids: list) -> dict[str, Decimal]:
    """What the documents `invoice_ids` took from each grant, summed."""
    return {str(g): amount for g, amount in conn.execute(
        """SELECT grant_id, sum(amount) FROM openfaas_metering.credit_grant_uses
            WHERE invoice_id = ANY(%s) GROUP BY grant_id""", (invoice_ids,))}


def expire(conn: psycopg.Connection, now: datetime) -> int:
    """Record what is left of every grant past its expiry (once); how many."""
    return conn.execute(
        """INSERT INTO openfaas_metering.credit_grant_expiries (grant_id, amount, expired_at)
           SELECT g.grant_id,
                  g.amount - coalesce((SELECT sum(u.amount)
                                         FROM openfaas_metering.credit_grant_uses u
                                         JOIN openfaas_metering.invoices i USING (invoice_id)
                                        WHERE u.grant_id = g.grant_id
                                          AND i.voided_by IS NULL), 0),
                  g.expires_at
             FROM openfaas_metering.credit_grants g
            WHERE g.expires_at <= %s
           ON CONFLICT (grant_id) DO NOTHING""", (now,)).rowcount


def tenant_balance(conn: psycopg.Connection, namespace: str) -> dict[str, Decimal]:
    """What the tenant's grants have left, per currency."""
    out: dict[str, Decimal] = {}
    for g in balances(conn, [namespace]):
        if g.expired is None:
            out[g.currency] = out.get(g.currency, Decimal(0)) + g.remaining
    return out


def alert_low(conn: psycopg.Connection, settings: Settings, namespaces: list[str] | None
              ) -> int:
    """credit.balance_low for each tenant and currency whose balance fell below
    CREDIT_BALANCE_LOW since it was last at or above it; how many were emitted."""
    threshold = settings.credit_balance_low
    if not threshold:
        return 0
    if namespaces is None:
        namespaces = [ns for (ns,) in conn.execute(
            "SELECT DISTINCT namespace FROM openfaas_metering.credit_grants")]
    events = []
    for ns in sorted(namespaces):
        for currency, left in tenant_balance(conn, ns).items():
            low = left < threshold
            was = conn.execute(
                """INSERT INTO openfaas_metering.credit_balance_alerts AS a
                       (namespace, currency, low) VALUES (%s, %s, %s)
                   ON CONFLICT (namespace, currency) DO UPDATE
                      SET low = excluded.low, changed_at = now() WHERE a.low <> excluded.low
                   RETURNING low""", (ns, currency, low)).fetchone()
            if was is not None and low:
                events.append((CREDIT_BALANCE_LOW, {"tenant": ns, "currency": currency,
                                                    "balance": str(left),
                                                    "threshold": str(threshold)}))
    webhook_outbox.emit_many(conn, events)
    return len(events)


def history(conn: psycopg.Connection, namespace: str) -> list[dict]:
    """The tenant's grants, newest first, with what is left and what expired."""
    return [{"amount": str(g.amount), "currency": g.currency, "reason": g.reason,
             "granted_at": g.granted_at.isoformat(),
             "expires_at": g.expires_at.isoformat() if g.expires_at else None,
             "plan": g.plan, "meter": g.meter,
             "remaining": "0" if g.expired is not None else str(g.remaining),
             "expired": None if g.expired is None else str(g.expired)}
            for g in reversed(balances(conn, [namespace]))]


def grant(conn: psycopg.Connection, request: GrantRequest) -> dict:
    """Store the grant inside the caller's transaction; its id and the tenant's balance."""
    if -request.amount.as_tuple().exponent > minor_units(request.currency):
        raise RequestError(400, f"grant.amount: {request.currency} has "
                                f"{minor_units(request.currency)} decimals, got "
                                f"{request.amount}")
    if conn.execute("SELECT 1 FROM openfaas_metering.tenants WHERE namespace = %s",
                    (request.tenant,)).fetchone() is None:
        raise RequestError(404, f"grant.tenant: no tenant {request.tenant!r}")
    grant_id = conn.execute(
        """INSERT INTO openfaas_metering.credit_grants
               (namespace, amount, currency, reason, expires_at, plan, meter)
           VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING grant_id""",
        (request.tenant, request.amount, request.currency, request.reason,
         request.expires_at, request.plan, request.meter)).fetchone()[0]
    return {"grant": {"grant_id": str(grant_id), "tenant": request.tenant,
                      "amount": str(request.amount), "currency": request.currency,
                      "reason": request.reason,
                      "expires_at": request.expires_at.isoformat()
                      if request.expires_at else None,
                      "plan": request.plan, "meter": request.meter},
            "balance": {c: str(a) for c, a in tenant_balance(conn, request.tenant).items()}}
