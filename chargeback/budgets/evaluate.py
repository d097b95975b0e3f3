"""evaluate-budgets' work: every budgeted tenant's month to date, crossings fired once.

One evaluation is one transaction holding a transaction-scoped advisory lock
(a concurrent evaluator finds it taken and leaves the minute to this one):
1. The budgets: tenants.budget_override, else the <prefix>budget annotation.
2. The month to date of exactly those tenants, priced by
   billing.estimate.month_to_date: the month close's own code, so a crossing
   is reported on the figure the invoice will show (tax included: the total).
   The forecast (the month's run rate) only once BUDGET_FORECAST_MIN_DAYS of
   the month have been observed.
3. thresholds.decide per tenant against the crossings already fired.
4. Re-armed crossings are marked, new ones inserted (ON CONFLICT DO NOTHING
   on the one-armed-crossing index, so a crossing exists once whatever
   re-runs), and each inserted one writes its webhook event to the outbox in
   the same transaction.
   Each inserted crossing also writes its mail's row (mail.outbox).
After the commit the due mails are sent (budgets.mail, exactly once by the
mail outbox, as invoices are) and deliver-webhooks is woken.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from chargeback.billing import estimate
from chargeback.billing.periods import period_of
from chargeback.budgets import mail as budget_mail
from chargeback.budgets.thresholds import FORECAST, Fired, decide
from chargeback.core import db
from chargeback.core.settings import Settings
from chargeback.mail import sender
from chargeback.mail import smtp as mailer
from chargeback.webhooks import outbox

_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended('chargeback budgets', 0))"

_BUDGETS = """
SELECT namespace, coalesce(budget_override, budget)
  FROM openfaas_metering.tenants
 WHERE coalesce(budget_override, budget) IS NOT NULL
 ORDER BY namespace"""

_FIRED = """
SELECT namespace, kind, threshold_percent, budget
  FROM openfaas_metering.budget_crossings
 WHERE period = %s AND rearmed_at IS NULL"""

_REARM = """
UPDATE openfaas_metering.budget_crossings AS c SET rearmed_at = now()
  FROM unnest(%(namespace)s::text[], %(kind)s::text[], %(threshold)s::integer[])
       AS r(namespace, kind, threshold)
 WHERE c.period = %(period)s AND c.rearmed_at IS NULL AND c.namespace = r.namespace
   AND c.kind = r.kind AND c.threshold_percent = r.threshold"""

# arming: one more than the crossings of that key so far (re-armed ones)
_FIRE = """
INSERT INTO openfaas_metering.budget_crossings AS c
    (namespace, period, kind, threshold_percent, arming, budget, amount, month_to_date,
     currency)
SELECT f.namespace, %(period)s, f.kind, f.threshold, coalesce((
           SELECT max(arming) FROM openfaas_metering.budget_crossings AS p
            WHERE p.namespace = f.namespace AND p.period = %(period)s AND p.kind = f.kind
              AND p.threshold_percent = f.threshold), 0) + 1,
       f.budget, f.amount, f.month_to_date, f.currency
  FROM unnest(%(namespace)s::text[], %(kind)s::text[], %(threshold)s::integer[],
              %(budget)s::numeric[], %(amount)s::numeric[], %(month_to_date)s::numeric[],
              %(currency)s::text[])
       AS f(namespace, kind, threshold, budget, amount, month_to_date, currency)
ON CONFLICT DO NOTHING
RETURNING crossing_id, namespace, kind, threshold_percent, budget, amount, month_to_date,
          currency"""


def ready(settings: Settings, environ: Mapping[str, str]) -> None:
    """What evaluate-budgets cannot work without (checked at start): a database, the SMTP
    server its crossings are mailed through and a sender of its own."""
    db.configured(settings)
    mailer.parse_url(settings.smtp_url, settings.smtp_timeout_s)
    sender.refuse_example(settings)


def evaluate(settings: Settings, now: datetime | None = None) -> dict:
    """One evaluation (see the module): the crossings, then their mails; counts only,
    no tenant or amount."""
    out = fire_crossings(settings, now)
    if out.get("crossed"):
        outbox.wake(settings)
    return {**out, "mails": budget_mail.send_pending(settings)}


def fire_crossings(settings: Settings, now: datetime | None = None) -> dict:
    """Steps 1-4 of the module, in one transaction; counts."""
    with db.transaction(settings) as conn:
        if not conn.execute(_LOCK).fetchone()[0]:
            return {"status": "in progress: another evaluation holds this minute"}
        now = now or conn.execute("SELECT now()").fetchone()[0]
        p = period_of(now, settings.billing_timezone)
        budgets = dict(conn.execute(_BUDGETS).fetchall())
        fired: dict[str, list[Fired]] = {}
        for ns, kind, threshold, budget in conn.execute(_FIRED, (p.name,)):
            fired.setdefault(ns, []).append(Fired(kind, threshold, budget))
        estimates = estimate.month_to_date(conn, settings, now, sorted(budgets)) \
            if budgets else []
        fire: dict[str, list] = {k: [] for k in ("namespace", "kind", "threshold", "budget",
                                                  "amount", "month_to_date", "currency")}
        rearm: dict[str, list] = {"namespace": [], "kind": [], "threshold": []}
        not_priced = 0
        for e in estimates:
            ns, total = e.draft.namespace, e.draft.total
            if total is None:  # it would be a draft invoice: nothing to compare
                not_priced += 1
                continue
            # a run rate over minutes is noise: no forecast before the minimum observed time
            observed_days = (e.as_of - e.period.start).total_seconds() / 86400
            projected = e.projected_total \
                if observed_days >= settings.budget_forecast_min_days else None
            crossings, rearmed = decide(budgets[ns], total, projected,
                                        settings.budget_thresholds, fired.get(ns, []))
            for f in rearmed:
                for key, value in (("namespace", ns), ("kind", f.kind),
                                   ("threshold", f.threshold_percent)):
                    rearm[key].append(value)
            for c in crossings:
                for key, value in (("namespace", ns), ("kind", c.kind),
                                   ("threshold", c.threshold_percent),
                                   ("budget", budgets[ns]), ("amount", c.amount),
                                   ("month_to_date", total), ("currency", e.draft.currency)):
                    fire[key].append(value)
        if rearm["namespace"]:
            conn.execute(_REARM, {"period": p.name, **rearm})
        inserted = conn.execute(_FIRE, {"period": p.name, **fire}).fetchall() \
            if fire["namespace"] else []
        outbox.emit_many(conn, [event_of(p.name, *row) for row in inserted])
        for row in inserted:  # each crossing's mail, with the crossing
            budget_mail.enqueue(conn, row[0], row[1])
    return {"period": p.name, "budgets": len(budgets), "not_priced": not_priced,
            "crossed": len(inserted), "rearmed": len(rearm["namespace"])}


def event_of(period: str, crossing_id, namespace: str, kind: str, threshold: int, budget,
             amount, month_to_date, currency: str) -> tuple[str, dict]:
    """The webhook of one crossing: (type, data)."""
    data = {"crossing_id": str(crossing_id), "tenant": namespace, "period": period,
            "budget": budget, "month_to_date": month_to_date, "currency": currency}
    if kind == FORECAST:
        return "budget.forecast_exceeded", {**data, "projected_total": amount}
    return "budget.threshold_crossed", {**data, "threshold_percent": threshold}
