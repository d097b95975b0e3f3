"""A tenant's function billing LLM tokens to chargeback (docs/meters.md), with the standard
CloudEvents SDK: pip install cloudevents requests. Deploy with the tenant's event key as the
secret chargeback-event-key and NAMESPACE set to the function's namespace."""
import hashlib, hmac, os, uuid, requests  # noqa: E401
from cloudevents.http import CloudEvent
from cloudevents.conversion import to_structured

KEY = open("/var/openfaas/secrets/chargeback-event-key").read().strip()
URL = "http://gateway.openfaas:8080/function/receive-usage.openfaas-system"


def bill_tokens(model: str, tokens: int) -> None:
    event = CloudEvent({"id": str(uuid.uuid4()), "source": "/my-function",
                        "type": "com.example.llm.completion", "subject": os.environ["NAMESPACE"]},
                       {"model": model, "usage": {"tokens": tokens}})
    headers, body = to_structured(event)
    headers["X-Chargeback-Signature-256"] = "sha256=" + hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
    headers["X-Chargeback-Namespace"] = os.environ["NAMESPACE"]
    requests.post(URL, data=body, headers=headers, timeout=10).raise_for_status()
