"""Property: the typed fast path (msgspec) and the general path (json + per-event
checks) give the same verdicts, the same rows and the same rollups for any body."""
from __future__ import annotations

import json

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeback.usage import events as usage
from chargeback.usage import ingest
from chargeback.usage.events import BodyError, parse_started

NOW_NS = parse_started("2026-10-20T12:00:00Z")
OPTIONS = {"now_ns": NOW_NS, "max_future_skew_s": 300,
           "exclude_namespaces": ("openfaas-system",)}
BIG = "9" * 5000  # json's integer digit limit is 4,300
NESTED = "[" * 40 + "]" * 40

# Each variant changes one field of a valid event (or the whole item); None deletes it.
VARIANTS = {
    "valid": {},
    "trimmed fraction": {"started": "2026-10-14T15:01:20.5Z"},
    "no fraction": {"started": "2026-10-14T15:01:20Z"},
    "offset": {"started": "2026-10-14T17:01:20.349527036+02:00"},
    "lowercase t": {"started": "2026-10-14t15:01:20.349527036Z"},
    "february 30": {"started": "2026-02-30T15:01:20.349527036Z"},
    "leap second": {"started": "2026-10-14T15:01:60.349527036Z"},
    "hour 24": {"started": "2026-10-14T24:01:20.349527036Z"},
    "before 1970": {"started": "1969-12-31T23:59:59.999999999Z"},
    "future": {"started": "2026-10-20T12:05:00.000000001Z"},
    "started number": {"started": 1700000000},
    "excluded": {"namespace": "openfaas-system"},
    "other tenant": {"namespace": "globex", "function_name": "figlet"},
    "uppercase name": {"namespace": "Acme"},
    "empty name": {"function_name": ""},
    "long name": {"function_name": "f" * 64},
    "surrogate name": {"namespace": "\ud800"},
    "missing duration": {"duration": None},
    "extra field": {"labels": "x"},
    "extra nested": {"labels": json.loads(NESTED)},
    "other event": {"event": "function_invoke"},
    "float duration": {"duration": 1.0},
    "bool memory": {"memory_bytes": True},
    "negative duration": {"duration": -1},
    "zero memory": {"memory_bytes": 0},
    "duration too long": {"duration": usage.MAX_DURATION_NS + 1},
    "huge memory": {"memory_bytes": 2**64},
    "huge digits": {"duration": "BIG"},
    "not an object": "NOT_AN_OBJECT",
}
WHOLE_BODY = {None: None, "object": b'{"event": "function_usage"}', "broken": b"[{",
              "deep": b"[" * 5000 + b"]" * 5000, "not utf-8": b'[{"namespace": "\xff"}]'}


def event(variant: str, offset_ns: int, duration_ns: int) -> object:
    change = VARIANTS[variant]
    if change == "NOT_AN_OBJECT":
        return [1, 2]
    seconds, fraction = divmod(parse_started("2026-10-14T15:00:00Z") + offset_ns, 10**9)
    minute, second = divmod(seconds % 3600, 60)
    item = {"event": "function_usage", "namespace": "acme", "function_name": "env",
            "started": f"2026-10-14T15:{minute:02d}:{second:02d}.{fraction:09d}Z",
            "duration": duration_ns, "memory_bytes": 128 * 2**20}
    for key, value in change.items():
        if value is None:
            del item[key]
        else:
            item[key] = value
    return item


bodies = st.tuples(
    st.lists(st.tuples(st.sampled_from(list(VARIANTS)), st.integers(0, 3600 * 10**9 - 1),
                       st.integers(0, 10**10)), max_size=12),
    st.sampled_from(list(VARIANTS)),  # used for a batch of one variant only, often valid
    st.booleans(),
    st.sampled_from(list(WHOLE_BODY)))


def body_of(drawn) -> bytes:
    picks, only, uniform, whole = drawn
    if WHOLE_BODY[whole] is not None:
        return WHOLE_BODY[whole]
    if uniform:  # most batches are all valid (or all one variant): the typed path's case
        picks = [(only, offset, duration) for _, offset, duration in picks]
    text = json.dumps([event(*pick) for pick in picks])
    return text.replace('"BIG"', BIG).encode()


def verdict(validate):
    try:
        return validate()
    except BodyError as exc:
        return str(exc)


@settings(max_examples=300, deadline=None)
@given(drawn=bodies)
def test_typed_path_and_general_path_agree_on_every_verdict(drawn):
    body = body_of(drawn)
    general = verdict(lambda: usage.validate(usage.parse_body(body), **OPTIONS))
    assert verdict(lambda: usage.parse_and_validate(body, **OPTIONS)) == general


def test_the_gateways_shape_takes_the_typed_path():
    body = body_of(([("valid", 1, 2), ("other tenant", 3, 4), ("excluded", 5, 6)],
                    "valid", False, None))
    typed = usage._validate_typed(body, **OPTIONS)
    assert typed is not None and len(typed.events) == 2
    assert typed.excluded == {"openfaas-system": 1}
    assert usage._validate_typed(body_of(([("extra field", 1, 2)], "valid", False, None)),
                                 **OPTIONS) is None


ROWS = """SELECT namespace, function_name, started, started_ns, duration, duration_ns,
                 memory_bytes FROM openfaas_metering.function_usage ORDER BY started_ns"""
HOURLY = """SELECT namespace, function_name, hour_start, invocations, duration_ns, gb_seconds
              FROM openfaas_metering.function_usage_hourly ORDER BY 1, 2, 3"""
DAILY = """SELECT namespace, function_name, day_start, invocations, duration_ns, gb_seconds
             FROM openfaas_metering.function_usage_daily ORDER BY 1, 2, 3"""


def stored(database_url: str, batch: usage.Batch) -> tuple:
    """Rows and rollups the batch leaves (in a transaction rolled back afterwards)."""
    with psycopg.connect(database_url) as conn:
        summary = ingest._store(conn, "typed-or-general", "0" * 64, batch)
        outcome = (summary.as_json(), conn.execute(ROWS).fetchall(),
                   conn.execute(HOURLY).fetchall(), conn.execute(DAILY).fetchall())
        conn.rollback()
    return outcome


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=bodies.filter(lambda drawn: drawn[3] is None))
def test_typed_path_and_general_path_store_the_same_rows_and_rollups(database_url, drawn):
    body = body_of(drawn)
    general = verdict(lambda: usage.validate(usage.parse_body(body), **OPTIONS))
    typed = verdict(lambda: usage.parse_and_validate(body, **OPTIONS))
    if isinstance(general, str):
        assert typed == general
        return
    assert stored(database_url, typed) == stored(database_url, general)
