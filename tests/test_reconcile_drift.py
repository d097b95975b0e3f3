"""A webhook delivery lost between the gateway and receive-usage, caught by the
reconciliation: the local gateway counts its calls (gateway_function_invocation_total,
scraped by a real Prometheus) and reports them as the event-worker does; one batch is
dropped on purpose; aggregate-month's {"reconcile": "YYYY-MM"} lists the hour, records it
once and fires usage.drift_detected once."""
from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone

import psycopg
import requests
from devstack import stack as stackfile
from devstack.gateway import RetryPolicy
from devstack.pg import free_port

from .conftest import ADMIN, ROOT, WEBHOOK_SECRET
from .prometheus_helpers import Prometheus, prometheus_binary
from .waiting import until
from .webhook_receiver import write_signing_secret

TARGET = "tenant-page.tenant-b"


def _counter(prometheus: Prometheus) -> float | None:
    """The counter's last scraped value, or None before the first scrape."""
    r = requests.get(f"{prometheus.url}/api/v1/query", timeout=5, params={
        "query": f'gateway_function_invocation_total{{function_name="{TARGET}",code="200"}}'})
    result = r.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def _billed(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("""SELECT coalesce(sum(invocations), 0)::int
                                 FROM openfaas_metering.function_usage_hourly
                                WHERE namespace = 'tenant-b'""").fetchone()[0]


def _call(gateway_url: str, times: int) -> None:
    for _ in range(times):
        assert requests.get(f"{gateway_url}/function/{TARGET}", timeout=10).status_code == 200


def test_a_batch_dropped_between_gateway_and_receive_usage_is_listed_recorded_and_announced(
        local_runtime, product_stack, database_url, secrets_dir, tmp_path, receiver):
    binary = prometheus_binary()
    now = datetime.now(timezone.utc)
    if now.minute == 59 and now.second > 20:   # the calls and the scrapes in one UTC hour
        time.sleep(61 - now.second)
    write_signing_secret(secrets_dir)
    hook = receiver()
    gateway_port = free_port()
    (tmp_path / "prometheus").mkdir()
    prometheus = Prometheus(binary, tmp_path / "prometheus", f"127.0.0.1:{gateway_port}")
    try:
        extra = stackfile.load(ROOT / "tests" / "stack.yml", root=ROOT)
        known = {**extra.functions, **product_stack.functions}
        names = ("receive-usage", "aggregate-month", "deliver-webhooks", "tenant-page")
        stack = dataclasses.replace(product_stack, functions={n: known[n] for n in names})
        runtime = local_runtime(
            stack, cron=False, gateway_port=gateway_port, usage_webhook_secret=WEBHOOK_SECRET,
            retry=RetryPolicy(attempts=3, min_wait_s=0.2, max_wait_s=1.0),
            function_env={"DATABASE_URL": database_url, "SECRETS_DIR": str(secrets_dir),
                          "WEBHOOK_URLS": hook.url, "PROMETHEUS_URL": prometheus.url,
                          "RECONCILE_TOLERANCE": "0", "RECONCILE_TOLERANCE_PERCENT": "0"})
        until(lambda: _counter(prometheus) == 0, "the counter's first scrape (0)", timeout_s=30)
        events = runtime.gateway.events
        with events.held():
            _call(runtime.gateway_url, 4)
            events.flush()                    # delivered: 4
            _call(runtime.gateway_url, 3)
            events.drop_next_batch()
            events.flush()                    # lost on the way: 3
            _call(runtime.gateway_url, 2)
            events.flush()                    # delivered: 2
        assert (events.sent, events.dropped) == (2, 1)
        until(lambda: _billed(database_url) == 6, "receive-usage to store 4 + 2 calls")
        until(lambda: _counter(prometheus) == 9, "Prometheus to scrape 4 + 3 + 2 calls")
        hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        url = f"{runtime.gateway_url}/function/aggregate-month.openfaas-system"
        option = {"reconcile": f"{hour:%Y-%m}"}

        assert requests.post(url, json=option, timeout=30).status_code == 401
        first = requests.post(url, json=option, headers=ADMIN, timeout=60)
        assert first.status_code == 200, first.text
        # the gateway counted 9 calls in this hour, receive-usage billed 6: 3 missing
        drift, = first.json()["drift"]
        assert {k: drift[k] for k in ("namespace", "function", "hour", "billed", "witnessed",
                                      "missing", "new")} == {
            "namespace": "tenant-b", "function": "tenant-page", "hour": hour.isoformat(),
            "billed": 6, "witnessed": "9", "missing": "3", "new": True}
        again = requests.post(url, json=option, headers=ADMIN, timeout=60).json()
        assert [d["new"] for d in again["drift"]] == [False]   # listed, not announced again
        with psycopg.connect(database_url) as conn:
            rows = conn.execute("""SELECT namespace, function_name, billed, witnessed
                                     FROM openfaas_metering.reconciliation_drift""").fetchall()
        assert rows == [("tenant-b", "tenant-page", 6, 9)]
        hits = hook.wait_for(lambda hits: any(h.event["type"] == "usage.drift_detected"
                                              for h in hits))
        until(runtime.gateway.idle, "every wake of deliver-webhooks to finish")
        announced = [h.event["data"] for h in hook.accepted()
                     if h.event["type"] == "usage.drift_detected"]
        assert len(hits) >= 1 and announced == [{
            "tenant": "tenant-b", "function": "tenant-page", "hour": hour.isoformat(),
            "billed": 6, "witnessed": "9", "missing": "3", "tolerance": 0,
            "tolerance_percent": "0"}]
    finally:
        prometheus.stop()


def test_the_reconcile_option_names_what_is_wrong(local_runtime, product_stack, database_url,
                                                  secrets_dir):
    stack = dataclasses.replace(product_stack, functions={
        "aggregate-month": product_stack.functions["aggregate-month"]})
    runtime = local_runtime(stack, cron=False, function_env={
        "DATABASE_URL": database_url, "SECRETS_DIR": str(secrets_dir)})
    url = f"{runtime.gateway_url}/function/aggregate-month.openfaas-system"
    for body, status, reason in (
            ({"reconcile": "2026-13"}, 400, 'reconcile: expected a month such as "2026-09"'),
            ({"reconcile": 202609}, 400, 'reconcile: expected a month such as "2026-09"'),
            ({"reconcile": "9999-12"}, 400, 'reconcile: expected a month such as "2026-09"'),
            ({"reconcile": "2026-09", "tenant": "a"}, 400, "tenant: not allowed with reconcile"),
            ({"reconcile": "2026-09"}, 503, "misconfigured: no PROMETHEUS_URL: the "
                                            "reconciliation reads the gateway's counter from "
                                            "Prometheus")):
        r = requests.post(url, json=body, headers=ADMIN, timeout=30)
        assert (r.status_code, r.json()["error"]) == (status, reason)
