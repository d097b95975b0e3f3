"""Pure logic of receive-usage: timestamps, per-event validation, GB-seconds, signatures."""
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from chargeback.usage import events as usage
from chargeback.usage import webhook
from chargeback.usage.events import UsageEvent, parse_started, validate

NOW_NS = parse_started("2026-10-20T12:00:00Z")


def ev(**fields):
    event = {"event": "function_usage", "namespace": "acme", "function_name": "env",
             "started": "2026-10-14T15:01:20.349527036Z", "duration": 3798742,
             "memory_bytes": 20971520}
    event.update(fields)
    return event


def check(items, exclude=("openfaas-system",)):
    return validate(items, now_ns=NOW_NS, max_future_skew_s=300, exclude_namespaces=exclude)


def reason_of(**fields) -> str:
    batch = check([ev(**fields)])
    assert not batch.events and len(batch.rejected) == 1
    return batch.rejected[0].reason


@pytest.mark.parametrize("text, fraction_ns", [
    ("2023-11-14T15:01:20.349527036Z", 349527036),  # 9 digits, as the event-worker sends
    ("2023-11-14T15:01:20.349527Z", 349527000),
    ("2023-11-14T15:01:20.349Z", 349000000),
    ("2023-11-14T15:01:20Z", 0),
    ("2023-11-14T15:01:20.3z", 300000000),
])
def test_started_keeps_every_fractional_digit(text, fraction_ns):
    whole = int(datetime(2023, 11, 14, 15, 1, 20, tzinfo=timezone.utc).timestamp())
    assert parse_started(text) == whole * 10**9 + fraction_ns


def test_offsets_name_the_same_instant_as_utc():
    utc = parse_started("2023-11-14T15:01:20.349527036Z")
    assert parse_started("2023-11-14T17:01:20.349527036+02:00") == utc
    assert parse_started("2023-11-14T09:31:20.349527036-05:30") == utc
    assert parse_started("2023-11-14T15:01:20.349527036-00:00") == utc
    # across midnight and a leap day
    assert parse_started("2024-03-01T01:00:00+02:00") == parse_started("2024-02-29T23:00:00Z")


@pytest.mark.parametrize("text", [
    "2023-11-14 15:01:20Z",             # no T
    "2023-11-14T15:01:20",              # no offset
    "2023-11-14T15:01:20.1234567891Z",  # ten digits
    "2023-11-14T15:01:20.Z",
    "2023-02-29T00:00:00Z",             # not a date
    "2023-11-14T24:00:00Z",
    "2023-11-14T23:59:60Z",             # leap second
    "2023-11-14T15:01:20+24:00",
    "2023-11-14T15:01:20+0200",
    "٢٠٢٣-11-14T15:01:20Z",             # non-ASCII digits
    "",
])
def test_unparseable_started_is_rejected_with_the_reason(text):
    assert reason_of(started=text).startswith("started ")


def test_started_must_be_a_string():
    assert reason_of(started=1700000000) == "started must be an RFC 3339 string, got number"


def test_started_in_the_future_beyond_the_skew_is_rejected():
    assert check([ev(started="2026-10-20T12:05:00Z")]).events  # exactly the skew: fine
    assert "more than 300s in the future" in reason_of(started="2026-10-20T12:05:00.000000001Z")


def test_started_before_1970_is_rejected():
    assert "before 1970" in reason_of(started="1969-12-31T23:59:59Z")


@pytest.mark.parametrize("fields, expected", [
    ({"duration": -1}, "duration must be a non-negative integer number of nanoseconds"),
    ({"duration": 1.5}, "duration must be a non-negative integer number of nanoseconds"),
    ({"duration": 1.0}, "duration must be a non-negative integer number of nanoseconds"),
    ({"duration": "100"}, "duration must be a non-negative integer number of nanoseconds"),
    ({"duration": True}, "duration must be a non-negative integer number of nanoseconds"),
    ({"memory_bytes": 0}, "memory_bytes must be a positive integer number of bytes"),
    ({"memory_bytes": -5}, "memory_bytes must be a positive integer number of bytes"),
    ({"memory_bytes": 2**63}, "memory_bytes must be a positive integer number of bytes"),
    ({"namespace": ""}, "namespace must be a non-empty string"),
    ({"namespace": None}, "namespace must be a non-empty string"),
    ({"function_name": ["env"]}, "function_name must be a non-empty string"),
    ({"function_name": "Env"}, "is not a Kubernetes name"),
    ({"function_name": "env-"}, "is not a Kubernetes name"),
    ({"namespace": "a_b"}, "is not a Kubernetes name"),
    ({"event": "api_access"}, "event is \"api_access\", expected 'function_usage'"),
])
def test_each_invalid_field_is_named_in_the_reason(fields, expected):
    assert expected in reason_of(**fields)


def test_missing_fields_are_listed():
    event = ev()
    del event["duration"], event["started"]
    assert check([event]).rejected[0].reason == "missing fields started, duration"


def test_an_event_that_is_not_an_object_is_rejected():
    assert check([[1, 2]]).rejected[0].reason == "event must be a JSON object, got array"


def test_unicode_and_maximum_length_names():
    longest = "a" + "b" * 61 + "c"
    assert check([ev(namespace=longest, function_name=longest)]).events
    assert "64 characters" in reason_of(namespace=longest + "d")
    assert "is not a Kubernetes name" in reason_of(function_name="café")
    assert "is not a Kubernetes name" in reason_of(namespace="租户")
    assert "is not a Kubernetes name" in reason_of(namespace="acme\u0000")


def test_one_bad_event_does_not_spoil_the_batch_and_extra_fields_are_tolerated():
    batch = check([ev(), ev(duration=-1), ev(namespace="openfaas-system"),
                   ev(function_name="figlet", region="eu-west-1")])
    assert [e.function_name for e in batch.events] == ["env", "figlet"]
    assert [r.index for r in batch.rejected] == [1]
    assert batch.excluded == {"openfaas-system": 1}
    assert batch.events[0] == UsageEvent("acme", "env", parse_started(ev()["started"]),
                                         3798742, 20971520)


def test_an_excluded_namespace_is_still_validated():
    batch = check([ev(namespace="openfaas-system", duration=-1)])
    assert batch.excluded == {} and len(batch.rejected) == 1


@pytest.mark.parametrize("body, reason", [
    (b"[{", "body is not JSON"),
    (b"", "body is not JSON"),
    (b'{"event": "function_usage"}', "body must be a JSON array of events, got a JSON object"),
    (b"\xff\xfe[]", "body is not"),
])
def test_a_body_that_is_not_a_json_array_is_refused(body, reason):
    with pytest.raises(usage.BodyError, match=reason):
        usage.parse_body(body)


def test_gb_seconds_are_exact():
    assert usage.gb_seconds(10**9, 2**30) == 1
    assert usage.gb_seconds(3798742, 20971520) == Decimal("0.0000741941796875")
    assert usage.gb_seconds(1, 1) * 10**9 * 2**30 == 1
    one_byte_ns = Decimal("0.000000000000000000931322574615478515625")
    assert usage.gb_seconds(3, 1) == 3 * one_byte_ns  # 39 decimals, not rounded to 28
    assert usage.total_gb_seconds([(3, 1), (10**9, 2**30), (1, 1)]) == Decimal(
        "1.000000000000000003725290298461914062500")


def test_month_of_is_the_month_of_the_exact_start_which_truncation_keeps():
    assert usage.month_of(parse_started("2026-10-31T23:59:59.999999499Z")) == date(2026, 10, 1)
    assert usage.month_of(parse_started("2026-10-31T23:59:59.999999999Z")) == date(2026, 10, 1)
    assert usage.month_of(parse_started("2026-11-01T00:00:00Z")) == date(2026, 11, 1)


# The webhook envelope -------------------------------------------------------

BODY = b'[{"event":"function_usage"}]'
KEYS = webhook.signing_keys("s3cret\n")


def test_a_signature_with_the_secret_as_stored_or_trimmed_is_valid():
    assert KEYS == [b"s3cret\n", b"s3cret"]
    webhook.verify_signature(BODY, webhook.sign(BODY, "s3cret"), KEYS)
    webhook.verify_signature(BODY, webhook.sign(BODY, "s3cret\n"), KEYS)
    webhook.verify_signature(BODY, webhook.sign(BODY, "s3cret").upper().replace("SHA256", "sha256"),
                             KEYS)


@pytest.mark.parametrize("signature, reason", [
    (None, "missing X-Openfaas-Signature-256"),
    ("", "missing X-Openfaas-Signature-256"),
    (webhook.sign(BODY, "other"), "does not match the body"),
    (webhook.sign(BODY + b" ", "s3cret"), "does not match the body"),
    ("sha1=" + "0" * 40, "uses 'sha1'"),
    ("sha256=abc", "malformed"),
    (webhook.sign(BODY, "s3cret")[7:], "malformed"),
])
def test_bad_signatures_are_refused_with_the_reason(signature, reason):
    with pytest.raises(webhook.SignatureError, match=reason):
        webhook.verify_signature(BODY, signature, KEYS)


def test_a_signature_right_but_for_one_digit_is_refused_wherever_that_digit_is():
    # the whole digest is compared: a forger who got the first 63 hex digits right (or
    # any 63) still has no valid signature
    good = webhook.sign(BODY, "s3cret")
    for position in (7, 7 + 32, len(good) - 1):  # first digit, middle, last
        flipped = "0" if good[position] != "0" else "1"
        forged = good[:position] + flipped + good[position + 1:]
        with pytest.raises(webhook.SignatureError, match="does not match the body"):
            webhook.verify_signature(BODY, forged, KEYS)


def test_headers_match_case_insensitively():
    assert webhook.header({"x-openfaas-delivery": "d1"}, "X-OpenFaas-Delivery") == "d1"
    assert webhook.header({}, "X-Openfaas-Delivery") is None


def test_a_delivery_without_an_id_is_named_by_its_body():
    assert webhook.delivery_id(None, "ab12") == "sha256:ab12"
    assert webhook.delivery_id(" fe0f677c ", "ab12") == "fe0f677c"
    with pytest.raises(ValueError, match="longer than 200"):
        webhook.delivery_id("x" * 201, "ab12")


def test_rollups_sum_exactly_per_function_hour_and_day():
    hour_ns = usage.NS_PER_HOUR
    day0 = parse_started("2026-10-14T00:00:00Z")
    events = [UsageEvent("acme", "env", day0 + 23 * hour_ns + 5, 3, 2**30),
              UsageEvent("acme", "env", day0 + 23 * hour_ns + 9, 10**18, 2**63 - 1),
              UsageEvent("acme", "env", day0 + 24 * hour_ns, 7, 1),  # the next day
              UsageEvent("acme", "api", day0, 1, 1)]
    hourly = usage.hourly_rollups(events)
    first = day0 // hour_ns
    assert hourly == [("acme", "api", first, 1, 1, 1),
                      ("acme", "env", first + 23, 2, 10**18 + 3, 3 * 2**30 + 10**18 * (2**63 - 1)),
                      ("acme", "env", first + 24, 1, 7, 7)]
    assert usage.daily_rollups(hourly) == [
        ("acme", "api", first // 24, 1, 1, 1),
        ("acme", "env", first // 24, 2, 10**18 + 3, 3 * 2**30 + 10**18 * (2**63 - 1)),
        ("acme", "env", first // 24 + 1, 1, 7, 7)]
