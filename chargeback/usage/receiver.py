"""receive-usage end to end: one call from the handler, one outcome back.

Order matters: the size limit and the signature come before anything is read
from or written to the database, so an unsigned or forged delivery costs us
nothing and leaves no trace. Only then is the body parsed, validated and
stored. Answers are 2xx only after the commit; anything transient surfaces as
DatabaseUnavailable, which the handler answers 503 + Retry-After.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from chargeback.core import db
from chargeback.core.meters import DNS_LABEL
from chargeback.core.responses import RequestError
from chargeback.core.settings import ConfigError, Settings
from chargeback.usage import cloudevents, custom_ingest, ingest, webhook
from chargeback.usage import events as usage
from chargeback.webhooks import outbox as webhook_outbox


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)


def webhook_keys(settings: Settings) -> list[bytes]:
    """The HMAC keys from the webhook-secret (as stored, and trimmed); ConfigError if none."""
    secret = settings.webhook_secret
    keys = webhook.signing_keys(secret or "")
    if not keys or not secret.strip():
        raise ConfigError("no webhook secret: create the webhook-secret secret "
                          "(the key the gateway's eventSubscription signs with)")
    return keys


def ready(settings: Settings, environ: Mapping[str, str]) -> None:
    """What receive-usage cannot work without (checked at start): a database and the
    webhook secret."""
    db.configured(settings)
    webhook_keys(settings)


def receive(settings: Settings, headers: Mapping[str, str], body: bytes,
            now_ns: int | None = None) -> Outcome:
    """Verify, parse, validate and store one webhook delivery.

    Raises RequestError (401, 400, 413) for what the sender must not retry
    as-is, ConfigError without a secret, DatabaseUnavailable when it should.
    """
    if len(body) > settings.max_body_bytes:
        raise RequestError(413, f"body is {len(body)} bytes; the limit is "
                                f"{settings.max_body_bytes} (MAX_BODY_BYTES)")
    kind = cloudevents.media_type(webhook.header(headers, "Content-Type"))
    if kind is not None:
        return receive_cloudevents(settings, headers, body, kind,
                                   time.time_ns() if now_ns is None else now_ns)
    try:
        webhook.verify_signature(body, webhook.header(headers, webhook.SIGNATURE_HEADER),
                                 webhook_keys(settings))
    except webhook.SignatureError as exc:
        raise RequestError(401, str(exc)) from None

    body_sha256 = hashlib.sha256(body).hexdigest()
    try:
        delivery_id = webhook.delivery_id(webhook.header(headers, webhook.DELIVERY_HEADER),
                                          body_sha256)
    except ValueError as exc:
        raise RequestError(400, str(exc)) from None
    event_type = webhook.header(headers, webhook.EVENT_HEADER)
    if event_type is not None and event_type.strip() != usage.EVENT_TYPE:
        # Acknowledge, or the event-worker retries it forever; count it so an
        # operator sees what arrives (openfaas_metering.webhook_other_events).
        ingest.count_other_delivery(settings, event_type.strip(), delivery_id,
                                    _array_length(body))
        return Outcome(200, {"ignored": event_type.strip(),
                             "reason": f"receive-usage stores {usage.EVENT_TYPE} events only"})
    try:
        batch = usage.parse_and_validate(body,
                                         now_ns=time.time_ns() if now_ns is None else now_ns,
                                         max_future_skew_s=settings.max_future_skew_s,
                                         exclude_namespaces=settings.exclude_namespaces)
    except usage.BodyError as exc:
        if ingest.quarantine_delivery(settings, delivery_id, body_sha256, event_type, body,
                                      str(exc)):
            webhook_outbox.wake(settings)  # its usage.rejected event
        raise RequestError(400, f"{exc}; the delivery is kept in quarantine") from None
    summary = ingest.store(settings, delivery_id, body_sha256, batch)
    if summary.rejected and not summary.replayed:
        webhook_outbox.wake(settings)  # its usage.rejected event
    return Outcome(200, summary.as_json(),
                   {"X-Delivery-Replayed": "true"} if summary.replayed else {})


def receive_cloudevents(settings: Settings, headers: Mapping[str, str], body: bytes,
                        kind: str, now_ns: int) -> Outcome:
    """Verify, validate and store a CloudEvents request (one event or a batch).

    Signed with the webhook-secret (any subject) or with the event key of the
    namespace named in X-Chargeback-Namespace (that subject only). One event
    that is invalid answers 400 naming the field; a batch answers 200 with a
    verdict per event. Every rejection is kept with its reason.
    """
    namespace = (webhook.header(headers, cloudevents.NAMESPACE_HEADER) or "").strip() or None
    keys = webhook_keys(settings)
    if namespace is not None:
        if not DNS_LABEL.fullmatch(namespace):
            raise RequestError(400, f"{cloudevents.NAMESPACE_HEADER} must be a namespace")
        keys = [cloudevents.event_key(settings.webhook_secret, namespace).encode()]
    try:
        webhook.verify_signature(body, webhook.header(headers, cloudevents.SIGNATURE_HEADER),
                                 keys, cloudevents.SIGNATURE_HEADER)
    except webhook.SignatureError as exc:
        raise RequestError(401, str(exc)) from None
    body_sha256 = hashlib.sha256(body).hexdigest()
    delivery = custom_ingest.delivery_of(body_sha256)
    rules = {"only_namespace": namespace, "now_ns": now_ns,
             "max_future_skew_s": settings.max_future_skew_s,
             "exclude_namespaces": settings.exclude_namespaces}
    batch = cloudevents.typed(body, kind, **rules)  # None: not all plain and valid
    if batch is None:
        try:
            items = cloudevents.parse(body, kind)
        except cloudevents.BodyError as exc:
            if ingest.quarantine_delivery(settings, delivery, body_sha256, kind, body, str(exc)):
                webhook_outbox.wake(settings)
            raise RequestError(400, f"{exc}; the request is kept in quarantine") from None
        batch = cloudevents.validate(items, **rules)
    summary = custom_ingest.store(settings, body_sha256, batch)
    if summary.rejected:
        webhook_outbox.wake(settings)  # its usage.rejected event
        if kind == cloudevents.ONE:
            raise RequestError(400, summary.rejected[0].reason.removeprefix("event 0: "))
    return Outcome(200, summary.as_json(delivery))


def _array_length(body: bytes) -> int:
    """How many items a JSON array body holds; 0 when it is not one."""
    try:
        return len(usage.parse_body(body))
    except usage.BodyError:
        return 0
