"""Reconciliation drift, recorded and announced: the operator's {"reconcile": "2026-09"} on
aggregate-month, and every complete hour from meter-capacity's collection.

Each hour reconcile.reconcile lists (billed invocations short of the gateway's
counter by more than RECONCILE_TOLERANCE or RECONCILE_TOLERANCE_PERCENT) is
written to reconciliation_drift, one row per (namespace, function, hour). A row
written for the first time emits `usage.drift_detected` in the same transaction;
a re-run only updates what it saw last (billed, witnessed, last_seen_at), so
reconciling the same hours again records and announces nothing twice. A row
whose hour no longer drifts (the lost batch was sent again) stays, with the
last run that saw it.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from chargeback.core import db, jsonbody
from chargeback.core.responses import RequestError
from chargeback.core.settings import Settings
from chargeback.metrics import collect, reconcile
from chargeback.webhooks import outbox
from chargeback.webhooks.events import USAGE_DRIFT_DETECTED

OPTION = "reconcile"
JOB = "reconciliation"   # its hours done, in prometheus_hours beside the meters'
HOUR = timedelta(hours=1)

_NEW = """
INSERT INTO openfaas_metering.reconciliation_drift
       (namespace, function_name, hour_start, billed, witnessed)
VALUES (%(namespace)s, %(function)s, %(hour)s, %(billed)s, %(witnessed)s)
ON CONFLICT DO NOTHING RETURNING first_seen_at"""
_SEEN_AGAIN = """
UPDATE openfaas_metering.reconciliation_drift
   SET billed = %(billed)s, witnessed = %(witnessed)s, last_seen_at = now()
 WHERE namespace = %(namespace)s AND function_name = %(function)s AND hour_start = %(hour)s
RETURNING first_seen_at"""
_CLAIM = """
INSERT INTO openfaas_metering.prometheus_hours (meter, hour_start, series, gaps)
VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1"""


def asks(body: bytes) -> bool:
    """True when the body is the reconcile option (the caller checks the token first)."""
    try:
        doc = jsonbody.parse(body, empty={})
    except jsonbody.JsonBodyError:
        return False
    return isinstance(doc, dict) and OPTION in doc


def parse(body: bytes) -> str:
    """The month of {"reconcile": "YYYY-MM"}; RequestError(400) naming the field."""
    doc = jsonbody.parse(body)
    extra = [k for k in doc if k != OPTION]
    if extra:
        raise RequestError(400, f"{extra[0]}: not allowed with {OPTION}")
    month = doc[OPTION]
    try:
        datetime.strptime(f"{month}-01", "%Y-%m-%d")
        if len(month) != 7 or not "1900" <= month[:4] <= "9998":   # as a billing period
            raise ValueError
    except (TypeError, ValueError):
        raise RequestError(400, 'reconcile: expected a month such as "2026-09"') from None
    return month


def month_bounds(month: str, now: datetime) -> tuple[datetime, datetime]:
    """The UTC month's whole hours up to the one `now` is in (included: a lost batch shows
    before the hour is over)."""
    start = datetime.strptime(f"{month}-01", "%Y-%m-%d").replace(tzinfo=timezone.utc)
    after = (start + timedelta(days=32)).replace(day=1)
    current = now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0) + HOUR
    return start, max(start, min(after, current))


def record(settings: Settings, report: dict) -> list[dict]:
    """Write the report's drift rows; each as answered, with `new` and `first_seen_at`.
    Emits usage.drift_detected for the new ones and wakes deliver-webhooks after the
    commit."""
    rows = []
    with db.transaction(settings) as conn:
        for drift in report["drift"]:
            new = conn.execute(_NEW, drift).fetchone()
            if new:
                outbox.emit(conn, USAGE_DRIFT_DETECTED, {
                    "tenant": drift["namespace"], "function": drift["function"],
                    "hour": drift["hour"], "billed": drift["billed"],
                    "witnessed": drift["witnessed"], "missing": drift["missing"],
                    "tolerance": report["tolerance"],
                    "tolerance_percent": report["tolerance_percent"]})
            seen = new or conn.execute(_SEEN_AGAIN, drift).fetchone()
            rows.append({**drift, "new": new is not None, "first_seen_at": seen[0].isoformat()})
    if any(r["new"] for r in rows):
        outbox.wake(settings)
    return rows


def reconcile_month(settings: Settings, month: str, now: datetime) -> dict:
    """The operator's option: reconcile the month's hours so far, record, answer."""
    start, end = month_bounds(month, now)
    report = reconcile.reconcile(settings, start, end)
    report["drift"] = record(settings, report)
    return {"period": month, **report}


def reconcile_due(settings: Settings, now: datetime) -> dict:
    """The hourly part: every complete hour not reconciled yet (as collect's meters: due
    PROMETHEUS_MAX_GAP_SECONDS after its end, PROMETHEUS_BACKFILL_HOURS back), each once.
    The answer counts (no tenant, no figure); nothing without PROMETHEUS_URL."""
    if not settings.prometheus_url:
        return {}
    with db.transaction(settings) as conn:
        due = collect.due_hours(conn, JOB, now, settings)
    hours = found = 0
    for hour in due:
        report = reconcile.reconcile(settings, hour, hour + HOUR)
        found += sum(r["new"] for r in record(settings, report))
        with db.transaction(settings) as conn:
            hours += bool(conn.execute(_CLAIM, (JOB, hour, report["hours_compared"],
                                                json.dumps(report["gaps"]))).fetchone())
    return {"reconciliation": {"hours_reconciled": hours, "drift_detected": found}}
