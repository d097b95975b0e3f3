"""What the CloudEvents tests share: the price book with custom meters, an event, a
batch's body and receive-usage behind the local gateway."""
from __future__ import annotations

import json

import requests

from chargeback.usage.cloudevents import BATCH, NAMESPACE_HEADER, SIGNATURE_HEADER
from chargeback.usage.webhook import sign

from .billing_helpers import BOOK, on_plan, settings_for
from .conftest import WEBHOOK_SECRET
from .webhook_receiver import runtime_with

# The test price book plus one custom meter: LLM tokens per model, graduated.
METER_BOOK = BOOK.replace("price_lists:", """meters:
  llm_tokens:
    event_type: com.example.llm.completion
    aggregation: sum
    value_property: $.usage.tokens
    group_by: [$.model]
    unit: tokens
    description: {en: LLM tokens, de: LLM-Token}
  images:
    event_type: com.example.image.generated
    aggregation: count
    unit: images
price_lists:""", 1).replace("""      gb_seconds:
        "*": {unit_price: "0.001"}""", """      gb_seconds:
        "*": {unit_price: "0.001"}
      llm_tokens:
        gpt-4o:
          tiers:
            mode: graduated
            steps:
              - {up_to: 1000, unit_price: "0.00002"}
              - {unit_price: "0.00001"}
      images:
        "*": {unit_price: "0.04"}""", 1)


def ce(event_id, subject="ai-inference", tokens="100", model="gpt-4o",
       time="2026-09-10T12:00:00Z", **extra):
    return {"specversion": "1.0", "id": event_id, "source": "/llm-gateway",
            "type": "com.example.llm.completion", "subject": subject, "time": time,
            "datacontenttype": "application/json",
            "data": {"model": model, "usage": {"tokens": tokens}}, **extra}


def body_of(events) -> bytes:
    # tokens given as strings above are written as JSON numbers, exactly as typed
    text = json.dumps(events)
    for value in ("100", "0.1", "1200", "300.5", "1000", "600"):
        text = text.replace(f'"tokens": "{value}"', f'"tokens": {value}')
    return text.encode()


def receive_usage_gateway(local_runtime, product_stack, database_url, secrets_dir, tmp_path):
    """receive-usage behind the local gateway, pricing METER_BOOK: (post(body, kind, key,
    namespace) -> response, settings)."""
    settings = settings_for(database_url, tmp_path, METER_BOOK, SECRETS_DIR=str(secrets_dir))
    on_plan(settings, "ai-inference", "standard")
    on_plan(settings, "other-tenant", "standard")
    runtime = runtime_with(local_runtime, product_stack, ["receive-usage"], {
        "DATABASE_URL": database_url, "SECRETS_DIR": str(secrets_dir),
        "PRICEBOOK_FILE": settings.pricebook_file})
    url = f"{runtime.gateway_url}/function/receive-usage.openfaas-system"

    def post(body: bytes, kind=BATCH, key=WEBHOOK_SECRET, namespace=None):
        headers = {"Content-Type": kind, SIGNATURE_HEADER: sign(body, key)}
        if namespace:
            headers[NAMESPACE_HEADER] = namespace
        return requests.post(url, data=body, headers=headers, timeout=30)
    return post, settings
