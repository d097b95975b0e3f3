"""Shaping a usage series request, and the answer's windows. Pure.

A series is OpenMeter's meter query: `from`/`to` (RFC 3339), `window` hour or
day (UTC, as the rollups are), `group_by` function, meter or sku. Both edges
must fall on a window boundary, so every window is a whole rollup row and
the answer is exact; at most MAX_WINDOWS windows per answer.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from chargeback.core.meters import UNITS
from chargeback.core.responses import RequestError

MAX_WINDOWS = 400
WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
GROUPS = ("function", "meter", "sku")
DEFAULT_REJECTED = 50
MAX_REJECTED = 500


@dataclass(frozen=True)
class SeriesQuery:
    start: datetime  # inclusive, on a window boundary
    end: datetime  # exclusive, on a window boundary
    window: str  # hour | day
    group_by: str  # function | meter | sku

    @property
    def step(self) -> timedelta:
        return WINDOWS[self.window]

    def starts(self) -> list[datetime]:
        """Every window's start, in order."""
        count = (self.end - self.start) // self.step
        return [self.start + i * self.step for i in range(count)]


def _floor(at: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return epoch + ((at - epoch) // step) * step


def _instant(query: Mapping[str, str], field: str) -> datetime | None:
    raw = query.get(field)
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace(" ", "+"))  # '+' may arrive as ' '
    except ValueError:
        raise RequestError(400, f"{field}: expected an RFC 3339 instant such as "
                                f"2026-09-01T00:00:00Z, got {raw!r}") from None
    if value.tzinfo is None:
        raise RequestError(400, f"{field}: {raw!r} has no offset; add Z or +hh:mm")
    return value.astimezone(timezone.utc)


def parse(query: Mapping[str, str], now: datetime, month_start: datetime) -> SeriesQuery:
    """The series `query` asks for; RequestError 400 naming the field otherwise.
    Defaults: window=day, group_by=function, from the running month's start, to the end
    of the window holding `now`."""
    window = query.get("window") or "day"
    if window not in WINDOWS:
        raise RequestError(400, f"window: expected hour or day, got {window!r}")
    group_by = query.get("group_by") or "function"
    if group_by not in GROUPS:
        raise RequestError(400, f"group_by: expected function, meter or sku, got {group_by!r}")
    step = WINDOWS[window]
    end = _instant(query, "to") or _floor(now, step) + step
    start = _instant(query, "from") or _floor(month_start, step)
    for field, at in (("from", start), ("to", end)):
        if _floor(at, step) != at:
            raise RequestError(400, f"{field}: {at.isoformat()} is not on a {window} boundary "
                                    f"(UTC); windows are whole {window}s")
    if end <= start:
        raise RequestError(400, "to: must be after from")
    windows = (end - start) // step
    if windows > MAX_WINDOWS:
        raise RequestError(400, f"to: {windows} {window} windows asked, at most {MAX_WINDOWS} "
                                "per answer; narrow from/to or use window=day")
    return SeriesQuery(start, end, window, group_by)


def parse_limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit") or str(DEFAULT_REJECTED)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_REJECTED:
        raise RequestError(400, f"limit: expected an integer from 1 to {MAX_REJECTED}, "
                                f"got {raw!r}")
    return int(raw)


def rows(q: SeriesQuery, found: list[tuple]) -> list[dict]:
    """The answer's data: (window_start, meter, group, spot, quantity) rows as OpenMeter's
    {window_start, window_end, meter, unit, group_by value, quantity}; windows without
    usage are left out."""
    out = []
    for start, meter, group, spot, quantity in found:
        row = {"window_start": start, "window_end": start + q.step, "meter": meter,
               "unit": UNITS.get(meter, ""), "quantity": quantity}
        if q.group_by == "function":
            row["function"] = group
        elif q.group_by == "sku":
            row["sku"] = group
            row["spot"] = spot
        out.append(row)
    return out


def dense(q: SeriesQuery, found: list[tuple], meter: str) -> dict[str, list]:
    """One meter's series per group, a value (0 when absent) for every window: for charts."""
    index = {start: i for i, start in enumerate(q.starts())}
    out: dict[str, list] = {}
    for start, m, group, spot, quantity in found:
        if m != meter:
            continue
        label = (group or "") + (" (spot)" if spot else "")
        values = out.setdefault(label, [0] * len(index))
        values[index[start]] += quantity
    return out
