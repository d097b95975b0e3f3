"""A tenant's month as the close prices it: who is billed for a period (usage,
capacity or a subscription in it, no finalized invoice yet), their details, the
subscribed days, and the inputs a draft is built from (billing.invoicing)."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import psycopg
from psycopg.rows import class_row
from psycopg.types.range import Range

from chargeback.billing import grant_store, grants, invoicing
from chargeback.billing import store as billing_store
from chargeback.billing.invoicing import Draft, quantities_rows
from chargeback.billing.period_bounds import iso_windows, windows
from chargeback.billing.periods import Period, local_days
from chargeback.billing.pricebook import PriceBook


class TenantDetails(NamedTuple):
    """A tenant's billing details as they are now (overrides win over annotations)."""
    namespace: str
    plan: str | None
    currency: str | None
    tax_rate_override: Decimal | None
    name: str
    email: str | None
    locale: str
    # its subscription intervals [started_at, ended_at) in order (an open one has no
    # upper bound); empty for a tenant meter-capacity never listed (sql/160)
    subscriptions: list[Range]


_TENANTS = """
SELECT t.namespace, coalesce(plan_override, plan) AS plan,
       coalesce(currency_override, currency) AS currency, tax_rate_override,
       coalesce(display_name_override, display_name, t.namespace) AS name,
       coalesce(email_override, email) AS email,
       coalesce(locale_override, locale, 'en') AS locale,
       coalesce((SELECT array_agg(tstzrange(started_at, ended_at) ORDER BY started_at)
                   FROM openfaas_metering.tenant_subscription_periods s
                  WHERE s.namespace = t.namespace), '{}') AS subscriptions
  FROM openfaas_metering.tenants t WHERE t.namespace = ANY(%s)"""

_ENSURE_TENANTS = """
INSERT INTO openfaas_metering.tenants (namespace)
SELECT unnest(%s::text[]) ORDER BY 1 ON CONFLICT (namespace) DO NOTHING"""

_SUBSCRIBED = """
SELECT DISTINCT namespace FROM openfaas_metering.tenant_subscription_periods
 WHERE started_at < %(end)s AND (ended_at IS NULL OR ended_at > %(start)s)
   AND (%(all)s OR namespace = ANY(%(namespaces)s))"""


def ensure_tenants(conn: psycopg.Connection, namespaces: list[str]
                   ) -> dict[str, TenantDetails]:
    """The details of `namespaces`, each made a tenant first if it is not one yet: every
    namespace with usage is billed, whether or not meter-capacity has seen it."""
    conn.execute(_ENSURE_TENANTS, (namespaces,))
    with conn.cursor(row_factory=class_row(TenantDetails)) as cur:
        return {row.namespace: row for row in cur.execute(_TENANTS, (namespaces,))}


def subscription(p: Period, intervals: list[Range]) -> dict | None:
    """{"days": local days of `p` begun inside one of the subscription `intervals` (a day
    two intervals touch counts once), "of": the period's local days}; None for a tenant
    never seen by meter-capacity (no interval at all)."""
    if not intervals:
        return None
    days = local_days(p.start, p.end, p.timezone)
    subscribed = sum(1 for _, a, b in days if any(
        r.lower < b and (r.upper is None or a < r.upper) for r in intervals))
    return {"days": subscribed, "of": len(days)}


def tenant_inputs(ns: str, p: Period, version: int, details: TenantDetails, ws,
                  quantities: dict, settings_rounding: str) -> dict:
    tax_override = details.tax_rate_override
    return {"namespace": ns, "period": p.name, "timezone": p.timezone,
            "price_book_version": version, "plan": details.plan,
            "tenant_currency": details.currency,
            "tax_rate_override": None if tax_override is None else str(tax_override),
            "tax_rounding": settings_rounding,
            "subscription": subscription(p, details.subscriptions),
            "windows": iso_windows(ws), "quantities": quantities_rows(quantities)}


def priced(ns: str, p: Period, book: PriceBook, details: TenantDetails, ws,
           quantities: dict, tax_rounding: str, grants_available: list[dict]
           ) -> tuple[dict, Draft]:
    """The month's inputs and draft; the inputs keep what each grant gave (not what it
    had), so a correction re-applies the grants as they stood for the month."""
    inputs = tenant_inputs(ns, p, book.version, details, ws, quantities, tax_rounding)
    if grants_available:
        inputs["grants"] = grants_available
    draft = invoicing.build(inputs, {book.version: book})
    if grants_available:
        given = grants.as_given(grants_available, draft.credits)
        if given:
            inputs["grants"] = given
        else:
            del inputs["grants"]
    return inputs, draft


def compute(conn: psycopg.Connection, p: Period, book: PriceBook,
            namespaces: list[str] | None, until: datetime | None = None,
            tax_rounding: str = "half_up") -> list[tuple[dict, Draft, TenantDetails]]:
    """(inputs, draft, tenant details) for every tenant of the period without a
    finalized invoice for it: usage or capacity in [p.start, until or p.end), or
    subscribed during p. A subscribed tenant with nothing to bill is left out."""
    finalized = {ns for (ns,) in conn.execute(
        """SELECT namespace FROM openfaas_metering.invoices
            WHERE period = %s AND document_kind = 'invoice' AND status <> 'draft'""",
        (p.name,))}
    ws = windows(p, [book], until)
    current = billing_store.quantities(conn, ws, namespaces, book.meters)
    subscribed = {ns for (ns,) in conn.execute(_SUBSCRIBED, {
        "start": p.start, "end": p.end, "all": namespaces is None,
        "namespaces": namespaces or []})}
    billable = sorted((set(current) | subscribed) - finalized)
    details = ensure_tenants(conn, billable) if billable else {}
    credit = grant_store.available(conn, billable, p.start) if billable else {}
    out = []
    for ns in billable:
        inputs, draft = priced(ns, p, book, details[ns], ws, current.get(ns, {}),
                               tax_rounding, credit.get(ns, []))
        if not draft.lines and not draft.reasons:
            continue   # subscribed, nothing to bill this month
        out.append((inputs, draft, details[ns]))
    return out
