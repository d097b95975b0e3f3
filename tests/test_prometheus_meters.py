"""Meters read from a real Prometheus (egress, GPU utilisation) and the reconciliation of
billed invocations against the gateway's counter: counters that grow, reset and stop,
and scrape gaps that are reported and billed as nothing."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from chargeback.core.meters import EGRESS_GIB, GPU_UTILISATION_HOURS
from chargeback.metrics import collect, drift, reconcile
from chargeback.metrics.series import counter_increase

from .billing_helpers import BOOK, close, event, on_plan, send, settings_for
from .prometheus_helpers import serve
from .usage_helpers import query

G = 2**30
STEP = 300   # seconds between the scripted samples
GAP = 400    # PROMETHEUS_MAX_GAP_SECONDS in these tests
BOOK_WITH_PROMETHEUS = BOOK.replace("""      gb_seconds:
        "*": {unit_price: "0.001"}""", """      gb_seconds:
        "*": {unit_price: "0.001"}
      egress_gib:
        "*": {unit_price: "0.09"}
      gpu_utilisation_hours:
        NVIDIA-H100: {unit_price: "2.00"}""", 1)


def hour_zero() -> int:
    """The start of the UTC hour three hours ago, in unix seconds: hours H and H+1 are over."""
    now = int(datetime.now(timezone.utc).timestamp())
    return now - now % 3600 - 3 * 3600


def egress_script(h: int) -> list[tuple[int, float]]:
    """One pod's bytes sent. Hour H: +1 GiB every 5 minutes, but the exporter restarts at
    H+30m (the counter drops to 0.5 GiB). Hour H+1: no sample for 15 minutes (a gap),
    three more, then the exporter stops."""
    out = [(h - STEP, 0)] + [(h + k * STEP, (k + 1) * G) for k in range(0, 6)]
    out += [(h + k * STEP, G // 2 + (k - 6) * G) for k in range(6, 13)]
    out += [(h + 3600 + 900, 9.5 * G), (h + 3600 + 1200, 10.5 * G),
            (h + 3600 + 1500, 11.5 * G)]
    return out


def gpu_script(h: int) -> list[tuple[int, float]]:
    """One H100's utilisation: 50 % until H+30m, then 100 %, until H+1h05m."""
    return [(h + k * STEP, 50 if k < 6 else 100) for k in range(-1, 14)]


def test_egress_and_gpu_utilisation_are_billed_from_what_prometheus_scraped(
        tmp_path, database_url):
    h = hour_zero()
    exporter, prometheus = serve(tmp_path, {
        'container_network_transmit_bytes_total{namespace="ai-inference",pod="p1"}':
            egress_script(h),
        'container_network_transmit_bytes_total{namespace="openfaas-system",pod="gw"}':
            [(h + k * STEP, k * G) for k in range(0, 13)],   # excluded: never billed
        'DCGM_FI_DEV_GPU_UTIL{namespace="ai-inference",gpu="0",modelName="NVIDIA-H100"}':
            gpu_script(h)})
    try:
        settings = settings_for(database_url, tmp_path, BOOK_WITH_PROMETHEUS,
                                PROMETHEUS_URL=prometheus.url,
                                PROMETHEUS_MAX_GAP_SECONDS=str(GAP),
                                PROMETHEUS_BACKFILL_HOURS="2",
                                EXCLUDE_NAMESPACES="openfaas-system")
        on_plan(settings, "ai-inference", "standard")
        start = datetime.fromtimestamp(h, timezone.utc)
        now = start + timedelta(hours=2, seconds=GAP)   # hours H and H+1 are due
        assert collect.collect(settings, now)["prometheus"]["hours_collected"] == 4
        again = collect.collect(settings, now)  # idempotent per hour
        assert again["prometheus"]["hours_collected"] == 0
    finally:
        prometheus.stop()
        exporter.stop()
    rows = query(database_url, """SELECT meter, extract(epoch FROM hour_start)::bigint - %s,
                                         namespace, sku, quantity
                                    FROM openfaas_metering.prometheus_usage ORDER BY 1, 2""",
                 (h,))
    # egress, hour H: five steps of 1 GiB, the reset counts the 0.5 GiB it reached,
    # six more steps: 11.5 GiB. Hour H+1: the 15-minute hole is not bridged (the 3 GiB
    # across it are not billed), then 2 steps: 2 GiB.
    # GPU, hour H: 30 min at 50 % + 30 min at 100 % = 0.75 GPU-hours; hour H+1:
    # 5 min at 100 % (to the last sample at H+1h05m) = 300 / 3600 = 0.083333333333.
    assert rows == [
        (EGRESS_GIB, 0, "ai-inference", "", Decimal("11.5")),
        (EGRESS_GIB, 3600, "ai-inference", "", Decimal(2)),
        (GPU_UTILISATION_HOURS, 0, "ai-inference", "NVIDIA-H100", Decimal("0.75")),
        (GPU_UTILISATION_HOURS, 3600, "ai-inference", "NVIDIA-H100",
         Decimal("0.083333333333"))]
    gaps = dict(query(database_url, """SELECT meter || '@' || (extract(epoch FROM hour_start)
                                              ::bigint - %s), gaps
                                         FROM openfaas_metering.prometheus_hours""", (h,)))
    # H+1's egress: the hole after H+1h and the stop after H+1h25m (> 400 s before the end)
    assert [(g["after"], g["before"]) for g in gaps[f"{EGRESS_GIB}@3600"]] == [
        (str(h + 3600), str(h + 4500)), (str(h + 5100), None)]
    assert gaps[f"{EGRESS_GIB}@0"] == []
    # priced by the price book: 13.5 GiB x 0.09 = 1.215 -> 1.22;
    # 0.833333333333 GPU-hours x 2.00 = 1.666666666666 -> 1.67
    invoice, = close(settings, now=datetime.now(timezone.utc), period=f"{start:%Y-%m}",
                     dry_run=True)["invoices"]
    assert invoice["reasons"] == []
    lines = {line["meter"]: (Decimal(line["quantity"]), line["unit"], Decimal(line["amount"]))
             for line in invoice["lines"]}
    assert lines == {EGRESS_GIB: (Decimal("13.5"), "GiB", Decimal("1.22")),
                     GPU_UTILISATION_HOURS: (Decimal("0.833333333333"), "GPU-hours",
                                             Decimal("1.67"))}


def test_a_lost_webhook_delivery_shows_up_as_drift_against_the_gateways_counter(
        tmp_path, database_url, monkeypatch, capsys):
    h = hour_zero()
    ok = 'gateway_function_invocation_total{function_name="chat.ai-inference",code="200"}'
    failed = 'gateway_function_invocation_total{function_name="chat.ai-inference",code="500"}'
    # code 200: +10 per 5 minutes; the gateway restarts at H+1h30m (the counter drops to 5)
    script_ok = [(h + k * STEP, 10 * (k + 1)) for k in range(-1, 18)]
    script_ok += [(h + k * STEP, 5 + 10 * (k - 18)) for k in range(18, 25)]
    script_failed = [(h + k * STEP, k + 1) for k in range(-1, 25)]   # +1 per 5 minutes
    exporter, prometheus = serve(tmp_path, {ok: script_ok, failed: script_failed})
    try:
        settings = settings_for(database_url, tmp_path, PROMETHEUS_URL=prometheus.url,
                                PROMETHEUS_MAX_GAP_SECONDS=str(GAP),
                                PROMETHEUS_BACKFILL_HOURS="2", RECONCILE_TOLERANCE="2",
                                RECONCILE_TOLERANCE_PERCENT="0")
        start = datetime.fromtimestamp(h, timezone.utc)
        # the counter in hour H: 12 steps x (10 + 1) = 132; in H+1: 11 steps of 10, the
        # reset counts 5, plus 12 x 1 = 127. The webhook delivered 132 in H, and in H+1
        # one delivery of 27 was lost on the way: 100.
        for hour, count in ((0, 132), (1, 100)):
            at = start + timedelta(hours=hour, minutes=1)
            send(settings, [event("ai-inference", f"{at + timedelta(seconds=i):%Y-%m-%dT%H:%M:%S}Z",
                                  1000, function_name="chat") for i in range(count)])
        report = reconcile.reconcile(settings, start, start + timedelta(hours=2), tolerance=2)
        assert report["drift"] == [{
            "namespace": "ai-inference", "function": "chat",
            "hour": (start + timedelta(hours=1)).isoformat(), "billed": 100,
            "witnessed": "127", "missing": "27"}]
        # meter-capacity's hourly part: hours H and H+1 are complete, each reconciled
        # once; H+1's drift recorded and announced once, whatever runs again
        due = start + timedelta(hours=2, seconds=GAP)
        assert drift.reconcile_due(settings, due) == {
            "reconciliation": {"hours_reconciled": 2, "drift_detected": 1}}
        assert drift.reconcile_due(settings, due) == {
            "reconciliation": {"hours_reconciled": 0, "drift_detected": 0}}
        month = drift.reconcile_month(settings, f"{start + timedelta(hours=1):%Y-%m}", due)
        # the operator's option reads the whole month, so also the hour before H, which
        # the backfill of 2 hours left out: a sample at an hour's end is that hour's, so
        # the +10 and +1 at H exactly are H-1's, with nothing billed there: new
        before = start - timedelta(hours=1)
        same_month = f"{before:%Y-%m}" == month["period"]   # not on the 1st, 03:00-04:00
        assert [(d["hour"], d["missing"], d["new"]) for d in month["drift"]] == [
            (before.isoformat(), "11", True)] * same_month + [
            ((start + timedelta(hours=1)).isoformat(), "27", False)]
        assert query(database_url, """SELECT data->>'missing'
                                        FROM openfaas_metering.webhook_events
                                       WHERE type = 'usage.drift_detected'
                                       ORDER BY data->>'hour'""") == [("11",)] * same_month + [("27",)]
        # the same from the command line; it exits 1 while there is drift
        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("PROMETHEUS_URL", prometheus.url)
        monkeypatch.setenv("PROMETHEUS_MAX_GAP_SECONDS", str(GAP))
        assert reconcile.main(["--from", start.isoformat(), "--to",
                               (start + timedelta(hours=2)).isoformat(),
                               "--tolerance-percent", "25"]) == 0   # 27 < 25 % of 127
        assert json.loads(capsys.readouterr().out)["drift"] == []
    finally:
        prometheus.stop()
        exporter.stop()


@pytest.mark.parametrize("samples, end, expected, gaps", [
    # a reset: 5 -> 2 counts the 2 the restarted counter reached: 5 + 2 + 2
    ([(0, 0), (60, 5), (120, 2), (180, 4)], 180, 9, 0),
    # ... and a series that stops 480 s before the window's end is reported
    ([(0, 0), (60, 5), (120, 2), (180, 4)], 660, 9, 1),
    # a hole wider than the allowed gap is not bridged, and reported: 5 + 2
    ([(0, 0), (60, 5), (600, 50), (660, 52)], 660, 7, 1),
])
def test_a_counter_is_never_extrapolated(samples, end, expected, gaps):
    increase, holes = counter_increase([(Decimal(t), Decimal(v)) for t, v in samples],
                                       Decimal(0), Decimal(end), Decimal(120))
    assert (increase, len(holes)) == (Decimal(expected), gaps)
