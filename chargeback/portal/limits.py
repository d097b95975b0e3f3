"""Per-tenant limits, so that one tenant cannot slow another.

A replica serves its requests on WAITRESS_THREADS threads. A tenant runs at most
CONCURRENT requests at once and RATE_PER_S a second (a token bucket of BURST). A
request past either waits its turn, as nginx's limit_req delays a burst instead of
refusing it: a client that loops back to back is paced at the tenant's rate instead
of spinning on refusals, which cost the CPU every other tenant shares. A wait is
bounded: at most QUEUE of a tenant's requests, and across tenants at most half the
threads, wait at once, none longer than MAX_WAIT_S; past that, 429 with Retry-After
at once, before any database work. So the threads that do not wait are always at least
half of them, and one tenant holds at most CONCURRENT + QUEUE.

Rendering a document is the one expensive answer: a tenant renders one at a time
(downloads.py caches the result). The limits are per replica, as the threads and
the CPU they protect are (docs/portal.md); a replica's memory holds a bucket per
tenant seen.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from chargeback.core.responses import RequestError

CONCURRENT = 2
RATE_PER_S = 10.0
BURST = 30
QUEUE = 6  # a browser opens up to 6 connections to a host: its parallelism waits, never 429
MAX_WAIT_S = 1.0

_lock = threading.Lock()


class _Tenant:
    def __init__(self):
        self.busy = 0
        self.waiting = 0
        self.tokens = float(BURST)
        self.refilled = time.monotonic()
        self.render = threading.Lock()
        self.turn = threading.Condition(_lock)  # a running request of this tenant ended


_tenants: dict[str, _Tenant] = {}
_waiting = 0  # requests of every tenant waiting for their turn (held threads)


def _refused(reason: str, after_s: int = 1) -> RequestError:
    return RequestError(429, reason, {"Retry-After": str(after_s)})


def _admit(t: _Tenant, threads: int) -> float | None:
    """Take a token for one request of `t` (under _lock): None when it runs at once (its
    slot taken), else the seconds it must wait for its token; RequestError 429 when it
    may not wait."""
    global _waiting
    now = time.monotonic()
    t.tokens = min(BURST, t.tokens + (now - t.refilled) * RATE_PER_S)
    t.refilled = now
    wait_s = max(0.0, (1 - t.tokens) / RATE_PER_S)
    must_wait = wait_s > 0 or t.busy >= CONCURRENT
    if must_wait and (t.waiting >= QUEUE or _waiting >= threads // 2
                      or wait_s > MAX_WAIT_S):
        if wait_s > 0:
            raise _refused(f"too many requests: at most {RATE_PER_S:g} a second per tenant")
        raise _refused(f"too many requests at once: at most {CONCURRENT} per tenant")
    t.tokens -= 1  # below zero: the tokens of the requests already waiting
    if not must_wait:
        t.busy += 1
        return None
    t.waiting += 1
    _waiting += 1
    return wait_s


@contextmanager
def gate(tenant: str, threads: int):
    """Hold one of `tenant`'s request slots while the block runs, after waiting for it
    (bounded); 429 when it may not wait. `threads`: the replica's WAITRESS_THREADS."""
    global _waiting
    with _lock:
        t = _tenants.setdefault(tenant, _Tenant())
        wait_s = _admit(t, threads)
    if wait_s is not None:  # a waiting request: its token's time, then a free slot
        deadline = time.monotonic() + MAX_WAIT_S
        time.sleep(wait_s)
        with _lock:
            try:
                while t.busy >= CONCURRENT:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise _refused(f"too many requests at once: at most {CONCURRENT} "
                                       "per tenant")
                    t.turn.wait(left)
            finally:
                t.waiting -= 1
                _waiting -= 1
            t.busy += 1
    try:
        yield t
    finally:
        with _lock:
            t.busy -= 1
            t.turn.notify()


@contextmanager
def rendering(tenant: str):
    """One render at a time for `tenant` (its other requests wait for it)."""
    with _lock:
        t = _tenants.setdefault(tenant, _Tenant())
    with t.render:
        yield
