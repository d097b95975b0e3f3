"""function_usage events: parse a webhook body, validate each event, GB-seconds. Pure.

A body is a JSON array of events `{event, namespace, function_name, started,
duration, memory_bytes}`; unknown extra fields are tolerated. `started` is RFC
3339 with up to nine fractional digits or an offset and is kept exactly, as
integer nanoseconds since the Unix epoch. One bad event never spoils the
batch: it is rejected with its index and a reason, the rest go on.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Literal, NamedTuple

import msgspec

from chargeback.core.meters import DNS_LABEL
from chargeback.core import jsonbody

EVENT_TYPE = "function_usage"
NS_PER_S = 1_000_000_000
NS_PER_HOUR = 3_600 * NS_PER_S
NS_PER_DAY = 86_400 * NS_PER_S
_GB_SECONDS_PER_BYTE_NS_E39 = 931322574615478515625  # core.meters.GB_SECONDS_PER_BYTE_NS x 10^39
MAX_NAME_CHARS = 63  # a Kubernetes DNS-1123 label: namespaces and OpenFaaS function names
MAX_DURATION_NS = 10**18  # ~31.7 years: anything longer is a sender bug, not usage
MAX_MEMORY_BYTES = 2**63 - 1
# A rejected event is kept as JSON; one nested deeper than this is not an
# event at all, and the whole delivery goes to quarantine instead.
MAX_JSON_DEPTH = 32

_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,  # \d must not match other scripts' digits
)
# One or more `started` as the gateway writes them, one per line.
_GATEWAY_STARTS = re.compile(r"(?:\d{4}-\d{2}-\d{2}T\d{2}:[0-5]\d:[0-5]\d\.\d{9}Z\n)*"
                             r"\d{4}-\d{2}-\d{2}T\d{2}:[0-5]\d:[0-5]\d\.\d{9}Z", re.ASCII)
_HOUR = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}", re.ASCII)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# The sample monthly query of the OpenFaaS docs ("Billing metrics"), verbatim:
# openfaas_metering.function_usage must keep answering it unmodified.
OPENFAAS_DOCS_MONTHLY_QUERY = """
select
    u.namespace,
    u.function_name,
    count(u) as total_invocations,
    sum(u.duration) as total_duration,
    sum(extract(epoch from u.duration) * u.memory_bytes / power(1024,3)) as total_gb_seconds
from openfaas_metering.function_usage u
where u.started > now() - interval '30 days'
group by namespace,function_name;
"""
_FIELDS = ("event", "namespace", "function_name", "started", "duration", "memory_bytes")


class BodyError(ValueError):
    """The body as a whole is unusable (not JSON, not an array); nothing is counted."""


class UsageEvent(NamedTuple):
    """One valid invocation; the whole tuple is its identity."""

    namespace: str
    function_name: str
    started_ns: int  # nanoseconds since 1970-01-01T00:00:00Z
    duration_ns: int
    memory_bytes: int


@dataclass(frozen=True)
class Rejection:
    index: int
    reason: str
    event: Any  # as sent
    namespace_key: str = "namespace"  # the key naming the tenant: "subject" in a CloudEvent

    @property
    def namespace(self) -> str | None:
        ns = self.event.get(self.namespace_key) if isinstance(self.event, dict) else None
        return ns if isinstance(ns, str) else None


@dataclass
class Batch:
    """A validated body: billable events, excluded counts, rejections (by index)."""

    events: list[UsageEvent] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)  # namespace -> events
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def excluded_total(self) -> int:
        return sum(self.excluded.values())


def parse_body(body: bytes) -> list:
    """The body's JSON array, or BodyError with a reason a sender can act on."""
    try:
        items = jsonbody.parse(body)
    except jsonbody.JsonBodyError as exc:
        raise BodyError(str(exc)) from None
    if not isinstance(items, list):
        raise BodyError(
            f"body must be a JSON array of events, got a JSON {jsonbody.kind(items)}")
    return items


class _TypedEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """An event exactly as the gateway writes it: the fast path's only shape."""

    event: Literal["function_usage"]
    namespace: str
    function_name: str
    started: str
    duration: Annotated[int, msgspec.Meta(ge=0, le=MAX_DURATION_NS)]
    memory_bytes: Annotated[int, msgspec.Meta(gt=0, le=MAX_MEMORY_BYTES)]


_TYPED_BATCH = msgspec.json.Decoder(list[_TypedEvent])


def parse_and_validate(body: bytes, *, now_ns: int, max_future_skew_s: int,
                       exclude_namespaces: tuple[str, ...] | frozenset[str]) -> Batch:
    """`validate(parse_body(body), ...)`, with the same result and the same BodyError.

    A body whose every event is valid and has exactly the six fields is decoded
    and type-checked in C (msgspec: a third of json.loads' time, and no
    per-event Python checks but the timestamps'). Anything else,
    one bad event or one extra field, takes the general path for the whole
    batch, which gives per-event verdicts. The typed path holds only strings
    and bounded integers, so it never accepts what the general path refuses
    (nesting, integers of thousands of digits, invalid UTF-8).
    """
    options = {"now_ns": now_ns, "max_future_skew_s": max_future_skew_s,
               "exclude_namespaces": exclude_namespaces}
    batch = _validate_typed(body, **options)
    return batch if batch is not None else validate(parse_body(body), **options)


def _validate_typed(body: bytes, *, now_ns: int, max_future_skew_s: int,
                    exclude_namespaces: tuple[str, ...] | frozenset[str]) -> Batch | None:
    """The batch if every event is valid as typed; None to take the general path."""
    try:
        items = _TYPED_BATCH.decode(body)
    except (msgspec.MsgspecError, UnicodeDecodeError):  # invalid UTF-8 in a string
        return None
    if not items:
        return Batch()
    namespaces = {e.namespace for e in items}
    if not all(DNS_LABEL.fullmatch(name)
               for name in namespaces | {e.function_name for e in items}):
        return None
    # `started` in the gateway's own shape, checked for the whole batch in one
    # match; each distinct hour is converted once, and minutes, seconds and
    # nanoseconds are read as one number, mmssnnnnnnnnn.
    starts = [e.started for e in items]
    if not _GATEWAY_STARTS.fullmatch("\n".join(starts)):
        return None
    hour_ns = {}
    for hour in {t[:13] for t in starts}:
        hour_s = _hour_prefix_s(hour)
        if hour_s is None:
            return None
        hour_ns[hour] = hour_s * NS_PER_S
    started_ns = [hour_ns[t[:13]] + (mmss_ns := int(t[14:16] + t[17:19] + t[20:29]))
                  - mmss_ns // 10**11 * (40 * NS_PER_S)  # mm x 10^11 meant mm x 60 x 10^9
                  for t in starts]
    if min(started_ns) < 0 or max(started_ns) > now_ns + max_future_skew_s * NS_PER_S:
        return None
    batch, new_event = Batch(), tuple.__new__
    excluded = namespaces.intersection(exclude_namespaces)
    if excluded:
        kept = [(e, ns) for e, ns in zip(items, started_ns) if e.namespace not in excluded]
        batch.excluded = dict(Counter(e.namespace for e in items if e.namespace in excluded))
    else:
        kept = zip(items, started_ns)
    batch.events = [new_event(UsageEvent, (e.namespace, e.function_name, ns, e.duration,
                                           e.memory_bytes)) for e, ns in kept]
    return batch


def parse_started(text: Any) -> int:
    """RFC 3339 (up to 9 fractional digits, Z or +hh:mm) -> exact ns since the epoch, or
    ValueError with the reason."""
    # Fast path for the shape the gateway sends, 2023-11-14T15:01:20.349527036Z:
    # the same arithmetic as below; anything else takes the general path.
    if type(text) is str and len(text) == 30 and text[29] == "Z" and text[19] == ".":
        minute, second_ns = text[14:16], text[17:19] + text[20:29]  # "MM", "SS" + 9 digits
        if (text[13] == ":" and text[16] == ":" and minute < "60" and second_ns < "60"
                and minute.isdigit() and second_ns.isdigit() and (minute + second_ns).isascii()):
            hour_s = _hour_prefix_s(text[:13])
            if hour_s is not None:
                return (hour_s + int(minute) * 60) * NS_PER_S + int(second_ns)
    if not isinstance(text, str):
        raise ValueError(f"started must be an RFC 3339 string, got {jsonbody.kind(text)}")
    match = _RFC3339.fullmatch(text)
    if not match:
        raise ValueError(f"started {short(text)} is not RFC 3339 "
                         "(e.g. 2023-11-14T15:01:20.349527036Z, at most 9 fractional digits)")
    minute, second, frac, _z, sign, oh, om = match.groups()
    minute_s = _epoch_minute_s(minute)
    if minute_s is None or int(second) > 59:
        raise ValueError(f"started {short(text)} is not a valid date and time of day"
                         + (" (leap seconds are not supported)" if second == "60" else ""))
    offset_s = 0
    if sign:
        if int(oh) > 23 or int(om) > 59:
            raise ValueError(f"started {short(text)} has an invalid UTC offset")
        offset_s = (int(oh) * 3600 + int(om) * 60) * (-1 if sign == "-" else 1)
    seconds = minute_s + int(second) - offset_s
    return seconds * NS_PER_S + (int(frac.ljust(9, "0")) if frac else 0)


@lru_cache(maxsize=4096)
def _hour_prefix_s(prefix: str) -> int | None:
    """Seconds from the epoch to a YYYY-MM-DDTHH not yet checked for its shape, None if
    it is not one. Cached: a batch spans few distinct hours."""
    return _epoch_minute_s(prefix + ":00") if _HOUR.fullmatch(prefix) else None


@lru_cache(maxsize=8192)
def _epoch_minute_s(minute: str) -> int | None:
    """Seconds from the epoch to a YYYY-MM-DDTHH:MM (local to its offset), None if
    there is no such date or time. Cached: a batch spans few distinct minutes."""
    try:
        day = date(int(minute[:4]), int(minute[5:7]), int(minute[8:10]))
    except ValueError:
        return None
    hour, minute_of_hour = int(minute[11:13]), int(minute[14:16])
    if hour > 23 or minute_of_hour > 59:
        return None
    return (day.toordinal() - _EPOCH_ORDINAL) * 86400 + hour * 3600 + minute_of_hour * 60


def validate(items: list, *, now_ns: int, max_future_skew_s: int,
             exclude_namespaces: tuple[str, ...] | frozenset[str]) -> Batch:
    """Sort each item into billable, excluded (by namespace) or rejected (index, reason)."""
    batch = Batch()
    excluded = frozenset(exclude_namespaces)
    latest_ns = now_ns + max_future_skew_s * NS_PER_S
    valid_names: set[str] = set()  # names repeat a lot within a batch: check each once
    append, new_event = batch.events.append, tuple.__new__
    for index, item in enumerate(items):
        try:
            if type(item) is not dict:
                raise ValueError(f"event must be a JSON object, got {jsonbody.kind(item)}")
            try:
                kind, namespace, function_name = (item["event"], item["namespace"],
                                                  item["function_name"])
                started, duration_ns, memory_bytes = (item["started"], item["duration"],
                                                      item["memory_bytes"])
            except KeyError:
                missing = [f for f in _FIELDS if f not in item]
                raise ValueError(f"missing field{'s' if len(missing) > 1 else ''} "
                                 + ", ".join(missing)) from None
            if kind != EVENT_TYPE:
                raise ValueError(f"event is {short(kind)}, expected {EVENT_TYPE!r}")
            if type(namespace) is not str or namespace not in valid_names:
                _check_name("namespace", namespace)
                valid_names.add(namespace)
            if type(function_name) is not str or function_name not in valid_names:
                _check_name("function_name", function_name)
                valid_names.add(function_name)
            started_ns = parse_started(started)
            if started_ns < 0:
                raise ValueError(f"started {short(started)} is before 1970")
            if started_ns > latest_ns:
                raise ValueError(f"started {short(started)} is more than "
                                 f"{max_future_skew_s}s in the future")
            if type(duration_ns) is not int or not 0 <= duration_ns <= MAX_DURATION_NS:
                raise ValueError("duration must be a non-negative integer number of "
                                 f"nanoseconds (at most {MAX_DURATION_NS}), got "
                                 f"{short(duration_ns)}")
            if type(memory_bytes) is not int or not 0 < memory_bytes <= MAX_MEMORY_BYTES:
                raise ValueError("memory_bytes must be a positive integer number of bytes, "
                                 f"got {short(memory_bytes)}")
        except ValueError as exc:
            if deeper_than(item, MAX_JSON_DEPTH):
                raise BodyError(f"event {index} is nested more than {MAX_JSON_DEPTH} levels "
                                "deep") from None
            batch.rejected.append(Rejection(index, str(exc), item))
            continue
        if namespace in excluded:
            batch.excluded[namespace] = batch.excluded.get(namespace, 0) + 1
            continue
        # tuple.__new__ builds the same UsageEvent without NamedTuple's Python-level
        # __new__: about 0.2 us less per event
        append(new_event(UsageEvent, (namespace, function_name, started_ns, duration_ns,
                                      memory_bytes)))
    return batch


class Rollup(NamedTuple):
    """One hour's (or day's) usage of one function: what the rollup tables add up."""

    namespace: str
    function_name: str
    period_index: int  # hours (or days) since the epoch
    invocations: int
    duration_ns: int
    byte_ns: int  # sum of duration_ns x memory_bytes: exact GB-seconds x 1e9 x 2^30


def hourly_rollups(events: list[UsageEvent]) -> list[Rollup]:
    """The events summed per namespace, function and UTC hour, exactly, in key order."""
    sums: dict[tuple[str, str, int], list[int]] = {}
    for namespace, function_name, started_ns, duration_ns, memory_bytes in events:
        key = (namespace, function_name, started_ns // NS_PER_HOUR)
        total = sums.get(key)
        if total is None:
            sums[key] = [1, duration_ns, duration_ns * memory_bytes]
        else:
            total[0] += 1
            total[1] += duration_ns
            total[2] += duration_ns * memory_bytes
    return [Rollup(*key, *total) for key, total in sorted(sums.items())]


def daily_rollups(hourly: list[Rollup]) -> list[Rollup]:
    """Hourly rollups summed per UTC day (an hour lies within one day), in key order."""
    sums: dict[tuple[str, str, int], list[int]] = {}
    for namespace, function_name, hour, invocations, duration_ns, byte_ns in hourly:
        total = sums.setdefault((namespace, function_name, hour // 24), [0, 0, 0])
        total[0] += invocations
        total[1] += duration_ns
        total[2] += byte_ns
    return [Rollup(*key, *total) for key, total in sorted(sums.items())]


def gb_seconds(duration_ns: int, memory_bytes: int) -> Decimal:
    """Exact GB-seconds (GiB x s) of one invocation: duration_ns x memory_bytes / 1e9 / 2^30."""
    return total_gb_seconds([(duration_ns, memory_bytes)])


def total_gb_seconds(usages) -> Decimal:
    """Exact GB-seconds of (duration_ns, memory_bytes) pairs.

    Summed as integers and built from a string: Decimal arithmetic would round
    to the context's 28 digits, and an exact value needs up to 39 decimals.
    """
    byte_ns = sum(duration_ns * memory_bytes for duration_ns, memory_bytes in usages)
    return Decimal(f"{byte_ns * _GB_SECONDS_PER_BYTE_NS_E39}E-39")


def month_of(started_ns: int) -> date:
    """First day of the UTC month of `started` (truncating to the µs Postgres stores
    never changes the month)."""
    return months_of([started_ns])[0]


def months_of(started_ns: list[int] | Any) -> list[date]:
    """The distinct UTC months (first days) that events starting at `started_ns` fall in,
    in order."""
    days = {ns // NS_PER_DAY for ns in started_ns}
    return sorted({date.fromordinal(_EPOCH_ORDINAL + day).replace(day=1) for day in days})


def _check_name(field_name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field_name} must be a non-empty string, got {short(value)}")
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(f"{field_name} is {len(value)} characters; a Kubernetes name has "
                         f"at most {MAX_NAME_CHARS}")
    if not DNS_LABEL.fullmatch(value):
        raise ValueError(f"{field_name} {short(value)} is not a Kubernetes name "
                         "(lowercase a-z, 0-9 and '-', starting and ending alphanumeric)")


def deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than `limit` levels below `value` (iterative, a level
    at a time: a 1,000-event body is walked in a few list comprehensions)."""
    level = [value] if isinstance(value, (dict, list)) else []
    for _ in range(limit):
        if not level:
            return False
        level = [child for item in level
                 for child in (item.values() if isinstance(item, dict) else item)
                 if isinstance(child, (dict, list))]
    return bool(level)


def short(value: Any, limit: int = 60) -> str:
    if isinstance(value, (dict, list)) and deeper_than(value, MAX_JSON_DEPTH):
        return f"a JSON {jsonbody.kind(value)} nested more than {MAX_JSON_DEPTH} levels deep"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."
