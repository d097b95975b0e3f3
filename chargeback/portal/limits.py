"""Per-tenant limits, so that one tenant cannot slow another.

The template serves a replica's requests on a few threads (WAITRESS_THREADS, 4).
A tenant holds at most CONCURRENT of them at once and makes at most RATE requests
a second (a token bucket of BURST); past either, 429 with Retry-After, before any
work is done. Rendering a document is the one expensive answer: a tenant renders
one at a time (downloads.py caches the result). The limits are per replica, as
the replica's threads are; a replica's memory holds a bucket per tenant seen.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from chargeback.core.responses import RequestError

CONCURRENT = 2
RATE_PER_S = 10.0
BURST = 30


class _Tenant:
    def __init__(self):
        self.busy = 0
        self.tokens = float(BURST)
        self.refilled = time.monotonic()
        self.render = threading.Lock()


_lock = threading.Lock()
_tenants: dict[str, _Tenant] = {}


def _refused(reason: str, after_s: int = 1) -> RequestError:
    return RequestError(429, reason, {"Retry-After": str(after_s)})


@contextmanager
def gate(tenant: str):
    """Hold one of `tenant`'s request slots while the block runs; 429 when it has none."""
    with _lock:
        t = _tenants.setdefault(tenant, _Tenant())
        now = time.monotonic()
        t.tokens = min(BURST, t.tokens + (now - t.refilled) * RATE_PER_S)
        t.refilled = now
        if t.tokens < 1:
            raise _refused(f"too many requests: at most {RATE_PER_S:g} a second per tenant")
        if t.busy >= CONCURRENT:
            raise _refused(f"too many requests at once: at most {CONCURRENT} per tenant")
        t.tokens -= 1
        t.busy += 1
    try:
        yield t
    finally:
        with _lock:
            t.busy -= 1


@contextmanager
def rendering(tenant: str):
    """One render at a time for `tenant` (its other requests wait for it)."""
    with _lock:
        t = _tenants.setdefault(tenant, _Tenant())
    with t.render:
        yield
