"""A period's bounds as the close uses them: where a month starts and ends (as stored
once closed, or in BILLING_TIMEZONE, with one transitional period after a change of
it), the price windows inside it, which periods are due, and which closed periods
got late usage since they were last checked."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg

from chargeback.billing import store as billing_store
from chargeback.billing.periods import Period, following, period, period_of, preceding
from chargeback.billing.pricebook import PriceBook
from chargeback.core import db
from chargeback.core.settings import Settings

def _utc(instant: datetime) -> datetime:
    return instant.astimezone(timezone.utc)


def windows(p: Period, books: list[PriceBook], end: datetime | None = None
            ) -> list[tuple[datetime, datetime]]:
    """The period [start, end) cut at every price change of the books."""
    stop = min(end, p.end) if end else p.end
    cuts = sorted({c for b in books for c in b.cut_points(p.start, stop)})
    edges = [p.start, *cuts, stop]
    return [(_utc(a), _utc(b)) for a, b in zip(edges, edges[1:])]


def iso_windows(ws) -> list[list[str]]:
    return [[a.isoformat(), b.isoformat()] for a, b in ws]


# A rollup row written by a transaction that began before a check but committed
# after it carries an earlier updated_at: look back this far (longer than any
# ingest transaction may run; every statement and lock wait is bounded).
LATE_USAGE_LOOKBACK = timedelta(minutes=10)


# What fixed a period's bounds and price book version: its close, or its first
# documents (drafts included) when some tenant kept it open.
_FIXED = """
SELECT period_start, period_end, billing_timezone, price_book_version, 0 AS o
  FROM openfaas_metering.closed_periods WHERE period = %(name)s
UNION ALL
(SELECT period_start, period_end, billing_timezone, price_book_version, 1
   FROM openfaas_metering.invoices
  WHERE period = %(name)s AND document_kind = 'invoice' AND price_book_version IS NOT NULL
  ORDER BY computed_at LIMIT 1)
ORDER BY o LIMIT 1"""


def _fixed(conn: psycopg.Connection, name: str) -> tuple[Period, int] | None:
    row = conn.execute(_FIXED, {"name": name}).fetchone()
    if row is None:
        return None
    return Period(name, _utc(row[0]), _utc(row[1]), row[2]), row[3]


def _name_before(name: str) -> str:
    return preceding(period(name, "UTC")).name


def _name_after(name: str) -> str:
    return following(period(name, "UTC")).name


@dataclass(frozen=True)
class Resolved:
    period: Period
    version: int | None     # None: not fixed yet (the version current now)
    transitional: bool


def resolve(conn: psycopg.Connection, name: str, tz: str) -> Resolved:
    """Period `name` as stored, or as it will be: in `tz`, starting where the month
    before it ended when that month is fixed (a changed BILLING_TIMEZONE)."""
    fixed = _fixed(conn, name)
    if fixed is not None:
        p, version = fixed
        return Resolved(p, version, p.start != period(name, p.timezone).start)
    p = period(name, tz)
    before = _fixed(conn, _name_before(name))
    if before is not None and before[0].end != p.start and before[0].end < p.end:
        return Resolved(Period(name, before[0].end, p.end, tz), None, True)
    return Resolved(p, None, False)


def year_of_issue(instant: datetime, settings: Settings) -> int:
    return period_of(instant, settings.billing_timezone).first_day.year



def _due(settings: Settings, now: datetime) -> Period:
    """The latest period whose end plus CLOSE_GRACE_HOURS has passed."""
    running = period_of(now - timedelta(hours=settings.close_grace_hours),
                        settings.billing_timezone)
    return preceding(running)


# Closed periods with rollup rows of their days written since they were last
# checked (late usage), oldest first: the daily rollup's updated_at index finds
# the few rows written lately, whatever the history's length.
_LATE = """
SELECT DISTINCT c.period
  FROM openfaas_metering.closed_periods c
  -- the stripes themselves (sql/080): the view's max(updated_at) cannot use the index
  JOIN openfaas_metering.function_usage_daily_stripes d
    ON d.updated_at > c.usage_checked_at - %(lookback)s
   AND d.day_start > c.period_start - interval '1 day' AND d.day_start < c.period_end
 WHERE d.updated_at > (SELECT min(usage_checked_at) FROM openfaas_metering.closed_periods)
                      - %(lookback)s
   -- (the month still open is written all the time: left out in the index, sql/122)
   AND d.day_start < (SELECT max(period_end) FROM openfaas_metering.closed_periods)
UNION
-- custom events (CloudEvents) of closed periods received since they were checked
SELECT c.period
  FROM openfaas_metering.closed_periods c
  JOIN openfaas_metering.custom_events e
    ON e.received_at > c.usage_checked_at - %(lookback)s
   AND e.time_ns >= extract(epoch FROM c.period_start)::bigint * 1000000000
   AND e.time_ns < extract(epoch FROM c.period_end)::bigint * 1000000000
 WHERE e.received_at > (SELECT min(usage_checked_at) FROM openfaas_metering.closed_periods)
                       - %(lookback)s
 ORDER BY 1"""


def late_periods(conn: psycopg.Connection) -> list[str]:
    return [name for (name,) in conn.execute(_LATE, {"lookback": LATE_USAGE_LOOKBACK})]


def periods_to_settle(settings: Settings, now: datetime) -> list[Resolved]:
    """Closed periods with late usage, then every period from the first activity to the
    latest due one that is not closed, in order."""
    tz = settings.billing_timezone
    last = _due(settings, now)
    with db.transaction(settings) as conn:
        late = late_periods(conn)
        first_at = billing_store.first_activity(conn)
        closed = {name for (name,) in conn.execute(
            "SELECT period FROM openfaas_metering.closed_periods")}
        out = [resolve(conn, name, tz) for name in late]
        if first_at is not None:
            name = period_of(first_at, tz).name
            while name <= last.name:
                if name not in closed:
                    out.append(resolve(conn, name, tz))
                name = _name_after(name)
    return [r for r in out if r.period.end <= now]
