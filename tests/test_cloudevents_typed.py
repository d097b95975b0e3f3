"""The CloudEvents fast path (`cloudevents.typed`) accepts exactly what `validate` accepts,
and what it cannot read plainly (an extension attribute, a separator in an id) is
still stored exactly, through the local gateway and a real PostgreSQL."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from chargeback.usage import cloudevents
from chargeback.usage.cloudevents import BATCH, ONE

from .cloudevents_helpers import body_of, ce, receive_usage_gateway
from .usage_helpers import query


@pytest.fixture
def gateway(local_runtime, product_stack, database_url, secrets_dir, tmp_path):
    return receive_usage_gateway(local_runtime, product_stack, database_url, secrets_dir,
                                 tmp_path)

NOW_NS = 1_789_000_000 * 10**9  # 2026-09-09T...; the events' time is the next day
RULES = {"only_namespace": None, "now_ns": NOW_NS, "max_future_skew_s": 2 * 86_400,
         "exclude_namespaces": ("kube-system",)}


def nested(levels: int) -> dict:
    data: dict = {}
    for _ in range(levels - 1):
        data = {"a": data}
    return data


# Each a batch of a plain event and one changed event (None: the plain event alone).
CHANGES = {
    "plain": None,
    "extension attribute": {"traceparent": "00-abc-01"},
    "data_base64": {"data_base64": "AAA="},
    "no subject": {"subject": None},
    "specversion 0.3": {"specversion": "0.3"},
    "id a number": {"id": 7},
    "id blank": {"id": "  "},
    "id of 256 characters": {"id": "i" * 256},
    "id of 257 characters": {"id": "i" * 257},
    "id with a NUL": {"id": "a\x00b"},
    "source with a unit separator": {"source": "/a\x1fb"},
    "subject not a label": {"subject": "Not_A_Label"},
    "subject excluded": {"subject": "kube-system"},
    "datacontenttype text": {"datacontenttype": "text/plain"},
    "datacontenttype with charset": {"datacontenttype": "application/json; charset=utf-8"},
    "datacontenttype null": {"datacontenttype": None},
    "data a list": {"data": [1]},
    "data nested 30 levels": {"data": nested(30)},
    "time with an offset": {"time": "2026-09-10T14:00:00.5+02:00"},
    "time not RFC 3339": {"time": "yesterday"},
    "time 3 days ahead": {"time": "2026-09-12T12:00:00Z"},
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_the_fast_path_accepts_only_what_validate_accepts_and_reads_it_alike(change):
    events = [ce("plain")] + ([{**ce("changed"), **change}] if change else [])
    events = [{k: v for k, v in e.items() if v is not None or k == "datacontenttype"}
              for e in events]  # "no subject": the attribute left out
    body = body_of(events)
    slow = cloudevents.validate(cloudevents.parse(body, BATCH), **RULES)
    fast = cloudevents.typed(body, BATCH, **RULES)
    if slow.rejected:
        assert fast is None  # validate gives the verdicts
    if fast is not None:
        assert [e[:6] for e in fast.events] == [e[:6] for e in slow.events]
        assert [json.loads(e.data_json) for e in fast.events] == [
            json.loads(e.data_json) for e in slow.events]
        assert fast.item(0) == json.loads(body)[0]  # as sent, when a rejection needs it


def test_the_depth_limit_is_the_same_on_both_paths():
    # the array, the event and 30 nested objects are 32 levels: allowed; 31 objects are not
    for levels, allowed in ((30, True), (31, False)):
        body = body_of([{**ce("deep"), "data": nested(levels)}])
        assert (cloudevents.typed(body, BATCH, **RULES) is not None) is allowed
        if not allowed:
            with pytest.raises(cloudevents.BodyError, match="nested deeper than 32"):
                cloudevents.parse(body, BATCH)


def test_events_off_the_fast_path_are_stored_exactly_and_once(gateway, database_url):
    post, _ = gateway
    body = body_of([ce("plain", tokens="0.1"), ce("with\x1fseparator", tokens="100"),
                    ce("traced", tokens="300.5", traceparent="00-abc-01")])
    r = post(body)
    assert r.status_code == 200, r.text
    assert (r.json()["accepted"], r.json()["rejected"]) == (3, [])
    assert post(body).json()["duplicates"] == 3  # the retry: nothing stored twice
    one = body_of(ce("alone", tokens="1200"))
    assert post(one, kind=ONE).json()["accepted"] == 1
    rows = query(database_url, """SELECT event_id, (data #>> '{usage,tokens}')::numeric
                                    FROM openfaas_metering.custom_events ORDER BY 1""")
    # the tokens exactly as sent, the separator kept inside its id
    assert rows == [("alone", Decimal(1200)), ("plain", Decimal("0.1")),
                    ("traced", Decimal("300.5")), ("with\x1fseparator", Decimal(100))]
