"""Kubernetes objects -> per-tenant meter quantities (pure: plain dicts in, samples out)."""
from collections import Counter
from decimal import Decimal

import pytest
from devstack.kubegen import (
    fixture_cluster,
    gpu_sharing_nodes,
    namespace,
    node,
    pvc,
    service,
)

from chargeback.capacity.holdings import (
    CPU_CORE_HOURS,
    GPU_HOURS,
    LOADBALANCER_HOURS,
    MEMORY_GIB_HOURS,
    NODE_HOURS,
    STORAGE_GIB_HOURS,
    Rules,
    Sample,
    gpus,
    instance_type,
    is_spot,
    measure,
)

from .capacity_helpers import FIXTURE_HOLDINGS_BY_TENANT

TENANT = "chargeback/tenant"


def _measure(nodes=(), pvcs=(), services=(), namespaces=None, rules=Rules()):
    namespaces = namespaces if namespaces is not None else [namespace("acme")]
    return measure(namespaces, nodes, pvcs, services, rules)


def _units(reading, meter, sku=None, spot=None, ns="acme"):
    return sum((s.units for s in reading.samples
                if s.namespace == ns and s.meter == meter and (sku is None or s.sku == sku)
                and (spot is None or s.spot == spot)), Decimal(0))


@pytest.mark.parametrize("labels, sku", [
    ({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, "NVIDIA-H100-80GB-HBM3"),  # GPU operator
    ({"cloud.google.com/gke-accelerator": "nvidia-l4"}, "nvidia-l4"),                # GKE
    ({"k8s.amazonaws.com/accelerator": "nvidia-a10g"}, "nvidia-a10g"),               # EKS
    ({}, "nvidia.com/gpu"),                                         # unknown: resource name
])
def test_gpu_sku_comes_from_the_provider_label(labels, sku):
    reading = _measure([node("n1", labels={TENANT: "acme", **labels},
                             capacity={"cpu": "8", "memory": "8Gi", "nvidia.com/gpu": "4"})])
    assert [s for s in reading.samples if s.meter == GPU_HOURS] == [
        Sample("acme", GPU_HOURS, sku, False, Decimal(4))]


def test_amd_gpus_are_metered_too():
    assert gpus({}, {"amd.com/gpu": "8", "cpu": "1"}, "n", []) == [("amd.com/gpu", 8)]


def test_shared_gpus_are_billed_once_per_physical_gpu_under_the_product_sku():
    """Time-slicing and MPS, with and without renameByDefault, and a time-sliced MIG profile."""
    reading = _measure(gpu_sharing_nodes("acme"))
    assert {s.sku: s.units for s in reading.samples if s.meter == GPU_HOURS} == {
        "Tesla-T4": 4, "NVIDIA-A100-SXM4-40GB": 2, "NVIDIA-L4": 2, "NVIDIA-H100-80GB-HBM3": 1,
        "NVIDIA-A100-SXM4-80GB/mig-1g.10gb": 7}
    assert reading.warnings == ()


def test_a_shared_gpu_count_that_does_not_divide_by_its_replicas_is_not_billed():
    warnings = []
    labels = {"nvidia.com/gpu.product": "Tesla-T4-SHARED", "nvidia.com/gpu.replicas": "4"}
    assert gpus(labels, {"nvidia.com/gpu": "6"}, "odd", warnings) == []
    assert "6 nvidia.com/gpu advertised is not a whole number of GPUs shared 4 ways" in warnings[0]
    assert gpus({**labels, "nvidia.com/gpu.replicas": "four"}, {"nvidia.com/gpu": "8"}, "bad",
                warnings) == []
    assert "label nvidia.com/gpu.replicas: 'four' is not a Kubernetes quantity" in warnings[1]


def test_mig_profiles_are_their_own_skus():
    reading = _measure([node("mig", labels={TENANT: "acme",
                                            "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                             capacity={"cpu": "8", "memory": "8Gi", "nvidia.com/gpu": "0",
                                       "nvidia.com/mig-1g.10gb": "4",
                                       "nvidia.com/mig-3g.40gb": "1"})])
    held = {s.sku: s.units for s in reading.samples if s.meter == GPU_HOURS}
    assert held == {"NVIDIA-A100-SXM4-80GB/mig-1g.10gb": 4, "NVIDIA-A100-SXM4-80GB/mig-3g.40gb": 1}
    assert gpus({}, {"nvidia.com/mig-2g.20gb": "3"}, "n", []) == [("mig-2g.20gb", 3)]


@pytest.mark.parametrize("label, value", [
    ("karpenter.sh/capacity-type", "spot"),
    ("eks.amazonaws.com/capacityType", "SPOT"),
    ("cloud.google.com/gke-spot", "true"),
    ("cloud.google.com/gke-preemptible", "true"),
    ("kubernetes.azure.com/scalesetpriority", "spot"),
])
def test_spot_is_marked_on_every_node_derived_quantity(label, value):
    reading = _measure([node("n1", labels={TENANT: "acme", label: value,
                                           "nvidia.com/gpu.product": "T4"},
                             capacity={"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"})])
    node_meters = {NODE_HOURS, CPU_CORE_HOURS, MEMORY_GIB_HOURS, GPU_HOURS}
    assert {s.meter for s in reading.samples} == node_meters
    assert all(s.spot for s in reading.samples)


@pytest.mark.parametrize("labels", [{"karpenter.sh/capacity-type": "on-demand"},
                                    {"eks.amazonaws.com/capacityType": "ON_DEMAND"},
                                    {"cloud.google.com/gke-spot": "false"},
                                    {"kubernetes.azure.com/scalesetpriority": "regular"}, {}])
def test_on_demand_nodes_are_not_spot(labels):
    assert not is_spot(labels)


def test_instance_type_falls_back_to_the_beta_label_then_unknown():
    assert instance_type({"node.kubernetes.io/instance-type": "m5.large",
                          "beta.kubernetes.io/instance-type": "old"}) == "m5.large"
    assert instance_type({"beta.kubernetes.io/instance-type": "m4.large"}) == "m4.large"
    assert instance_type({}) == "unknown"


def test_a_dedicated_node_is_billed_at_full_capacity():
    reading = _measure([node("n1", labels={TENANT: "acme",
                                           "node.kubernetes.io/instance-type": "bm.h100"},
                             capacity={"cpu": "96000m", "memory": "1Ti"},
                             allocatable={"cpu": "95", "memory": "1000Gi"})])
    assert _units(reading, NODE_HOURS, "bm.h100") == 1
    assert _units(reading, CPU_CORE_HOURS) == 96
    assert _units(reading, MEMORY_GIB_HOURS) == 1024


def test_a_not_ready_node_is_not_billed():
    reading = _measure([node("up", labels={TENANT: "acme"}, capacity={"cpu": "8", "memory": "8Gi"}),
                        node("down", labels={TENANT: "acme"}, ready=False,
                             capacity={"cpu": "8", "memory": "8Gi"})])
    assert (reading.dedicated_nodes, reading.not_ready_nodes) == (2, 1)
    assert _units(reading, NODE_HOURS) == 1 and _units(reading, CPU_CORE_HOURS) == 8
    no_conditions = node("bare", labels={TENANT: "acme"}, capacity={"cpu": "8"})
    no_conditions["status"].pop("conditions")
    assert _measure([no_conditions]).samples == ()


def test_an_unparseable_quantity_is_skipped_and_reported_not_guessed():
    reading = _measure([node("n1", labels={TENANT: "acme", "nvidia.com/gpu.product": "L4"},
                             capacity={"cpu": "lots", "memory": "8Gi", "nvidia.com/gpu": "1.5"})])
    assert _units(reading, CPU_CORE_HOURS) == 0 and _units(reading, GPU_HOURS) == 0
    assert _units(reading, NODE_HOURS) == 1 and _units(reading, MEMORY_GIB_HOURS) == 8
    assert any("node n1: cpu capacity: 'lots' is not a Kubernetes quantity" in w
               for w in reading.warnings)
    assert any("nvidia.com/gpu capacity: '1.5' is not a whole" in w for w in reading.warnings)


def test_shared_nodes_and_nodes_of_unknown_tenants_are_not_billed():
    reading = _measure([node("shared", labels={}, capacity={"cpu": "8"}),
                        node("orphan", labels={TENANT: "gone"}, capacity={"cpu": "8"})])
    assert reading.samples == () and reading.dedicated_nodes == 0
    assert reading.warnings == ("node orphan: labelled for 'gone', which is not a tenant "
                                "namespace (openfaas: \"1\", not excluded): not billed",)


def test_several_tenant_label_keys_first_one_wins():
    rules = Rules(node_label_keys=("chargeback/tenant", "vcluster.loft.sh/managed-by"))
    reading = _measure([node("v", labels={"vcluster.loft.sh/managed-by": "acme"},
                             capacity={"cpu": "2"})], rules=rules)
    assert _units(reading, NODE_HOURS) == 1


def test_tenants_are_openfaas_namespaces_with_billing_details_from_annotations():
    namespaces = [namespace("acme", annotations={"billing.example/name": "ACME",
                                                 "billing.example/email": "ap@acme.example",
                                                 "billing.example/plan": "pro",
                                                 "billing.example/currency": "eur",
                                                 "billing.example/locale": "de_CH"}),
                  namespace("bad-currency", annotations={"billing.example/currency": "euros",
                                                         "billing.example/locale": "Swiss"}),
                  namespace("openfaas-system"), namespace("kube-system", openfaas=False)]
    reading = _measure(namespaces=namespaces, rules=Rules(annotation_prefix="billing.example/"))
    acme, bad = reading.tenants
    assert (acme.namespace, acme.display_name, acme.email, acme.plan, acme.currency,
            acme.locale) == ("acme", "ACME", "ap@acme.example", "pro", "EUR", "de-CH")
    assert bad.currency is None and "is not a 3-letter ISO 4217 code" in reading.warnings[0]
    assert bad.locale is None and "is not a language tag" in reading.warnings[1]


def test_an_annotation_postgres_cannot_store_is_a_warning_not_a_failed_tick():
    reading = _measure(namespaces=[namespace("acme", annotations={
        "chargeback/name": "ACME\x00 Inc", "chargeback/email": "ap@acme.example",
        "chargeback/plan": "pro\ud800"})])
    (acme,) = reading.tenants
    assert (acme.display_name, acme.email, acme.plan) == (None, "ap@acme.example", None)
    assert "chargeback/name contains a NUL" in reading.warnings[0]
    assert "chargeback/plan contains a NUL or an unpaired surrogate" in reading.warnings[1]


def test_quantities_that_are_unhashable_or_not_exact_are_warnings_and_the_rest_is_billed():
    reading = _measure([node("odd", labels={TENANT: "acme", "nvidia.com/gpu.product": "L4"},
                             capacity={"cpu": ["8"], "memory": "1" * 90 + "Ki",
                                       "nvidia.com/gpu": {"n": 1}})],
                       pvcs=[pvc("big", "acme", "1" * 79 + "9")])
    assert _units(reading, NODE_HOURS) == 1
    assert _units(reading, CPU_CORE_HOURS) == 0 and _units(reading, GPU_HOURS) == 0
    assert _units(reading, MEMORY_GIB_HOURS) == 0 and _units(reading, STORAGE_GIB_HOURS) == 0
    assert len(reading.warnings) == 4 and all("not billed" in w for w in reading.warnings)


def test_storage_is_bound_pvc_capacity_by_storage_class():
    reading = _measure(pvcs=[pvc("a", "acme", "1Ti", storage_class="gp3"),
                             pvc("b", "acme", "131072Ki", storage_class=None),
                             pvc("c", "acme", "10Gi", bound=False),
                             pvc("d", "other", "10Gi")])
    assert _units(reading, STORAGE_GIB_HOURS, "gp3") == 1024
    assert _units(reading, STORAGE_GIB_HOURS, "default") == Decimal("0.125")
    assert _units(reading, STORAGE_GIB_HOURS) == Decimal("1024.125")


def test_each_provisioned_load_balancer_is_billed():
    reading = _measure(services=[service("a", "acme", kind="LoadBalancer", ingress="1.2.3.4"),
                                 service("b", "acme", kind="LoadBalancer", ingress="lb.example"),
                                 service("pending", "acme", kind="LoadBalancer"),
                                 service("internal", "acme")])
    assert _units(reading, LOADBALANCER_HOURS) == 2


def test_the_fixture_cluster_measures_as_documented():
    c = fixture_cluster()
    reading = measure(c["namespaces"], c["nodes"], c["persistentvolumeclaims"], c["services"],
                      Rules())
    assert [t.namespace for t in reading.tenants] == ["helix-ai", "render-farm", "webshop",
                                                      "vision-lab"]
    assert _units(reading, GPU_HOURS, "NVIDIA-H100-80GB-HBM3", ns="helix-ai") == 16
    assert _units(reading, NODE_HOURS, ns="render-farm", spot=True) == 2
    assert _units(reading, LOADBALANCER_HOURS, ns="render-farm") == 1
    assert _units(reading, NODE_HOURS, ns="webshop") == 0
    assert (reading.dedicated_nodes, reading.not_ready_nodes) == (7, 1)
    # the holdings counted by hand in capacity_helpers, tenant by tenant
    assert Counter(s.namespace for s in reading.samples) == FIXTURE_HOLDINGS_BY_TENANT
