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
from typing import Any, NamedTuple

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


class CustomEvent(NamedTuple):
    index: int       # in the body
    namespace: str
    source: str
    event_id: str
    type: str
    time_ns: int
    data_json: str   # `data` as JSON text, its numbers exactly as sent


@dataclass
class Batch:
    items: list | None   # as sent; None: decoded by `typed`, read again by `item`
    events: list[CustomEvent] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    body: bytes = b""
    kind: str = BATCH

    def item(self, index: int) -> Any:
        """The event at `index` as sent (a dict when it is a JSON object)."""
        if self.items is None:
            self.items = parse(self.body, self.kind)
        return self.items[index]


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


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """A CloudEvent as nearly all arrive: the attributes read here and no others, `data`
    kept as its JSON text exactly as sent (so its numbers stay exact)."""
    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: str
    data: msgspec.Raw
    datacontenttype: str = "application/json"


_TYPED = {ONE: msgspec.json.Decoder(_Envelope), BATCH: msgspec.json.Decoder(list[_Envelope])}


def typed(body: bytes, kind: str, *, only_namespace: str | None, now_ns: int,
          max_future_skew_s: int, exclude_namespaces: frozenset[str]) -> Batch | None:
    """The batch when every event of the body is valid by `validate`'s rules and names
    only `_Envelope`'s attributes: decoded and typed in C, each distinct subject, source,
    type and time checked once. None when anything is off (a wrong type, an extension
    attribute, an invalid event, a body that is not JSON): then `parse` and `validate`
    read the body and give each event its verdict, so the same events are accepted."""
    if b"\\u0000" in body:  # a NUL in some string: validate names the attribute
        return None
    try:
        decoded = _TYPED[kind].decode(body)
        envelopes = decoded if kind == BATCH else [decoded]
        data = [bytes(e.data).decode() for e in envelopes]
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return None
    subjects = {e.subject for e in envelopes}
    attributes = {e.source for e in envelopes} | {e.type for e in envelopes}
    ids = [e.id for e in envelopes]
    times = {e.time: 0 for e in envelopes}
    if not envelopes or {e.specversion for e in envelopes} != {"1.0"} \
            or not all(map(DNS_LABEL.fullmatch, subjects)) \
            or not subjects.isdisjoint(exclude_namespaces) \
            or (only_namespace is not None and subjects != {only_namespace}) \
            or not all(map(_attribute_ok, attributes)) \
            or max(map(len, ids)) > MAX_ATTRIBUTE_CHARS or not all(map(str.strip, ids)) \
            or not all(map(_json_content, {e.datacontenttype for e in envelopes})) \
            or not all(map(_shallow_object, data)):
        return None
    try:
        times = {text: parse_started(text) for text in times}
    except ValueError:
        return None
    if max(times.values()) > now_ns + max_future_skew_s * 1_000_000_000:
        return None
    return Batch(None, [CustomEvent(index, e.subject, e.source, e.id, e.type, times[e.time],
                                    data[index]) for index, e in enumerate(envelopes)],
                 body=body, kind=kind)


def _attribute_ok(value: str) -> bool:  # NULs: see typed
    return bool(value.strip()) and len(value) <= MAX_ATTRIBUTE_CHARS


def _json_content(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "application/json"


def _shallow_object(data: str) -> bool:
    """A JSON object whose containers (counted with any brace or bracket inside its
    strings, so at least as many as nest) leave the body within MAX_JSON_DEPTH: the
    array and the event are two levels, `data` and what it holds the rest."""
    return data[:1] == "{" and data.count("{") + data.count("[") <= MAX_JSON_DEPTH - 2


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
    if not isinstance(content_type, str) or not _json_content(content_type):
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
