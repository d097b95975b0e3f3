"""Custom usage events as CloudEvents 1.0 (JSON format): parse, authenticate, validate. Pure.

A body is one event (`application/cloudevents+json`) or a JSON array of them
(`application/cloudevents-batch+json`). Each event needs `specversion` "1.0",
`id`, `source`, `type`, `subject` (the tenant's namespace), `time` (RFC 3339)
and `data` (a JSON object; `data_base64` is refused). Numbers in `data` are
read as exact decimals and stored as such, so a meter summing 0.1 ten times
gets exactly 1.

Who may send what. A body is signed (HMAC-SHA256 of the raw body, header
`X-Chargeback-Signature-256: sha256=<hex>`) either with the webhook-secret
itself (the operator's own services: any subject) or with a tenant's event key,
derived from the webhook-secret for one namespace and named by
`X-Chargeback-Namespace` (a function in that namespace: only subject = that
namespace). So a tenant's function, holding only its own key, cannot bill
another tenant, and the operator hands out keys without storing any
(`scripts/event-key NAMESPACE`).
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

from chargeback.core.meters import DNS_LABEL
from chargeback.usage.events import (MAX_JSON_DEPTH, Rejection, deeper_than, parse_started,
                                     short)

ONE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
SIGNATURE_HEADER = "X-Chargeback-Signature-256"
NAMESPACE_HEADER = "X-Chargeback-Namespace"
MAX_ATTRIBUTE_CHARS = 256
SUBJECT = "subject"   # the key naming the tenant
_REQUIRED = ("specversion", "id", "source", "type", "subject", "time", "data")
_decoder = msgspec.json.Decoder(float_hook=Decimal)   # numbers stay exact
_encoder = msgspec.json.Encoder(decimal_format="number")


class BodyError(ValueError):
    """The body as a whole is unusable; nothing is stored."""


@dataclass(frozen=True)
class CustomEvent:
    index: int       # in the body
    namespace: str
    source: str
    event_id: str
    type: str
    time_ns: int
    data_json: str   # `data` as JSON text, its numbers exactly as sent


@dataclass
class Batch:
    items: list      # as sent
    events: list[CustomEvent] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def event_key(webhook_secret: str, namespace: str) -> str:
    """The key a tenant's functions sign their events with: HMAC(webhook-secret, namespace)."""
    return hmac.new(webhook_secret.strip().encode(), f"cloudevents:{namespace}".encode(),
                    hashlib.sha256).hexdigest()


def media_type(content_type: str | None) -> str | None:
    """ONE or BATCH for a CloudEvents Content-Type (parameters ignored), else None."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return kind if kind in (ONE, BATCH) else None


def parse(body: bytes, kind: str) -> list:
    """The events of a body of media type `kind`, as sent; BodyError when unusable."""
    try:
        value = _decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BodyError(f"body is not JSON: {str(exc).splitlines()[0]}") from None
    if kind == BATCH and not isinstance(value, list):
        raise BodyError(f"body must be a JSON array of CloudEvents ({BATCH})")
    if kind == ONE and not isinstance(value, dict):
        raise BodyError(f"body must be one CloudEvent, a JSON object ({ONE})")
    items = value if kind == BATCH else [value]
    if deeper_than(items, MAX_JSON_DEPTH):
        raise BodyError(f"body is nested deeper than {MAX_JSON_DEPTH} levels")
    return items


def validate(items: list, *, only_namespace: str | None, now_ns: int,
             max_future_skew_s: int, exclude_namespaces: frozenset[str]) -> Batch:
    """Each item checked on its own; `only_namespace`: the one subject the sender may bill."""
    batch = Batch(items)
    for index, item in enumerate(items):
        try:
            batch.events.append(_event(index, item, only_namespace, now_ns, max_future_skew_s,
                                       exclude_namespaces))
        except ValueError as exc:
            batch.rejected.append(Rejection(index, f"event {index}: {exc}", item, SUBJECT))
    return batch


def _event(index: int, item: Any, only_namespace: str | None, now_ns: int, max_future_skew_s: int,
           exclude_namespaces: frozenset[str]) -> CustomEvent:
    if not isinstance(item, dict):
        raise ValueError("must be a JSON object (a CloudEvent)")
    missing = [name for name in _REQUIRED if name not in item]
    if "data_base64" in item:
        raise ValueError("data_base64 is not accepted: send data as a JSON object")
    if missing:
        raise ValueError(f"{missing[0]} is required")
    if item["specversion"] != "1.0":
        raise ValueError(f"specversion must be \"1.0\", got {short(item['specversion'])}")
    for name in ("id", "source", "type"):
        value = item[name]
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string")
        if len(value) > MAX_ATTRIBUTE_CHARS or "\x00" in value:
            raise ValueError(f"{name} is longer than {MAX_ATTRIBUTE_CHARS} characters "
                             "or holds a NUL")
    subject = item["subject"]
    if not isinstance(subject, str) or not DNS_LABEL.fullmatch(subject):
        raise ValueError(f"subject must be the tenant's namespace (a DNS-1123 label), "
                         f"got {short(subject)}")
    if subject in exclude_namespaces:
        raise ValueError(f"subject {subject} is excluded from billing (EXCLUDE_NAMESPACES)")
    if only_namespace is not None and subject != only_namespace:
        raise ValueError(f"subject {subject}: this sender's key is for namespace "
                         f"{only_namespace} and may bill only it")
    content_type = item.get("datacontenttype", "application/json")
    if not isinstance(content_type, str) or \
            content_type.split(";")[0].strip().lower() != "application/json":
        raise ValueError(f"datacontenttype must be application/json, got {short(content_type)}")
    if not isinstance(item["data"], dict):
        raise ValueError("data must be a JSON object")
    try:
        time_ns = parse_started(item["time"])
    except ValueError as exc:
        raise ValueError(str(exc).replace("started", "time", 1)) from None
    if time_ns > now_ns + max_future_skew_s * 1_000_000_000:
        raise ValueError(f"time {short(item['time'])} is more than {max_future_skew_s} s "
                         "in the future")
    return CustomEvent(index, subject, item["source"], item["id"], item["type"], time_ns,
                       _encoder.encode(item["data"]).decode())


def as_json(item: Any) -> str:
    """An event as sent, as JSON text (for the rejected-events table)."""
    return _encoder.encode(item).decode()
