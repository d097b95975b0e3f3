"""Response shaping shared by every handler: JSON bodies, one-line errors, status mapping.

A handler wraps its work in `guarded()` so that the same failure always gets
the same answer: a bad request its 4xx with the reason, a missing setting 500,
a database or Kubernetes API that is down 503 with Retry-After (so the sender
retries), the gateway unreachable 502, a Kubernetes refusal (403) 500 naming
the missing permission.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from .db import DatabaseUnavailable
from .gateway import GatewayError
from .kube import KubeRefused, KubeUnavailable
from .settings import ConfigError

log = logging.getLogger("chargeback")
RETRY_AFTER_S = 5


class RequestError(Exception):
    """The caller sent something we cannot accept; `status` and a one-line reason."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


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
            return error(500, f"misconfigured: {exc}")
        except DatabaseUnavailable as exc:
            # The driver's message names the host, port and user: log it only.
            log.warning("database unavailable: %s", exc)
            return error(503, "database unavailable, retry later",
                         {"Retry-After": str(RETRY_AFTER_S)})
        except GatewayError as exc:
            return error(502, str(exc))
        except KubeUnavailable as exc:
            log.warning("kubernetes API unavailable: %s", exc)
            return error(503, f"kubernetes API unavailable, nothing recorded; retry later: {exc}",
                         {"Retry-After": str(RETRY_AFTER_S)})
        except KubeRefused as exc:
            log.error("kubernetes API refused: %s", exc)
            return error(500, str(exc))

    return wrapper


def require_method(event, *allowed: str) -> None:
    if event.method not in allowed:
        raise RequestError(405, f"method {event.method} not allowed; use {', '.join(allowed)}",
                           {"Allow": ", ".join(allowed)})
