"""Subscriptions as a property: whatever the listing history (gaps within a month, across
months, a BILLING_TIMEZONE changed between closes), each month's base fee and commitment
are the plan's prorated by the local days begun while the namespace was listed, and a
month without one such day bills nothing. Real PostgreSQL, the real tick store, the real
hourly close; the expected days are counted here by another method (half-hour steps)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chargeback.billing import month_close
from chargeback.core import db

from .billing_helpers import Recorder, settings_for
from .conftest import fresh_database
from .subscription_helpers import FLAT_BOOK, tick

START = datetime(2026, 8, 1, tzinfo=timezone.utc)
# close k runs on the 3rd of the month after August, September, October
CLOSES = [datetime(2026, m, 3, tzinfo=timezone.utc) for m in (9, 10, 11)]
ZONES = ("UTC", "Europe/Berlin", "Asia/Kolkata", "America/New_York")
STEP = timedelta(minutes=30)   # every zone above is offset by whole half hours

history_strategy = st.lists(st.tuples(
    st.integers(0, 91),                     # day after 1 Aug (to 31 Oct)
    st.integers(0, 23), st.sampled_from((0, 30)),   # hour, minute (UTC)
    st.booleans()),                         # the tick lists the namespace
    min_size=1, max_size=8)
zones_strategy = st.lists(st.sampled_from(ZONES), min_size=3, max_size=3)


def listed_at(history: list[tuple[datetime, bool]], instant: datetime) -> bool:
    """What the latest tick at or before `instant` said (before any tick: not listed)."""
    said = False
    for slot, listed in history:
        if slot > instant:
            break
        said = listed
    return said


def hand_proration(history, start: datetime, end: datetime, zone: str) -> tuple[int, int]:
    """(local dates with a half hour listed, local dates) of [start, end) in `zone`."""
    tz, days, listed = ZoneInfo(zone), set(), set()
    instant = start
    while instant < end:
        day = instant.astimezone(tz).date()
        days.add(day)
        if listed_at(history, instant):
            listed.add(day)
        instant += STEP
    return len(listed), len(days)


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01"), ROUND_HALF_EVEN)


@settings(max_examples=15, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=history_strategy, zones=zones_strategy)
# listed, gone and back within September
@example(history=[(31, 0, 0, True), (35, 12, 0, False), (50, 12, 0, True)],
         zones=["UTC"] * 3)
# gone in August, back in October, the zone changed to +05:30 for October
@example(history=[(0, 0, 0, True), (9, 12, 0, False), (75, 0, 0, True)],
         zones=["UTC", "UTC", "Asia/Kolkata"])
# gone and back within one local day straddling UTC midnight (Berlin)
@example(history=[(40, 22, 30, True), (41, 0, 0, False), (41, 20, 0, True),
                  (60, 23, 30, False)], zones=["Europe/Berlin"] * 3)
def test_base_fee_and_commitment_follow_every_listing_interval(
        pg_server, tmp_path, history, zones):
    url = fresh_database(pg_server)
    ticks = sorted({START + timedelta(days=d, hours=h, minutes=m): listed
                    for d, h, m, listed in history}.items())
    pending = list(ticks)
    for close_at, zone in zip(CLOSES, zones):
        while pending and pending[0][0] < close_at:
            slot, listed = pending.pop(0)
            tick(settings_for(url, tmp_path, book=FLAT_BOOK), slot,
                 ("render",) if listed else (), plan="flat")
        s = settings_for(url, tmp_path, book=FLAT_BOOK, BILLING_TIMEZONE=zone)
        month_close.run(s, month_close.Options(), close_at, Recorder())
    with db.transaction(s) as conn:
        months = conn.execute(
            """SELECT c.period, c.period_start, c.period_end, c.billing_timezone,
                      (SELECT sum(l.amount) FROM openfaas_metering.invoice_lines l
                         JOIN openfaas_metering.invoices i USING (invoice_id)
                        WHERE i.period = c.period AND i.namespace = 'render'
                          AND i.status <> 'draft' AND l.kind IN ('base_fee', 'commitment'))
                 FROM openfaas_metering.closed_periods c ORDER BY 1""").fetchall()
        drafts = conn.execute("SELECT count(*) FROM openfaas_metering.invoices "
                              "WHERE status = 'draft'").fetchone()[0]
    assert drafts == 0
    for name, start, end, zone, fixed in months:
        days, of = hand_proration(ticks, start, end, zone)
        if days == 0:
            assert fixed is None, (name, fixed)    # a month without a listed day: nothing
            continue
        expected = cents(Decimal(10) * days / of) + cents(Decimal(50) * days / of)
        assert fixed == expected, (name, zone, days, of, fixed)
