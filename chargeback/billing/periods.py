"""Billing periods: calendar months in BILLING_TIMEZONE as exact UTC instants. Pure.

A period runs from local midnight on the 1st to local midnight on the 1st of
the next month (exclusive), so an event that starts at 23:59:59.999999999 on
the last day belongs to it, in any zone: Asia/Kolkata (+05:30), Australia/
Adelaide (+09:30/+10:30) or across a DST change. The rollups are keyed by
UTC day and hour; `split_window` says which part of a window whole UTC days
and hours cover (read from the rollups) and which edges must come from the
raw events.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
NS_PER_S = 1_000_000_000
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class PeriodError(ValueError):
    pass


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PeriodError(f"{name!r} is not an IANA time zone (e.g. Europe/Berlin)") from None


@dataclass(frozen=True)
class Period:
    name: str          # 2026-09
    start: datetime    # UTC instant of local midnight on the 1st
    end: datetime      # exclusive
    timezone: str

    @property
    def first_day(self) -> date:
        return date(int(self.name[:4]), int(self.name[5:]), 1)


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(timezone.utc)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def period(name: str, tz_name: str) -> Period:
    """The period named YYYY-MM in the zone; PeriodError when the name is not one."""
    match = _PERIOD.fullmatch(name) if isinstance(name, str) else None
    if not match:
        raise PeriodError(f"{name!r} is not a month (expected YYYY-MM, e.g. 2026-09)")
    if not 1900 <= int(match.group(1)) <= 9998:  # year 0 is no date; 9999-12 has no end
        raise PeriodError(f"{name!r} is out of range (expected a month from 1900-01 to 9998-12)")
    first = date(int(match.group(1)), int(match.group(2)), 1)
    tz = zone(tz_name)
    return Period(name, _local_midnight(first, tz), _local_midnight(_next_month(first), tz),
                  tz_name)


def period_of(instant: datetime, tz_name: str) -> Period:
    """The period an instant belongs to."""
    local = instant.astimezone(zone(tz_name))
    return period(f"{local.year:04d}-{local.month:02d}", tz_name)


def following(p: Period) -> Period:
    return period_of(p.end, p.timezone)


def preceding(p: Period) -> Period:
    return period_of(p.start - timedelta(microseconds=1), p.timezone)


def periods_between(first: Period, last: Period) -> list[Period]:
    """first .. last inclusive, in order."""
    out, current = [], first
    while current.start <= last.start:
        out.append(current)
        current = following(current)
    return out


def local_days(start: datetime, end: datetime, tz_name: str) -> list[tuple[date, datetime, datetime]]:
    """[start, end) cut at local midnights: (local date, from, to) in order."""
    tz = zone(tz_name)
    out, cursor = [], start
    while cursor < end:
        day = cursor.astimezone(tz).date()
        midnight = _local_midnight(day + timedelta(days=1), tz)
        out.append((day, cursor, min(midnight, end)))
        cursor = min(midnight, end)
    return out


def to_ns(instant: datetime) -> int:
    """Exact nanoseconds since the epoch (datetimes hold microseconds)."""
    delta = instant - EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000


def _floor(instant: datetime, unit: timedelta) -> datetime:
    utc = instant.astimezone(timezone.utc)
    return EPOCH + unit * ((utc - EPOCH) // unit)


def _ceil(instant: datetime, unit: timedelta) -> datetime:
    floor = _floor(instant, unit)
    return floor if floor == instant else floor + unit


@dataclass(frozen=True)
class WindowSplit:
    """[start, end) as whole UTC days [days_from, days_to) (daily rollup), whole UTC
    hours [hours_from, days_from) and [days_to, hours_to) (hourly rollup), and raw
    edges [start, hours_from) and [hours_to, end). Empty ranges have equal ends."""

    start: datetime
    end: datetime
    hours_from: datetime
    days_from: datetime
    days_to: datetime
    hours_to: datetime


def split_window(start: datetime, end: datetime) -> WindowSplit:
    hours_from, hours_to = _ceil(start, HOUR), _floor(end, HOUR)
    if hours_from >= hours_to:  # no whole hour inside: all of it from raw events
        return WindowSplit(start, end, end, end, end, end)
    days_from, days_to = _ceil(hours_from, DAY), _floor(hours_to, DAY)
    if days_from >= days_to:    # no whole day inside: whole hours and raw edges
        return WindowSplit(start, end, hours_from, hours_to, hours_to, hours_to)
    return WindowSplit(start, end, hours_from, days_from, days_to, hours_to)
