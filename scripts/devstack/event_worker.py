"""The local gateway's witnesses of its calls: the invocation counter and the event-worker.

- `InvocationCounter`: `gateway_function_invocation_total{function_name="<fn>.<namespace>",
  code="<status>"}` for every synchronous call the gateway proxied, served at
  `/metrics` in Prometheus' text format (the OpenFaaS gateway serves it on its
  metrics port). Every function's `code="200"` series starts at 0, so the first
  scrape sees the counter before the first call (what Prometheus needs to count it).
- `EventWorker`: when the runtime is given a usage webhook, every such call also
  becomes a `function_usage` event, sent in signed batches to receive-usage
  as the OpenFaaS event-worker does (X-Openfaas-Event, X-Openfaas-Delivery,
  X-Openfaas-Signature-256). `drop_next_batch()` makes the next batch (inside
  `held()`: exactly the calls the caller made) vanish between the gateway and
  receive-usage: counted by the gateway, never delivered (what the
  reconciliation must notice; tests/test_reconcile_drift.py).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from contextlib import contextmanager

from .usage_sim import WebhookSender, usage_event

log = logging.getLogger("devstack.gateway")

COUNTER = "gateway_function_invocation_total"
SYSTEM_NAMESPACE = "openfaas-system"
DEFAULT_MEMORY_BYTES = 128 * 1024 * 1024   # the event's memory_bytes (no limits locally)


class InvocationCounter:
    def __init__(self, targets: list[str]):
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter({(t, "200"): 0 for t in targets})

    def count(self, target: str, status: int) -> None:
        with self._lock:
            self._counts[(target, str(status))] += 1

    def exposition(self) -> str:
        with self._lock:
            counts = sorted(self._counts.items())
        lines = [f"# TYPE {COUNTER} counter"]
        lines += [f'{COUNTER}{{function_name="{target}",code="{code}"}} {n}'
                  for (target, code), n in counts]
        return "\n".join(lines) + "\n"


class EventWorker:
    """Batches function_usage events and posts them (a thread flushes every interval)."""

    def __init__(self, url: str, secret: str, *, batch_size: int = 100,
                 flush_interval_s: float = 0.5):
        self.sender = WebhookSender(url, secret)
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._pending: list[dict] = []
        self._drop = 0
        self._held = False                   # no timed flush: a test decides the batches
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()   # batches leave one after another
        self._stop = threading.Event()
        self.sent = self.dropped = 0         # batches
        threading.Thread(target=self._run, daemon=True, name="event-worker").start()

    def record(self, name: str, namespace: str, started_ns: int, duration_ns: int) -> None:
        if namespace == SYSTEM_NAMESPACE:
            return   # as the gateway: its own functions (receive-usage too) are not reported
        with self._lock:
            self._pending.append(usage_event(namespace, name, started_ns, duration_ns,
                                             DEFAULT_MEMORY_BYTES))
            full = len(self._pending) >= self.batch_size
        if full:
            self.flush()

    def drop_next_batch(self) -> None:
        """The next batch is lost on the way to receive-usage (on purpose)."""
        with self._lock:
            self._drop += 1

    @contextmanager
    def held(self):
        """Inside, only flush() sends: every call made in it is one batch of the caller's."""
        with self._lock:
            self._held = True
        self.flush()
        try:
            yield self
        finally:
            with self._lock:
                self._held = False

    def flush(self, timed: bool = False) -> None:
        """Send what is pending now, as one delivery (or lose it, when asked to)."""
        with self._send_lock:
            with self._lock:
                if timed and self._held:
                    return
                batch, self._pending = self._pending, []
                drop = bool(batch) and self._drop > 0
                self._drop -= drop
            if not batch:
                return
            if drop:
                self.dropped += 1
                log.info("event-worker: dropped a batch of %d events on purpose", len(batch))
                return
            for attempt in range(5):   # the event-worker retries a failed delivery
                try:
                    if self.sender.post(batch).status_code < 500:
                        break
                except OSError as exc:
                    log.warning("event-worker: delivery failed: %s", exc)
                time.sleep(0.2 * 2 ** attempt)
            self.sent += 1

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            self.flush(timed=True)

    def stop(self) -> None:
        """Stop flushing; what is pending is lost, as with an event-worker that stops (the
        gateway and receive-usage are stopping too: a last delivery would only be retried)."""
        self._stop.set()
