"""Kubernetes objects shaped like real API output: builders, the fixture cluster, large clusters.

`node()`, `namespace()`, `pvc()` and `service()` build objects with the
fields and noise a real API server returns (uids, conditions, addresses,
nodeInfo, images), so decoding costs what it costs on a real cluster.
`fixture_cluster()` is the cluster in fixtures/cluster/ (rewrite it with
`python -m devstack.kubegen --write-fixtures`); `generate()` makes large ones
for scripts/bench/meter.
"""
from __future__ import annotations

import argparse
import random
import uuid

CREATED = "2026-09-01T00:00:00Z"
_rng_uuid = random.Random(0)


def _uid() -> str:
    return str(uuid.UUID(int=_rng_uuid.getrandbits(128), version=4))


def _meta(name: str, *, namespace: str | None = None, labels: dict | None = None,
          annotations: dict | None = None) -> dict:
    meta = {"name": name, "uid": _uid(), "resourceVersion": str(_rng_uuid.randint(1000, 99999)),
            "creationTimestamp": CREATED}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return meta


def _condition(kind: str, status: str, reason: str, message: str) -> dict:
    return {"type": kind, "status": status, "lastHeartbeatTime": "2026-10-01T00:00:00Z",
            "lastTransitionTime": CREATED, "reason": reason, "message": message}


def node(name: str, *, labels: dict, capacity: dict, ready: bool = True,
         allocatable: dict | None = None, images: int = 8) -> dict:
    """A Node as `kubectl get node -o json` shows it."""
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
              "kubernetes.io/arch": "amd64", **labels}
    conditions = [
        _condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                   "kubelet has sufficient memory available"),
        _condition("DiskPressure", "False", "KubeletHasNoDiskPressure",
                   "kubelet has no disk pressure"),
        _condition("PIDPressure", "False", "KubeletHasSufficientPID",
                   "kubelet has sufficient PID available"),
        _condition("Ready", "True", "KubeletReady", "kubelet is posting ready status")
        if ready else
        _condition("Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."),
    ]
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": _meta(name, labels=labels, annotations={
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true"}),
        "spec": {"providerID": f"fixture:///{name}",
                 **({} if ready else {"taints": [{"key": "node.kubernetes.io/unreachable",
                                                  "effect": "NoSchedule"}]})},
        "status": {
            "capacity": {"ephemeral-storage": "507930276Ki", "hugepages-1Gi": "0",
                         "hugepages-2Mi": "0", "pods": "110", **capacity},
            "allocatable": allocatable or {"ephemeral-storage": "468104029578",
                                           "pods": "110", **capacity},
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                          {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": _uid().replace("-", ""),
                         "systemUUID": _uid(), "bootID": _uid(),
                         "kernelVersion": "6.1.0-25-cloud-amd64",
                         "osImage": "Ubuntu 22.04.4 LTS", "containerRuntimeVersion":
                         "containerd://1.7.20", "kubeletVersion": "v1.31.0",
                         "kubeProxyVersion": "v1.31.0", "operatingSystem": "linux",
                         "architecture": "amd64"},
            "images": [{"names": [f"registry.example/img{i}@sha256:{i:064x}",
                                  f"registry.example/img{i}:v1.{i}"],
                        "sizeBytes": 10_000_000 + i} for i in range(images)],
        },
    }


def namespace(name: str, *, openfaas: bool = True, annotations: dict | None = None) -> dict:
    notes = {"openfaas": "1"} if openfaas else {}
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": _meta(name, labels={"kubernetes.io/metadata.name": name},
                              annotations={**notes, **(annotations or {})} or None),
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def pvc(name: str, ns: str, size: str, *, storage_class: str | None = "standard",
        bound: bool = True) -> dict:
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}},
            "volumeMode": "Filesystem"}
    if storage_class:
        spec["storageClassName"] = storage_class
    if bound:
        spec["volumeName"] = f"pvc-{_uid()}"
    status = {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
              "capacity": {"storage": size}} if bound else {"phase": "Pending"}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(name, namespace=ns, annotations={
                "pv.kubernetes.io/bind-completed": "yes"} if bound else None),
            "spec": spec, "status": status}


def service(name: str, ns: str, *, kind: str = "ClusterIP", ingress: str | None = None) -> dict:
    spec = {"type": kind, "selector": {"app": name}, "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"], "ports": [{"name": "http", "protocol": "TCP",
                                                    "port": 8080, "targetPort": 8080}],
            "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}
    status: dict = {"loadBalancer": {}}
    if ingress:
        status["loadBalancer"] = {"ingress": [{"hostname": ingress}]}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(name, namespace=ns, labels={"app": name}), "spec": spec,
            "status": status}


def fixture_cluster() -> dict[str, list[dict]]:
    """The cluster scripts/up, the demo and the tests serve (fixtures/cluster/).

    helix-ai: dedicated 8x H100 nodes (NVIDIA GPU operator labels), one of them
    NotReady; render-farm: EKS and Karpenter spot nodes, PVCs, a LoadBalancer;
    webshop: shared nodes only (one small PVC, one LoadBalancer still pending);
    vision-lab: GKE spot L4 and a MIG-partitioned A100. Quantities use the odd
    spellings real clusters produce (96000m, 1Ti, 1073741824Ki, 1e3, 131072Ki).
    """
    t = "chargeback/tenant"
    nodes = [
        node("gpu-h100-a", labels={t: "helix-ai", "node.kubernetes.io/instance-type":
                                   "bm.gpu.h100.8", "nvidia.com/gpu.product":
                                   "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"},
             capacity={"cpu": "96", "memory": "1Ti", "nvidia.com/gpu": "8"}),
        node("gpu-h100-b", labels={t: "helix-ai", "node.kubernetes.io/instance-type":
                                   "bm.gpu.h100.8", "nvidia.com/gpu.product":
                                   "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"},
             capacity={"cpu": "96000m", "memory": "1073741824Ki", "nvidia.com/gpu": "8"}),
        node("gpu-h100-c", ready=False,
             labels={t: "helix-ai", "node.kubernetes.io/instance-type": "bm.gpu.h100.8",
                     "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
             capacity={"cpu": "96", "memory": "1Ti", "nvidia.com/gpu": "8"}),
        node("ip-10-0-1-23.ec2.internal",
             labels={t: "render-farm", "node.kubernetes.io/instance-type": "g5.12xlarge",
                     "eks.amazonaws.com/capacityType": "SPOT",
                     "k8s.amazonaws.com/accelerator": "nvidia-a10g",
                     "topology.kubernetes.io/zone": "us-east-1a"},
             capacity={"cpu": "48", "memory": "195784208Ki", "nvidia.com/gpu": "4"}),
        node("ip-10-0-2-45.ec2.internal",
             labels={t: "render-farm", "beta.kubernetes.io/instance-type": "c6i.8xlarge",
                     "karpenter.sh/capacity-type": "spot", "karpenter.sh/nodepool": "render"},
             capacity={"cpu": "32", "memory": "64890464Ki"}),
        node("gke-vision-l4-spot-1",
             labels={t: "vision-lab", "node.kubernetes.io/instance-type": "g2-standard-24",
                     "cloud.google.com/gke-accelerator": "nvidia-l4",
                     "cloud.google.com/gke-spot": "true"},
             capacity={"cpu": "24", "memory": "98304Mi", "nvidia.com/gpu": "2"}),
        node("gpu-a100-mig-1",
             labels={t: "vision-lab", "node.kubernetes.io/instance-type": "a2-ultragpu-1g",
                     "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
                     "nvidia.com/mig.strategy": "mixed"},
             capacity={"cpu": "12", "memory": "170Gi", "nvidia.com/gpu": "0",
                       "nvidia.com/mig-1g.10gb": "4", "nvidia.com/mig-3g.40gb": "1"}),
        node("gke-shared-pool-1", labels={"node.kubernetes.io/instance-type": "e2-standard-8",
                                          "cloud.google.com/gke-nodepool": "shared"},
             capacity={"cpu": "8", "memory": "32Gi"}),
        node("gke-shared-pool-2", labels={"node.kubernetes.io/instance-type": "e2-standard-8",
                                          "cloud.google.com/gke-nodepool": "shared"},
             capacity={"cpu": "8", "memory": "32Gi"}),
        node("gpu-spare-1", labels={t: "former-customer",
                                    "node.kubernetes.io/instance-type": "bm.gpu.h100.8"},
             capacity={"cpu": "96", "memory": "1Ti", "nvidia.com/gpu": "8"}),
    ]
    namespaces = [
        namespace("default", openfaas=False), namespace("kube-system", openfaas=False),
        namespace("openfaas", openfaas=False), namespace("openfaas-system"),
        namespace("helix-ai", annotations={"chargeback/name": "Helix AI Labs",
                                           "chargeback/email": "billing@helix-ai.example",
                                           "chargeback/plan": "gpu-dedicated",
                                           "chargeback/currency": "USD",
                                           "chargeback/address-street": "500 Howard Street",
                                           "chargeback/address-postcode": "94105",
                                           "chargeback/address-city": "San Francisco",
                                           "chargeback/address-country": "US"}),
        namespace("render-farm", annotations={"chargeback/name": "Render Farm Ltd",
                                              "chargeback/email": "ap@render-farm.example",
                                              "chargeback/plan": "spot",
                                              "chargeback/currency": "EUR",
                                              "chargeback/address-street": "Schanzenstraße 12",
                                              "chargeback/address-postcode": "20357",
                                              "chargeback/address-city": "Hamburg",
                                              "chargeback/address-country": "DE",
                                              "chargeback/tax-id": "DE282741168",
                                              "chargeback/einvoice": "ubl",
                                              "chargeback/buyer-reference": "PO-2026-4711"}),
        namespace("webshop", annotations={"chargeback/name": "Webshop GmbH",
                                          "chargeback/email": "finance@webshop.example",
                                          "chargeback/plan": "functions",
                                          "chargeback/address":
                                              "Königsallee 20\\n40212 Düsseldorf\\nDeutschland",
                                          "chargeback/tax-id": "DE129273398"}),
        namespace("vision-lab", annotations={"chargeback/name": "Vision Lab",
                                             "chargeback/email": "ops@vision-lab.example"}),
    ]
    pvcs = [
        pvc("frames", "render-farm", "1Ti", storage_class="gp3"),
        pvc("cache", "render-farm", "500Gi", storage_class="gp3"),
        pvc("scratch", "render-farm", "1e3", storage_class="gp3", bound=False),
        pvc("checkpoints", "helix-ai", "10Ti", storage_class="premium-rwo"),
        pvc("uploads", "webshop", "10Gi", storage_class="standard-rwo"),
        pvc("labels", "vision-lab", "131072Ki", storage_class=None),
        pvc("prometheus", "kube-system", "100Gi"),
    ]
    services = [
        service("render-api", "render-farm", kind="LoadBalancer",
                ingress="a1b2c3-1234.elb.us-east-1.amazonaws.com"),
        service("render-queue", "render-farm"),
        service("storefront", "webshop", kind="LoadBalancer"),  # pending: no address yet
        service("gateway-external", "openfaas", kind="LoadBalancer", ingress="34.1.2.3"),
    ]
    return {"nodes": nodes, "namespaces": namespaces, "persistentvolumeclaims": pvcs,
            "services": services}


def gpu_sharing_nodes(tenant: str) -> list[dict]:
    """Nodes whose GPUs are shared, labelled as the NVIDIA GPU operator labels them
    (gpu-feature-discovery; docs "Time-Slicing GPUs in Kubernetes" and "Multi-Process
    Service in Kubernetes"): each advertises GPUs x replicas, as nvidia.com/gpu with the
    product suffixed -SHARED, or with renameByDefault as nvidia.com/gpu.shared (and
    nvidia.com/gpu 0) with the product unchanged. Physical GPUs per node, as billed:
    4 T4, 2 A100-40GB, 2 L4, 1 H100, 7 A100-80GB MIG 1g.10gb."""
    t = "chargeback/tenant"

    def shared(name, product, count, replicas, strategy, capacity, **labels):
        return node(name, labels={t: tenant, "node.kubernetes.io/instance-type": "gpu-shared",
                                  "nvidia.com/gpu.product": product,
                                  "nvidia.com/gpu.count": str(count),
                                  "nvidia.com/gpu.replicas": str(replicas),
                                  "nvidia.com/gpu.sharing-strategy": strategy, **labels},
                    capacity={"cpu": "16", "memory": "64Gi", **capacity})

    return [
        shared("ts-t4", "Tesla-T4-SHARED", 4, 4, "time-slicing", {"nvidia.com/gpu": "16"}),
        shared("mps-a100", "NVIDIA-A100-SXM4-40GB-SHARED", 2, 8, "mps", {"nvidia.com/gpu": "16"}),
        shared("ts-renamed-l4", "NVIDIA-L4", 2, 3, "time-slicing",
               {"nvidia.com/gpu": "0", "nvidia.com/gpu.shared": "6"}),
        shared("mps-renamed-h100", "NVIDIA-H100-80GB-HBM3", 1, 4, "mps",
               {"nvidia.com/gpu": "0", "nvidia.com/gpu.shared": "4"}),
        shared("ts-mig-a100", "NVIDIA-A100-SXM4-80GB", 1, 1, "time-slicing",
               {"nvidia.com/gpu": "0", "nvidia.com/mig-1g.10gb": "14"},
               **{"nvidia.com/mig.strategy": "mixed", "nvidia.com/mig-1g.10gb.replicas": "2"}),
    ]


_GPU_SKUS = [  # (instance type, product label key, product, gpus, cpu, memory)
    ("p5.48xlarge", "k8s.amazonaws.com/accelerator", "nvidia-h100", "8", "192", "2097152Mi"),
    ("a3-highgpu-8g", "cloud.google.com/gke-accelerator", "nvidia-h100-80gb", "8", "208",
     "1922Gi"),
    ("bm.gpu.a100.8", "nvidia.com/gpu.product", "NVIDIA-A100-SXM4-80GB", "8", "128", "2Ti"),
    ("g2-standard-24", "cloud.google.com/gke-accelerator", "nvidia-l4", "2", "24", "98304Mi"),
]
_SPOT = [("karpenter.sh/capacity-type", "spot"), ("eks.amazonaws.com/capacityType", "SPOT"),
         ("cloud.google.com/gke-spot", "true"), ("kubernetes.azure.com/scalesetpriority", "spot")]


def generate(*, nodes: int = 5000, namespaces: int = 2000, pvcs: int = 20000,
             load_balancers: int = 1000, seed: int = 1) -> dict[str, list[dict]]:
    """A large cluster: most nodes dedicated (a fifth with GPUs, a tenth spot, 1% NotReady),
    9 in 10 namespaces tenants, PVCs and LoadBalancers spread over the tenants,
    plus one ClusterIP Service per namespace."""
    rng = random.Random(seed)
    tenant_names = [f"tenant-{i:05d}" for i in range(namespaces * 9 // 10)]
    ns_objects = [namespace(n, annotations={"chargeback/email": f"billing@{n}.example",
                                            "chargeback/plan": rng.choice(["std", "gpu"])})
                  for n in tenant_names]
    ns_objects += [namespace(f"system-{i:05d}", openfaas=False)
                   for i in range(namespaces - len(tenant_names))]
    node_objects = []
    for i in range(nodes):
        labels: dict[str, str] = {"topology.kubernetes.io/zone": rng.choice("abc")}
        capacity = {"cpu": rng.choice(["16", "32", "64000m"]),
                    "memory": rng.choice(["65536Mi", "131072Mi", "256Gi", "527958044Ki"])}
        labels["node.kubernetes.io/instance-type"] = rng.choice(["m6i.4xlarge", "c6i.8xlarge",
                                                                 "n2-standard-64"])
        if i % 5 == 0:
            itype, key, product, gpus, cpu, memory = rng.choice(_GPU_SKUS)
            labels.update({"node.kubernetes.io/instance-type": itype, key: product})
            capacity = {"cpu": cpu, "memory": memory, "nvidia.com/gpu": gpus}
        if i % 10 == 3:
            key, value = rng.choice(_SPOT)
            labels[key] = value
        if i % 8 != 7:  # 7 in 8 nodes dedicated, the rest a shared pool
            labels["chargeback/tenant"] = rng.choice(tenant_names)
        node_objects.append(node(f"node-{i:05d}", labels=labels, capacity=capacity,
                                 ready=i % 100 != 42))
    pvc_objects = [pvc(f"data-{i:05d}", rng.choice(tenant_names),
                       rng.choice(["10Gi", "100Gi", "1Ti", "500G", "20971520Ki"]),
                       storage_class=rng.choice(["gp3", "premium-rwo", "standard", None]),
                       bound=i % 50 != 0)
                   for i in range(pvcs)]
    services = [service(f"lb-{i:05d}", rng.choice(tenant_names), kind="LoadBalancer",
                        ingress=f"lb-{i:05d}.elb.example.com") for i in range(load_balancers)]
    services += [service("gateway", n["metadata"]["name"]) for n in ns_objects]
    return {"nodes": node_objects, "namespaces": ns_objects, "persistentvolumeclaims": pvc_objects,
            "services": services}


def main(argv: list[str] | None = None) -> int:
    from .kubeapi import FIXTURES, write_dir
    parser = argparse.ArgumentParser(prog="python -m devstack.kubegen")
    parser.add_argument("--write-fixtures", action="store_true",
                        help=f"rewrite {FIXTURES} from fixture_cluster()")
    args = parser.parse_args(argv)
    if args.write_fixtures:
        print(write_dir(fixture_cluster(), FIXTURES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
