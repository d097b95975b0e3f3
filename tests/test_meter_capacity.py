"""meter-capacity end to end: the template's server, real PostgreSQL, the real kubernetes
client against the fixture API server, with the clock chosen per call (ALLOW_CLOCK_OVERRIDE)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
import requests
from devstack.kubeapi import FixtureKubeApi
from devstack.kubegen import fixture_cluster, gpu_sharing_nodes, namespace, node

from chargeback.capacity.holdings import Reading, Sample, Tenant
from chargeback.capacity.store import record_tick

from .conftest import ROOT
from .capacity_helpers import FIXTURE_HOLDINGS, H100, T0, rows, tick, unit_seconds


@pytest.fixture
def meter(start_meter):
    return start_meter()


def test_the_first_tick_is_a_baseline_then_each_tick_bills_the_minute_since(meter, database_url):
    first = tick(meter, T0 + timedelta(seconds=7))
    assert first.status_code == 200, first.text
    assert first.json()["slot"] == "2026-10-01T00:00:00Z"
    assert first.json()["billed_seconds"] == 0 and first.json()["samples"] == 0
    second = tick(meter, T0 + timedelta(minutes=1, seconds=2)).json()
    assert (second["recorded"], second["billed_seconds"], second["tenants"]) == (True, 60, 4)
    assert second["nodes"] == {"dedicated": 7, "not_ready": 1}
    assert second["gaps"] == [] and "former-customer" in second["warnings"][0]
    # the baseline opened an interval per holding; an unchanged cluster writes only the tick
    assert first.json()["holdings"] == {"opened": FIXTURE_HOLDINGS, "closed": 0}
    assert second["holdings"] == {"opened": 0, "closed": 0}
    assert unit_seconds(database_url, "helix-ai", "gpu_hours", H100) == 16 * 60
    # tenants were created from the namespace annotations, first seen at the first tick
    assert rows(database_url, "SELECT namespace, display_name, email, plan, currency, first_seen_at"
                              " FROM openfaas_metering.tenants WHERE namespace = 'helix-ai'") == [
        ("helix-ai", "Helix AI Labs", "billing@helix-ai.example", "gpu-dedicated", "USD", T0)]


def test_cron_connectors_empty_body_meters_the_current_minute(start_meter):
    fn = start_meter(ALLOW_CLOCK_OVERRIDE="false")
    r = requests.post(fn.url, data=b"", headers={"X-Topic": "cron-function",
                                                  "X-Connector": "cron-connector"})
    assert r.status_code == 200, r.text
    slot = datetime.fromisoformat(r.json()["slot"].replace("Z", "+00:00"))
    assert abs(datetime.now(timezone.utc) - slot) < timedelta(minutes=2)


def test_the_clock_override_is_refused_unless_explicitly_allowed(start_meter, database_url):
    fn = start_meter(ALLOW_CLOCK_OVERRIDE="false")
    r = tick(fn, T0)
    assert r.status_code == 403
    assert "ALLOW_CLOCK_OVERRIDE" in r.json()["error"]
    assert rows(database_url, "SELECT count(*) FROM openfaas_metering.capacity_ticks") == [(0,)]


def test_a_second_call_for_the_same_minute_records_nothing(meter, database_url):
    tick(meter, T0)
    assert tick(meter, T0 + timedelta(minutes=2, seconds=5)).json()["recorded"] is True
    again = tick(meter, T0 + timedelta(minutes=2, seconds=55)).json()
    assert again == {"slot": "2026-10-01T00:02:00Z", "recorded": False,
                     "reason": "already metered"}
    # a late call for a minute the last tick already covered would bill it twice
    late = tick(meter, T0 + timedelta(minutes=1, seconds=30)).json()
    assert late["recorded"] is False and "a later tick" in late["reason"]
    assert unit_seconds(database_url, "helix-ai", "node_hours") == 2 * 120
    assert rows(database_url, "SELECT count(*) FROM openfaas_metering.capacity_ticks") == [(2,)]


def test_a_gap_is_billed_only_up_to_max_gap_and_kept_for_audit(start_meter, database_url):
    fn = start_meter(MAX_GAP_SECONDS="300")
    tick(fn, T0)
    r = tick(fn, T0 + timedelta(minutes=20)).json()
    assert r["billed_seconds"] == 300
    assert r["gaps"] == [{"from": "2026-10-01T00:00:00Z", "to": "2026-10-01T00:20:00Z",
                          "elapsed_seconds": 1200, "billed_seconds": 300,
                          "unbilled_seconds": 900}]
    assert unit_seconds(database_url, "helix-ai", "gpu_hours", H100) == 16 * 300
    assert rows(database_url, "SELECT slot, unbilled_seconds FROM openfaas_metering.capacity_gaps"
                ) == [(T0 + timedelta(minutes=20), 900)]
    # a missed minute under the cap is billed in full by the next tick: converge
    assert tick(fn, T0 + timedelta(minutes=23)).json()["billed_seconds"] == 180


def test_lists_are_read_page_by_page(start_meter, kube_api, database_url):
    fn = start_meter(KUBE_PAGE_SIZE="2")
    tick(fn, T0)
    r = tick(fn, T0 + timedelta(minutes=1)).json()
    assert r["nodes"]["dedicated"] == 7 and r["tenants"] == 4
    pages = [q for path, q in kube_api.requests if path == "/api/v1/nodes"]
    assert all(q["limit"] == "2" for q in pages)
    assert sum("continue" in q for q in pages) >= 6  # two ticks, 8 labelled nodes, 4 pages each
    assert unit_seconds(database_url, "vision-lab", "node_hours") == 2 * 60
    assert unit_seconds(database_url, "render-farm", "storage_gib_hours", "gp3") == 1524 * 60


def test_concurrent_ticks_from_two_replicas_bill_each_second_once(start_meter, database_url):
    replicas = [start_meter(), start_meter()]
    tick(replicas[0], T0)
    at = [T0 + timedelta(minutes=m, seconds=s) for m in range(1, 7) for s in (1, 31)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: tick(replicas[i % 2], at[i]), range(len(at))))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    recorded = [a.json() for a in answers if a.json()["recorded"]]
    assert 1 <= len(recorded) <= 6
    last = max(datetime.fromisoformat(r["slot"].replace("Z", "+00:00")) for r in recorded)
    billed = sum(r["billed_seconds"] for r in recorded)
    assert billed == (last - T0).total_seconds()
    assert unit_seconds(database_url, "helix-ai", "gpu_hours", H100) == 16 * billed
    same = [T0 + timedelta(minutes=9, seconds=s) for s in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: tick(replicas[i % 2], same[i]).json(), range(8)))
    assert sum(a["recorded"] for a in answers) == 1


def test_api_down_answers_503_and_records_nothing_then_the_next_tick_converges(
        meter, kube_api, database_url):
    tick(meter, T0)
    port = int(kube_api.url.rsplit(":", 1)[1])
    kube_api.stop()
    r = tick(meter, T0 + timedelta(minutes=1))
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert "kubernetes API unavailable, nothing recorded" in r.json()["error"]
    assert rows(database_url, "SELECT count(*) FROM openfaas_metering.capacity_ticks") == [(1,)]
    assert rows(database_url, "SELECT count(*) FROM openfaas_metering.capacity_holdings"
                ) == [(FIXTURE_HOLDINGS,)]  # the baseline's, unchanged since
    back = FixtureKubeApi(port=port).start()
    try:
        assert tick(meter, T0 + timedelta(minutes=2)).json()["billed_seconds"] == 120
    finally:
        back.stop()


def test_api_errors_and_timeouts_answer_503(start_meter, kube_api, database_url):
    fn = start_meter(KUBE_TIMEOUT_SECONDS="1")
    kube_api.fail_status = 500
    assert tick(fn, T0).status_code == 503
    kube_api.fail_status, kube_api.delay_s = None, 1.5
    r = tick(fn, T0)
    assert r.status_code == 503 and "timed out" in r.json()["error"].lower()
    assert rows(database_url, "SELECT count(*) FROM openfaas_metering.capacity_ticks") == [(0,)]


def test_a_403_answers_500_naming_the_missing_permission(meter, kube_api, database_url):
    kube_api.forbidden.add("persistentvolumeclaims")
    r = tick(meter, T0)
    assert r.status_code == 500
    error = r.json()["error"]
    assert "refused to list persistentvolumeclaims (403)" in error
    assert "needs 'list' on persistentvolumeclaims" in error and "rbac.yaml" in error
    assert rows(database_url, "SELECT count(*) FROM openfaas_metering.capacity_ticks") == [(0,)]


def test_a_tenant_appearing_mid_month_is_billed_from_its_first_tick(meter, kube_api,
                                                                    database_url):
    cluster = fixture_cluster()
    session = requests.Session()
    arrival = T0 + timedelta(days=1, hours=12)
    for hour in range(0, 73):
        at = T0 + timedelta(hours=hour)
        if at == arrival:
            cluster["namespaces"].append(namespace("newco", annotations={
                "chargeback/email": "ap@newco.example"}))
            cluster["nodes"].append(node("newco-1", labels={
                "chargeback/tenant": "newco", "node.kubernetes.io/instance-type": "m6i.large"},
                capacity={"cpu": "2", "memory": "8Gi"}))
            kube_api.set_cluster(cluster)
        tick(meter, at, session).raise_for_status()
    # every tick from its arrival (inclusive) to hour 72 bills one minute (MAX_GAP 5 min cap
    # applies to hourly ticks: 300 s each)
    assert unit_seconds(database_url, "newco", "node_hours") == (72 - 36 + 1) * 300
    assert rows(database_url, "SELECT first_seen_at, email FROM openfaas_metering.tenants"
                              " WHERE namespace = 'newco'") == [(arrival, "ap@newco.example")]


def test_a_month_of_ticks_adds_up_to_the_exact_hours(start_meter, database_url):
    fn = start_meter(MAX_GAP_SECONDS="3600")
    session = requests.Session()
    end = datetime(2026, 11, 1, tzinfo=timezone.utc)
    at = T0
    while at <= end:
        assert tick(fn, at, session).status_code == 200
        at += timedelta(hours=1)
    monthly = {(ns, meter, sku, spot): h for ns, period, meter, sku, spot, h in rows(
        database_url, "SELECT namespace, period_start, meter, sku, spot, hours"
                      "  FROM openfaas_metering.capacity_monthly")}
    assert {p for (p,) in rows(database_url, "SELECT DISTINCT period_start"
                                             " FROM openfaas_metering.capacity_monthly")} == {T0}
    month_h = 744
    assert monthly[("helix-ai", "node_hours", "bm.gpu.h100.8", False)] == 2 * month_h
    assert monthly[("helix-ai", "gpu_hours", H100, False)] == 16 * month_h
    assert monthly[("helix-ai", "cpu_core_hours", "", False)] == 192 * month_h
    assert monthly[("helix-ai", "memory_gib_hours", "", False)] == 2048 * month_h
    assert monthly[("helix-ai", "storage_gib_hours", "premium-rwo", False)] == 10240 * month_h
    assert monthly[("render-farm", "node_hours", "g5.12xlarge", True)] == month_h
    assert monthly[("render-farm", "gpu_hours", "nvidia-a10g", True)] == 4 * month_h
    assert monthly[("render-farm", "memory_gib_hours", "", True)] == \
        Decimal("248.5987396240234375") * month_h
    assert monthly[("render-farm", "loadbalancer_hours", "", False)] == month_h
    assert monthly[("vision-lab", "gpu_hours", "NVIDIA-A100-SXM4-80GB/mig-1g.10gb", False)] == \
        4 * month_h
    assert monthly[("vision-lab", "storage_gib_hours", "default", False)] == \
        Decimal("0.125") * month_h
    assert monthly[("webshop", "storage_gib_hours", "standard-rwo", False)] == 10 * month_h
    assert not any(ns == "webshop" and m == "node_hours" for ns, m, _, _ in monthly)


def database_now(database_url) -> datetime:
    return rows(database_url, "SELECT now()")[0][0]


def test_a_slot_ahead_of_the_database_clock_is_refused_and_never_blocks_later_ticks(
        meter, database_url):
    future = database_now(database_url) + timedelta(hours=2)
    r = tick(meter, future)
    assert r.status_code == 400
    assert r.json()["error"].startswith("now: ") and "ahead of the database clock" in \
        r.json()["error"]
    assert rows(database_url, "SELECT count(*) FROM openfaas_metering.capacity_ticks") == [(0,)]
    # cron-connector's empty body meters the database's current minute
    for _ in range(2):
        r = requests.post(meter.url, data=b"", timeout=30)
        assert r.status_code == 200, r.text
    (slot,) = rows(database_url, "SELECT max(slot) FROM openfaas_metering.capacity_ticks")[0]
    assert slot == database_now(database_url).replace(second=0, microsecond=0) or \
        slot == (database_now(database_url) - timedelta(minutes=1)).replace(second=0,
                                                                            microsecond=0)
    assert r.json()["slot"] == slot.isoformat().replace("+00:00", "Z")


def test_concurrent_callers_of_one_minute_read_the_cluster_once(meter, kube_api, database_url):
    tick(meter, T0)
    kube_api.delay_s = 0.3
    kube_api.requests.clear()
    at = T0 + timedelta(minutes=1)
    with ThreadPoolExecutor(4) as pool:
        answers = [a.json() for a in pool.map(lambda s: tick(meter, at + timedelta(seconds=s)),
                                              (1, 2, 3, 4))]
    assert sum(a["recorded"] for a in answers) == 1
    assert {a["reason"] for a in answers if not a["recorded"]} <= {
        "in progress: another call is metering this minute", "already metered"}
    assert [path for path, _ in kube_api.requests].count("/api/v1/namespaces") == 1


def test_an_expired_continue_token_restarts_that_list_once(start_meter, kube_api, database_url):
    fn = start_meter(KUBE_PAGE_SIZE="2")
    tick(fn, T0)
    kube_api.expire_continue = 1
    r = tick(fn, T0 + timedelta(minutes=1))
    assert r.status_code == 200, r.text
    assert r.json()["nodes"]["dedicated"] == 7 and r.json()["tenants"] == 4
    assert unit_seconds(database_url, "render-farm", "storage_gib_hours", "gp3") == 1524 * 60
    kube_api.expire_continue = 2  # expired again after the fresh start: try the next tick
    r = tick(fn, T0 + timedelta(minutes=2))
    assert r.status_code == 503 and "410" in r.json()["error"]
    assert tick(fn, T0 + timedelta(minutes=3)).json()["billed_seconds"] == 120


def test_a_nul_in_an_annotation_is_a_warning_and_the_tick_is_recorded(meter, kube_api,
                                                                        database_url):
    cluster = fixture_cluster()
    cluster["namespaces"].append(namespace("newco", annotations={
        "chargeback/name": "New\x00Co", "chargeback/email": "ap@newco.example",
        "chargeback/locale": "fr-CA"}))
    kube_api.set_cluster(cluster)
    tick(meter, T0)
    r = tick(meter, T0 + timedelta(minutes=1))
    assert r.status_code == 200 and r.json()["recorded"] is True, r.text
    assert any("chargeback/name contains a NUL" in w for w in r.json()["warnings"])
    assert unit_seconds(database_url, "helix-ai", "gpu_hours", H100) == 16 * 60
    assert rows(database_url, "SELECT display_name, email, locale FROM openfaas_metering.tenants"
                              " WHERE namespace = 'newco'") == [(None, "ap@newco.example",
                                                                 "fr-CA")]


def test_shared_gpus_through_the_function_are_billed_once(meter, kube_api, database_url):
    cluster = fixture_cluster()
    cluster["namespaces"].append(namespace("gpu-share"))
    cluster["nodes"] += gpu_sharing_nodes("gpu-share")
    kube_api.set_cluster(cluster)
    tick(meter, T0)
    tick(meter, T0 + timedelta(minutes=1))
    assert dict(rows(database_url, "SELECT sku, unit_seconds FROM openfaas_metering."
                                   "capacity_usage(%s, %s) WHERE meter = 'gpu_hours'"
                                   " AND namespace = 'gpu-share'", T0, T0 + timedelta(hours=1))
                ) == {"Tesla-T4": 4 * 60, "NVIDIA-A100-SXM4-40GB": 2 * 60, "NVIDIA-L4": 2 * 60,
                      "NVIDIA-H100-80GB-HBM3": 60, "NVIDIA-A100-SXM4-80GB/mig-1g.10gb": 7 * 60}


def test_rbac_grants_exactly_the_calls_the_code_makes(meter, kube_api):
    """Every request a tick makes is a cluster-wide list (GET on a collection); the ClusterRole
    grants `list` on exactly those resources: no watch, no get, no pods."""
    import yaml
    tick(meter, T0)
    tick(meter, T0 + timedelta(minutes=1))
    called = {("list", path.rsplit("/", 1)[1]) for path, _ in kube_api.requests}
    documents = list(yaml.safe_load_all((ROOT / "functions/meter-capacity/rbac.yaml").read_text()))
    (role,) = [d for d in documents if d["kind"] == "ClusterRole"]
    granted = {(verb, resource) for rule in role["rules"] for verb in rule["verbs"]
               for resource in rule["resources"]}
    assert all(rule["apiGroups"] == [""] for rule in role["rules"])
    assert granted == called == {("list", "nodes"), ("list", "namespaces"),
                                 ("list", "persistentvolumeclaims"), ("list", "services")}


def test_a_tick_found_ahead_of_the_database_clock_is_voided_and_metering_goes_on(
        meter, database_url):
    """A slot recorded ahead of the database clock (before slots came from it, or a database
    clock that stepped back) would refuse every tick until its time: it is voided instead."""
    tick(meter, T0)
    tick(meter, T0 + timedelta(minutes=1))
    future = database_now(database_url).replace(second=0, microsecond=0) + timedelta(days=1)
    with psycopg.connect(database_url) as conn:
        record_tick(conn, future, Reading((Tenant("helix-ai"),), (
            Sample("helix-ai", "node_hours", "jumped", False, Decimal(5)),), 1, 0, ()), 300)
    r = tick(meter, T0 + timedelta(minutes=2)).json()
    assert (r["recorded"], r["billed_seconds"], r["holdings"]) == (True, 60,
                                                                    {"opened": 0, "closed": 0})
    assert unit_seconds(database_url, "helix-ai", "gpu_hours", H100) == 16 * 120
    assert unit_seconds(database_url, "helix-ai", "node_hours", "jumped") == 0
    assert rows(database_url, "SELECT tick->>'slot', jsonb_array_length(rows), reason"
                              "  FROM openfaas_metering.capacity_voided_ticks") == [
        (future.isoformat(), 1,
         "slot ahead of the database clock: billed time that had not happened")]
