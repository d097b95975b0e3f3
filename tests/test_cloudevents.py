"""Custom meters from CloudEvents: receive-usage behind the local gateway, a real
PostgreSQL, the real month close pricing the meters the price book declares."""
from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from chargeback.billing import pricebook
from chargeback.core import db
from chargeback.usage.cloudevents import (
    ONE,
    SIGNATURE_HEADER,
    event_key,
)

from .billing_helpers import close
from .cloudevents_helpers import METER_BOOK, body_of, ce, receive_usage_gateway
from .conftest import WEBHOOK_SECRET
from .usage_helpers import query

@pytest.fixture
def gateway(local_runtime, product_stack, database_url, secrets_dir, tmp_path):
    return receive_usage_gateway(local_runtime, product_stack, database_url, secrets_dir,
                                 tmp_path)


def test_a_batch_with_a_duplicate_a_bad_event_and_an_unknown_tenant_is_stored_exactly_once(
        gateway, database_url):
    post, _ = gateway
    bad = ce("e-3")
    del bad["subject"]
    body = body_of([ce("e-1"), ce("e-1"), bad, ce("e-4", subject="nobody-here"),
                    ce("e-5", tokens="0.1")])
    r = post(body)
    assert r.status_code == 200, r.text
    verdict = r.json()
    assert (verdict["accepted"], verdict["duplicates"]) == (2, 1)
    assert verdict["rejected"] == [
        {"index": 2, "reason": "event 2: subject is required"},
        {"index": 3, "reason": "event 3: subject nobody-here is not a tenant (no namespace "
                               "meter-capacity lists)"}]
    again = post(body).json()  # the sender retries the whole batch
    assert (again["accepted"], again["duplicates"]) == (0, 3)
    rows = query(database_url, """SELECT event_id, (data #>> '{usage,tokens}')::numeric
                                    FROM openfaas_metering.custom_events ORDER BY 1""")
    assert rows == [("e-1", Decimal(100)), ("e-5", Decimal("0.1"))]
    kept = query(database_url, """SELECT event_index, reason LIKE 'event %%', namespace
                                    FROM openfaas_metering.usage_rejected_events ORDER BY 1""")
    # kept once, with their reasons and the tenant each names by its subject (event 2 none)
    assert kept == [(2, True, None), (3, True, "nobody-here")]


def test_one_invalid_event_is_refused_naming_the_field_and_kept_with_the_reason(
        gateway, database_url):
    post, _ = gateway
    event = ce("e-1")
    event["data"] = "100 tokens"
    r = post(body_of(event), kind=ONE)
    assert r.status_code == 400 and r.json()["error"] == "data must be a JSON object"
    r = post(b'{"specversion": "1.0", ', kind=ONE)
    assert r.status_code == 400 and r.json()["error"].startswith("body is not JSON")
    assert query(database_url, "SELECT count(*) FROM openfaas_metering.custom_events") == [(0,)]
    assert query(database_url, """SELECT count(*) FROM openfaas_metering.usage_rejected_events
                                  """) == [(1,)]
    assert query(database_url, """SELECT count(*) FROM
                                  openfaas_metering.usage_quarantined_deliveries""") == [(1,)]


def test_a_tenants_key_bills_only_its_own_namespace(gateway, database_url):
    post, _ = gateway
    key = event_key(WEBHOOK_SECRET, "ai-inference")
    assert post(body_of(ce("own")), kind=ONE, key=key,
                namespace="ai-inference").status_code == 200
    # the same key, claiming another tenant's events: refused per event
    r = post(body_of(ce("theirs", subject="other-tenant")), kind=ONE, key=key,
             namespace="ai-inference")
    assert r.status_code == 400
    assert r.json()["error"] == ("subject other-tenant: this sender's key is for namespace "
                                 "ai-inference and may bill only it")
    # ... or naming the other namespace: the signature does not match that namespace's key
    r = post(body_of(ce("theirs", subject="other-tenant")), kind=ONE, key=key,
             namespace="other-tenant")
    assert r.status_code == 401 and "does not match" in r.json()["error"]
    # unsigned: refused before anything is read
    r = requests.post(r.url, data=body_of(ce("x")), headers={"Content-Type": ONE}, timeout=30)
    assert r.status_code == 401 and SIGNATURE_HEADER in r.json()["error"]
    assert query(database_url, "SELECT event_id FROM openfaas_metering.custom_events") == [
        ("own",)]


def test_tokens_are_priced_with_graduated_tiers_and_counted_meters_by_unit(gateway):
    post, settings = gateway
    image = {**ce("img-1"), "type": "com.example.image.generated", "data": {}}
    body = body_of([ce("a", tokens="1200"), ce("b", tokens="300.5"), ce("c", tokens="0.1"),
                    ce("d", tokens="100", model="llama-3"), image,
                    {**image, "id": "img-2"}, {**image, "id": "img-3", "time":
                                                "2026-10-01T00:00:00Z"}])
    assert post(body).json()["accepted"] == 7
    invoice, = close(settings, period="2026-09", dry_run=True)["invoices"]
    # llama-3 has no price (no "*" for llm_tokens): the invoice stays a draft
    assert invoice["reasons"] == ["no price for llm_tokens llama-3 in plan 'standard'"]
    lines = {(line["meter"], line["sku"]): line for line in invoice["lines"]}
    # gpt-4o: 1200 + 300.5 + 0.1 = 1500.6 tokens; graduated: 1000 x 0.00002 = 0.02,
    # 500.6 x 0.00001 = 0.005006; 0.025006 rounds to 0.03 USD
    tokens = lines[("llm_tokens", "gpt-4o")]
    assert (Decimal(tokens["quantity"]), tokens["unit"], tokens["description"]) == (
        Decimal("1500.6"), "tokens", "LLM tokens gpt-4o")
    assert Decimal(tokens["amount"]) == Decimal("0.03")
    # two images in September (the third is October's): 2 x 0.04
    images = lines[("images", "")]
    assert (Decimal(images["quantity"]), images["unit"], Decimal(images["amount"])) == (
        Decimal(2), "images", Decimal("0.08"))
    # and the close keeps it a draft for the same reason
    draft, = close(settings, period="2026-09")["periods"][0]["drafts"]
    assert draft["reasons"] == invoice["reasons"]


def test_a_meter_declaration_names_the_key_it_trips_on():
    broken = METER_BOOK.replace("aggregation: sum", "aggregation: average", 1)
    with pytest.raises(pricebook.PriceBookError, match=r"meters\.llm_tokens\.aggregation"):
        pricebook.parse(broken)
    with pytest.raises(pricebook.PriceBookError, match=r"meters\.images\.value_property"):
        pricebook.parse(METER_BOOK.replace("aggregation: count",
                                           "aggregation: count\n    value_property: $.n"))


def test_a_late_event_of_a_finalized_month_is_billed_by_a_supplementary_invoice(gateway):
    post, settings = gateway
    assert post(body_of([ce("a", tokens="1000")])).json()["accepted"] == 1
    first = close(settings, period="2026-09")["periods"][0]["invoices"][0]
    assert first["status"] != "draft", first
    # 1000 tokens x 0.00002 = 0.02
    assert Decimal(first["total"]) == Decimal("0.02")
    with db.transaction(settings) as conn:  # checked a while ago: the late event is newer
        conn.execute("UPDATE openfaas_metering.closed_periods"
                     " SET usage_checked_at = now() - interval '1 hour'")
    assert post(body_of([ce("late", tokens="600")])).json()["accepted"] == 1
    later = close(settings)
    corrected = [d for p in later["periods"] for d in p.get("invoices", [])
                 if d.get("kind") == "supplementary" or d.get("corrects")]
    # the month priced whole: 1000 x 0.00002 + 600 x 0.00001 = 0.026 -> 0.03; billed 0.02
    assert [Decimal(d["total"]) for d in corrected] == [Decimal("0.01")], later
