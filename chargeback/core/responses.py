"""Response shaping shared by every handler: JSON bodies, one-line errors, status mapping.

A handler wraps its work in `guarded()` so that the same failure always gets
the same answer: a bad request its 4xx with the reason, a missing or unusable
setting 503 "misconfigured: ..." (as the check at start answers,
chargeback.core.startup), and a failure of something we depend on the status
its `ServiceError` class carries (a database or Kubernetes API that is down 503
with Retry-After, so the sender retries; the gateway unreachable 502; a
Kubernetes refusal 500 naming the missing permission). Each capability declares
its own; this module knows none.

A 5xx answer is logged once, by the template's server, with the request's path:
`guarded` puts the line for the log under the answer's `log` key (the server
never sends it), so a database error's host and user reach the log and never
the caller.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from chargeback.core.settings import ConfigError

RETRY_AFTER_S = 5


class RequestError(Exception):
    """The caller sent something we cannot accept; `status` and a one-line reason."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


class ServiceError(Exception):
    """Something we depend on failed; the class says how to answer. `status` 503 means
    "retry later" (with Retry-After, nothing was recorded); `public_reason` is what the
    caller reads (the message itself may name hosts and users: it goes to the log only
    unless `public_reason` returns it)."""

    status = 503
    what = "unavailable"  # the log line's subject

    def public_reason(self) -> str:
        return str(self)


def respond(status: int, body: Any, headers: dict[str, str] | None = None) -> dict:
    return {"statusCode": status, "body": body, "headers": dict(headers or {})}


def error(status: int, reason: str, headers: dict[str, str] | None = None) -> dict:
    return respond(status, {"error": reason}, headers)


def guarded(handle: Callable[[Any, Any], dict]) -> Callable[[Any, Any], dict]:
    """Map chargeback's exceptions to answers; anything else is the template's clean 500."""

    @functools.wraps(handle)
    def wrapper(event, context):
        try:
            return handle(event, context)
        except RequestError as exc:
            return error(exc.status, exc.reason, exc.headers)
        except ConfigError as exc:
            return error(503, f"misconfigured: {exc}")
        except ServiceError as exc:
            retry = {"Retry-After": str(RETRY_AFTER_S)} if exc.status == 503 else None
            return {**error(exc.status, exc.public_reason(), retry), "log": f"{exc.what}: {exc}"}

    return wrapper


def require_method(event, *allowed: str) -> None:
    if event.method not in allowed:
        raise RequestError(405, f"method {event.method} not allowed; use {', '.join(allowed)}",
                           {"Allow": ", ".join(allowed)})
