"""tenant-portal's per-tenant limits (chargeback/portal/limits.py), in one process with
real threads: past its rate a tenant's request waits its turn, a bounded queue of them,
and past the bound 429 at once; another tenant never waits for it. (Through HTTP:
tests/test_portal_origin.py's rate test.)"""
from __future__ import annotations

import threading
import time
import uuid
from contextlib import ExitStack, contextmanager

import pytest

from chargeback.core.responses import RequestError
from chargeback.portal import limits


def _tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"  # the limits are process-wide: a fresh bucket


def _drain(tenant: str, threads: int = 16) -> None:
    for _ in range(limits.BURST):  # the burst, each at once (a token left each time)
        with limits.gate(tenant, threads):
            pass


def _ask_at_once(tenant: str, count: int, threads: int) -> list:
    """`count` requests of `tenant` at the same moment: each (answer, seconds to its slot)."""
    out = [None] * count
    go = threading.Barrier(count)

    def one(i):
        go.wait()
        started = time.monotonic()
        try:
            with limits.gate(tenant, threads):
                out[i] = ("served", time.monotonic() - started)
        except RequestError as exc:
            out[i] = (exc.status, time.monotonic() - started, exc.headers["Retry-After"])
    workers = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return out


def test_past_its_burst_a_tenants_requests_wait_for_their_tokens_up_to_its_queue():
    tenant = _tenant()
    _drain(tenant)
    answers = _ask_at_once(tenant, 9, threads=16)
    served = sorted(a[1] for a in answers if a[0] == "served")
    refused = [a for a in answers if a[0] == 429]
    # the bucket empty, tokens come every 1/10 s: QUEUE = 6 (a browser's connections to
    # a host) wait, for about 0.1, 0.2, ... 0.6 s (less the refill while the burst ran);
    # the other 3 are refused at once, with Retry-After
    assert len(served) == limits.QUEUE == 6 and len(refused) == 3, answers
    assert served[-1] >= 0.5 and served[-1] < limits.MAX_WAIT_S, served
    assert all(seconds < 0.5 and after == "1" for _, seconds, after in refused), refused


@contextmanager
def _running(tenant: str, count: int = limits.CONCURRENT):
    """`count` of `tenant`'s requests running (holding their slots) until `release` is set
    or the block ends."""
    release = threading.Event()
    running = threading.Barrier(count + 1)

    def hold():
        with limits.gate(tenant, 16):
            running.wait()
            release.wait(5)
    holders = [threading.Thread(target=hold) for _ in range(count)]
    for h in holders:
        h.start()
    running.wait()
    try:
        yield release
    finally:
        release.set()
        for h in holders:
            h.join()


def test_a_tenant_past_its_concurrency_waits_for_a_running_request_to_end():
    tenant = _tenant()
    with _running(tenant) as release:  # CONCURRENT = 2 of its requests run
        threading.Timer(0.3, release.set).start()
        started = time.monotonic()
        with limits.gate(tenant, 16):  # a third: tokens left, no slot until one ends
            waited_s = time.monotonic() - started
    assert 0.25 <= waited_s < limits.MAX_WAIT_S, waited_s
    other = _tenant()
    started = time.monotonic()
    with limits.gate(other, 16):  # another tenant: at once
        assert time.monotonic() - started < 0.05


def test_a_wait_longer_than_its_bound_is_refused_not_served_late():
    tenant = _tenant()
    with _running(tenant):
        started = time.monotonic()
        with pytest.raises(RequestError) as refused:
            with limits.gate(tenant, 16):
                pass
        waited_s = time.monotonic() - started
    # its slot never came: refused after MAX_WAIT_S (1 s), not held longer
    assert refused.value.status == 429 and "at once" in refused.value.reason
    assert limits.MAX_WAIT_S <= waited_s < limits.MAX_WAIT_S + 0.5, waited_s


def test_at_most_half_the_threads_wait_whichever_tenants_they_serve():
    tenants = [_tenant() for _ in range(3)]
    with ExitStack() as held:
        releases = [held.enter_context(_running(t)) for t in tenants]  # each at its 2
        answers = []
        go = threading.Barrier(3)

        def one(tenant):
            go.wait()
            answers.extend(_ask_at_once(tenant, 2, threads=4))
        workers = [threading.Thread(target=one, args=(t,)) for t in tenants]
        for w in workers:
            w.start()
        for release in releases:  # the running ones end: the waiting ones are served
            threading.Timer(0.2, release.set).start()
        for w in workers:
            w.join()
    # WAITRESS_THREADS=4: 2 may wait (whichever tenants they are), so the other 2
    # threads serve tenants within their limits; the 4 other requests (of 6) are
    # refused at once
    assert [a[0] for a in answers].count("served") == 2, answers
    assert [a[0] for a in answers].count(429) == 4
