"""Demo section: meters from anywhere, for an "ai-inference" tenant this month.

Its LLM gateway sends token counts as a signed CloudEvents batch (one event sent
twice, stored once), priced per model with graduated tiers (pricebook.yml,
`llm_tokens`). When Debian's `prometheus` is installed, a local Prometheus
scrapes a small exporter that plays the last hours of the cluster's counters:
the tenant's network egress (240 GiB) and two H100s' utilisation (75 % and 50 %
for an hour), and the gateway's invocation counter for its `chat` function
(600 calls), of which the event-worker's webhook delivered 550: meter-capacity's
collection (`chargeback.metrics.collect`) bills egress and GPU-hours, and the
reconciliation aggregate-month's `{"reconcile": ...}` runs (`metrics.drift`)
lists, records and announces the 50 missing. Then the month so far as a dry-run
invoice through aggregate-month.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import requests

from chargeback.core.settings import load
from chargeback.metrics import collect, drift
from chargeback.usage.cloudevents import SIGNATURE_HEADER
from chargeback.usage.webhook import sign

from .demo_adjustments import DemoError, _post
from .prometheus_fixture import Exporter, Prometheus
from .usage_sim import WebhookSender, rfc3339

TENANT = "ai-inference"
GiB = 2**30
STEP_S = 300          # the exporter's samples: one every 5 minutes
MAX_GAP_S = 400       # ... so a 5-minute step is no gap
RECEIVE = "/function/receive-usage.openfaas-system"


def _hour_zero(now: datetime) -> datetime:
    """The UTC hour that began three hours ago (whole, and within Prometheus' reach)."""
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def _token_events(h: datetime) -> list[dict]:
    """gpt-4o: 8 x 1,500,000 = 12,000,000 tokens; gpt-4o-mini: 4 x 500,000 = 2,000,000."""
    calls = [("gpt-4o", 1_500_000)] * 8 + [("gpt-4o-mini", 500_000)] * 4
    return [{"specversion": "1.0", "id": f"demo-{h:%Y%m%d%H}-{i}", "source": "/llm-gateway",
             "type": "com.example.llm.completion", "subject": TENANT,
             "time": rfc3339(int((h + timedelta(minutes=5 + i)).timestamp()) * 10**9),
             "datacontenttype": "application/json",
             "data": {"model": model, "usage": {"tokens": tokens}}}
            for i, (model, tokens) in enumerate(calls)]


def _send_tokens(gateway_url: str, secret: str, h: datetime) -> None:
    events = _token_events(h)
    body = json.dumps(events + events[:1]).encode()   # the first one sent twice
    r = requests.post(f"{gateway_url}{RECEIVE}", data=body, timeout=60, headers={
        "Content-Type": "application/cloudevents-batch+json",
        SIGNATURE_HEADER: sign(body, secret)})
    if r.status_code != 200:
        raise DemoError(f"receive-usage (CloudEvents): {r.status_code} {r.text.strip()[:300]}")
    answer = r.json()
    print(f"CloudEvents batch of {len(events) + 1}: accepted {answer['accepted']}, "
          f"duplicates {answer['duplicates']}, rejected {len(answer['rejected'])}")


def _scripts(h: int) -> dict[str, list[tuple[int, float]]]:
    """Samples at h, h+5 min, ..., h+60 min: the first is hour H-1's (a sample belongs to
    the hour it ends), the other twelve make hour H."""
    steps = range(13)
    return {
        f'container_network_transmit_bytes_total{{namespace="{TENANT}",pod="chat-1"}}':
            [(h + k * STEP_S, k * 20 * GiB) for k in steps],            # 12 x 20 = 240 GiB
        f'DCGM_FI_DEV_GPU_UTIL{{namespace="{TENANT}",gpu="0",modelName="NVIDIA-H100-80GB-HBM3"}}':
            [(h + k * STEP_S, 75) for k in steps],                       # 0.75 GPU-hours
        f'DCGM_FI_DEV_GPU_UTIL{{namespace="{TENANT}",gpu="1",modelName="NVIDIA-H100-80GB-HBM3"}}':
            [(h + k * STEP_S, 50) for k in steps],                       # 0.50 GPU-hours
        f'gateway_function_invocation_total{{function_name="chat.{TENANT}",code="200"}}':
            [(h + k * STEP_S, k * 50) for k in steps],                   # 600 calls
    }


def _webhook_usage(gateway_url: str, secret: str, h: datetime) -> None:
    """The event-worker's deliveries for `chat` in hour H: 550 of the 600 calls (a batch
    of 50 was lost on the way)."""
    start_ns = int((h + timedelta(minutes=1)).timestamp()) * 10**9
    events = [{"event": "function_usage", "namespace": TENANT, "function_name": "chat",
               "started": rfc3339(start_ns + i * 6 * 10**9), "duration": 800_000_000,
               "memory_bytes": 2 * GiB} for i in range(550)]
    r = WebhookSender(f"{gateway_url}{RECEIVE}", secret).post(
        events, delivery_id=f"demo-chat-{h:%Y%m%d%H}")
    if r.status_code != 200:
        raise DemoError(f"receive-usage (webhook): {r.status_code} {r.text.strip()[:300]}")


def _prometheus_part(env, h: datetime, now: datetime) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        print("prometheus is not installed (apt-get install prometheus): egress, GPU "
              "utilisation and the reconciliation are skipped")
        return
    exporter = Exporter(_scripts(int(h.timestamp())))
    directory = Path(tempfile.mkdtemp(prefix="chargeback-demo-prometheus-"))
    prometheus = Prometheus(binary, directory, exporter.address)
    try:
        deadline = time.monotonic() + 60
        while not exporter.played():
            if time.monotonic() > deadline:
                raise DemoError("the local Prometheus did not scrape the exporter in 60 s")
            time.sleep(0.1)
        time.sleep(0.5)   # the last scrape committed to the head
        _webhook_usage(env.gateway_url, env.secret("webhook-secret"), h)
        settings = load({"DATABASE_URL": env.database_url, "GATEWAY_URL": env.gateway_url,
                         "PROMETHEUS_URL": prometheus.url,
                         "PROMETHEUS_MAX_GAP_SECONDS": str(MAX_GAP_S),
                         "PROMETHEUS_BACKFILL_HOURS": "3",
                         "EXCLUDE_NAMESPACES": "openfaas-system"})
        collected = collect.collect(settings, now)["prometheus"]
        print(f"Prometheus at {prometheus.url}: {collected['hours_collected']} meter-hours "
              f"collected, {collected['gaps']} gaps (the series stop after hour "
              f"{h:%H}:00: not billed)")
        report = drift.reconcile_month(settings, f"{h:%Y-%m}", now)
        for row in report["drift"]:
            if row["namespace"] == TENANT:
                print(f"reconciliation: {row['namespace']}/{row['function']} hour "
                      f"{row['hour'][:16]}Z billed {row['billed']}, gateway counted "
                      f"{row['witnessed']}: {row['missing']} missing"
                      f"{' (usage.drift_detected sent)' if row['new'] else ''}")
    finally:
        prometheus.stop()
        exporter.stop()
        shutil.rmtree(directory, ignore_errors=True)


def run(env) -> None:
    now = datetime.now(timezone.utc)
    h = _hour_zero(now)
    with psycopg.connect(env.database_url) as conn:
        conn.execute("""INSERT INTO openfaas_metering.tenants (namespace, plan)
                        VALUES (%s, 'standard') ON CONFLICT (namespace) DO NOTHING""", (TENANT,))
    _send_tokens(env.gateway_url, env.secret("webhook-secret"), h)
    _prometheus_part(env, h, now)
    result = _post(env.gateway_url, env.secret("admin-token").strip(),
                   {"period": f"{h:%Y-%m}", "tenant": TENANT, "dry_run": True})
    for invoice in result["invoices"]:
        print(f"{TENANT}, {result['period']} so far (aggregate-month dry run, "
              f"{invoice['currency']}):")
        for line in invoice["lines"]:
            if line["meter"] in ("llm_tokens", "egress_gib", "gpu_utilisation_hours"):
                print(f"  {line['meter']:<22} {line.get('sku') or '':<22} "
                      f"{line['quantity']:>14} {line['unit']:<10} {Decimal(line['amount']):>9.2f}")
