"""What each tenant holds in the cluster: Kubernetes objects -> meter quantities. Pure.

Input is the API's own JSON (namespaces, nodes, PersistentVolumeClaims,
Services as plain dicts); output is one `Sample` per tenant, meter, SKU and
spot flag, in units held at the moment of the tick (nodes, cores, GiB, GPUs,
load balancers). The tick multiplies them by the seconds it bills.

Errors go in the customer's favour: a node that is not Ready is not billed, a
quantity that cannot be parsed is skipped with a warning, never guessed.
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from chargeback.capacity.quantity import QuantityError, bytes_to_gib, parse_quantity
from chargeback.core.meters import (
    CPU_CORE_HOURS,
    GPU_HOURS,
    LOADBALANCER_HOURS,
    MEMORY_GIB_HOURS,
    NODE_HOURS,
    STORAGE_GIB_HOURS,
)

INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
GPU_PRODUCT_LABELS = ("nvidia.com/gpu.product",            # NVIDIA GPU operator
                      "cloud.google.com/gke-accelerator",  # GKE
                      "k8s.amazonaws.com/accelerator")     # EKS
GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu")
_MIG_RESOURCE = re.compile(r"^nvidia\.com/mig-(?P<profile>.+)$")
# GPU sharing (NVIDIA GPU operator, time-slicing or MPS): the device plugin
# advertises each physical GPU `replicas` times, as <resource> or, with
# renameByDefault, as <resource>.shared; GPU feature discovery labels the node
# nvidia.com/<resource-name>.replicas, nvidia.com/gpu.count (physical GPUs),
# nvidia.com/gpu.sharing-strategy (none, time-slicing, mps) and, without
# renameByDefault, suffixes the product label with -SHARED.
SHARED_RESOURCE_SUFFIX = ".shared"
SHARED_PRODUCT_SUFFIX = "-SHARED"
# label -> the value that means spot / preemptible capacity (compared case-insensitively)
SPOT_LABELS = {
    "karpenter.sh/capacity-type": "spot",
    "eks.amazonaws.com/capacityType": "spot",
    "cloud.google.com/gke-spot": "true",
    "cloud.google.com/gke-preemptible": "true",
    "kubernetes.azure.com/scalesetpriority": "spot",
}
OPENFAAS_ANNOTATION = "openfaas"
DEFAULT_STORAGE_CLASS = "default"  # a PVC without storageClassName uses the cluster default
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")  # BCP 47, e.g. de-CH
_BUDGET = re.compile(r"^[0-9]{1,15}(?:\.[0-9]{1,6})?$")  # 500.00; zero means no budget


@dataclass(frozen=True)
class Rules:
    """How tenants and their nodes are recognised (from Settings)."""

    annotation_prefix: str = "chargeback/"
    node_label_keys: tuple[str, ...] = ("chargeback/tenant",)
    exclude_namespaces: tuple[str, ...] = ("openfaas-system",)


@dataclass(frozen=True)
class Tenant:
    namespace: str
    display_name: str | None = None
    email: str | None = None
    plan: str | None = None
    currency: str | None = None
    locale: str | None = None
    address: str | None = None  # postal address, lines separated by newlines or \n
    tax_id: str | None = None   # VAT or other tax ID
    # <prefix>address-street/-postcode/-city/-country as given (billing.postal reads them)
    postal_address: dict[str, str] | None = None
    einvoice: str | None = None         # facturx, ubl or xrechnung (billing.legal checks it)
    buyer_reference: str | None = None  # BT-10: a Leitweg-ID for German public buyers
    budget: Decimal | None = None  # monthly, in the plan's currency (budgets capability)


@dataclass(frozen=True)
class Sample:
    namespace: str
    meter: str
    sku: str
    spot: bool
    units: Decimal


@dataclass(frozen=True)
class Reading:
    """One look at the cluster: tenants, what they hold, and what was not billed and why."""

    tenants: tuple[Tenant, ...]
    samples: tuple[Sample, ...]
    dedicated_nodes: int
    not_ready_nodes: int
    warnings: tuple[str, ...]


def _meta(obj: Mapping, key: str) -> Mapping:
    return (obj.get("metadata") or {}).get(key) or {}


def _name(obj: Mapping) -> str:
    return (obj.get("metadata") or {}).get("name") or "?"


def tenants_from_namespaces(namespaces: Iterable[Mapping], rules: Rules,
                            warnings: list[str]) -> list[Tenant]:
    """OpenFaaS function namespaces (annotation openfaas: "1"), minus the excluded ones."""
    tenants = []
    excluded = set(rules.exclude_namespaces)
    prefix = rules.annotation_prefix
    for ns in namespaces:
        name = _name(ns)
        annotations = _meta(ns, "annotations")
        if annotations.get(OPENFAAS_ANNOTATION) != "1" or name in excluded:
            continue

        def note(key: str, pattern: re.Pattern | None = None, expected: str = "") -> str | None:
            value = annotations.get(prefix + key)
            value = value.strip() or None if isinstance(value, str) else None
            if value is not None and not storable(value):
                warnings.append(f"namespace {name}: annotation {prefix}{key} contains a NUL or "
                                "an unpaired surrogate, which cannot be stored: ignored")
                return None
            if value is not None and pattern is not None and not pattern.match(value):
                warnings.append(f"namespace {name}: annotation {prefix}{key}={value!r} is not "
                                f"{expected}: ignored")
                return None
            return value

        currency = note("currency", _CURRENCY, "a 3-letter ISO 4217 code")
        locale = note("locale", _LOCALE, "a language tag such as en or de-CH")
        address = note("address")  # lines: real newlines or the two characters \n
        budget = note("budget", _BUDGET, "an amount such as 500.00")
        postal = {part: value for part in ("street", "postcode", "city", "country")
                  if (value := note(f"address-{part}")) is not None}
        tenants.append(Tenant(name, display_name=note("name"), email=note("email"),
                              plan=note("plan"), currency=currency and currency.upper(),
                              locale=locale and locale.replace("_", "-"),
                              address=address and address.replace("\\n", "\n"),
                              tax_id=note("tax-id"), postal_address=postal or None,
                              einvoice=note("einvoice"),
                              buyer_reference=note("buyer-reference"),
                              budget=Decimal(budget) if budget and Decimal(budget) else None))
    return tenants


def storable(text: str) -> bool:
    """PostgreSQL text holds neither NUL nor unpaired surrogates (which JSON can carry)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def instance_type(labels: Mapping[str, str]) -> str:
    for key in INSTANCE_TYPE_LABELS:
        if labels.get(key):
            return labels[key]
    return "unknown"


def is_spot(labels: Mapping[str, str]) -> bool:
    return any(str(labels.get(key, "")).lower() == value for key, value in SPOT_LABELS.items())


def gpu_product(labels: Mapping[str, str]) -> str | None:
    for key in GPU_PRODUCT_LABELS:
        if labels.get(key):
            return labels[key]
    return None


def gpus(labels: Mapping[str, str], capacity: Mapping[str, str], node_name: str,
         warnings: list[str]) -> list[tuple[str, Decimal]]:
    """(SKU, physical devices) for every GPU resource in `capacity`.

    MIG profiles are their own SKUs (`<product>/mig-<profile>`). A shared GPU
    (time-slicing or MPS) is billed once: the devices advertised as
    `<resource>` and `<resource>.shared` are divided by the node's
    `nvidia.com/<resource-name>.replicas`, under the product name without the
    operator's -SHARED suffix. Without a product label the resource name is
    the SKU: unknown, not guessed.
    """
    product = gpu_product(labels)
    if product and product.endswith(SHARED_PRODUCT_SUFFIX):
        product = product[:-len(SHARED_PRODUCT_SUFFIX)]
    advertised: dict[str, Decimal | None] = {}  # None: a count did not parse
    for resource, raw in capacity.items():
        base = resource.removesuffix(SHARED_RESOURCE_SUFFIX)
        if base not in GPU_RESOURCES and not _MIG_RESOURCE.match(base):
            continue
        count = _quantity(raw, f"node {node_name}: {resource} capacity", warnings, whole=True)
        before = advertised.get(base, Decimal(0))
        advertised[base] = None if count is None or before is None else before + count
    found = []
    for base, count in sorted(advertised.items()):
        if not count:
            continue
        replicas_label = f"{base}.replicas" if base.startswith("nvidia.com/") else None
        replicas = Decimal(1)
        if replicas_label and replicas_label in labels:
            replicas = _quantity(labels[replicas_label], f"node {node_name}: label "
                                 f"{replicas_label}", warnings, whole=True)
            if not replicas:
                if replicas is not None:
                    warnings.append(f"node {node_name}: label {replicas_label}=0: not billed")
                continue
        physical, rest = divmod(int(count), int(replicas))
        if rest:
            warnings.append(f"node {node_name}: {count} {base} advertised is not a whole number "
                            f"of GPUs shared {replicas} ways ({replicas_label}): not billed")
            continue
        mig = _MIG_RESOURCE.match(base)
        if mig:
            profile = f"mig-{mig.group('profile')}"
            sku = f"{product}/{profile}" if product else profile
        else:
            sku = product or base
        found.append((sku, Decimal(physical)))
    return found


def is_ready(node: Mapping) -> bool:
    """Ready=True in status.conditions; no condition at all counts as not ready."""
    for condition in (node.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def node_tenant(labels: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    """The tenant a node is dedicated to: the first configured label key present."""
    for key in keys:
        value = labels.get(key)
        if value:
            return value
    return None


class _Tally:
    def __init__(self):
        self.units: dict[tuple[str, str, str, bool], Decimal] = defaultdict(Decimal)

    def add(self, namespace: str, meter: str, sku: str, spot: bool, units: Decimal) -> None:
        self.units[(namespace, meter, sku, spot)] += units

    def samples(self) -> tuple[Sample, ...]:
        return tuple(Sample(ns, meter, sku, spot, units)
                     for (ns, meter, sku, spot), units in sorted(self.units.items())
                     if units > 0)


def _quantity(raw, what: str, warnings: list[str], *, whole: bool = False,
              gib: bool = False) -> Decimal | None:
    """The quantity, in GiB when gib=True (from bytes), or None with a warning: never guessed."""
    try:
        value = parse_quantity(raw)
        if gib and value >= 0:
            value = bytes_to_gib(value)
    except QuantityError as exc:
        warnings.append(f"{what}: {exc}: not billed")
        return None
    if value < 0 or (whole and value != value.to_integral_value()):
        warnings.append(f"{what}: {raw!r} is not a {'whole ' if whole else ''}non-negative "
                        "quantity: not billed")
        return None
    return value


def _measure_node(node: Mapping, tenant: str, tally: _Tally, warnings: list[str]) -> None:
    name = _name(node)
    labels = _meta(node, "labels")
    capacity = (node.get("status") or {}).get("capacity") or {}
    spot = is_spot(labels)
    tally.add(tenant, NODE_HOURS, instance_type(labels), spot, Decimal(1))
    cores = _quantity(capacity.get("cpu"), f"node {name}: cpu capacity", warnings)
    if cores is not None:
        tally.add(tenant, CPU_CORE_HOURS, "", spot, cores)
    memory_gib = _quantity(capacity.get("memory"), f"node {name}: memory capacity", warnings,
                           gib=True)
    if memory_gib is not None:
        tally.add(tenant, MEMORY_GIB_HOURS, "", spot, memory_gib)
    for sku, count in gpus(labels, capacity, name, warnings):
        tally.add(tenant, GPU_HOURS, sku, spot, count)


def measure(namespaces: Iterable[Mapping], nodes: Iterable[Mapping], pvcs: Iterable[Mapping],
            services: Iterable[Mapping], rules: Rules) -> Reading:
    """Everything each tenant holds right now, as samples of units held."""
    warnings: list[str] = []
    tenants = tenants_from_namespaces(namespaces, rules, warnings)
    known = {t.namespace for t in tenants}
    tally = _Tally()
    dedicated = not_ready = 0
    for node in nodes:
        tenant = node_tenant(_meta(node, "labels"), rules.node_label_keys)
        if tenant is None:
            continue  # shared node: its use is billed per invocation, not here
        if tenant not in known:
            warnings.append(f"node {_name(node)}: labelled for {tenant!r}, which is not a "
                            "tenant namespace (openfaas: \"1\", not excluded): not billed")
            continue
        dedicated += 1
        if not is_ready(node):
            not_ready += 1
            continue
        _measure_node(node, tenant, tally, warnings)
    for pvc in pvcs:
        namespace = (pvc.get("metadata") or {}).get("namespace")
        status = pvc.get("status") or {}
        if namespace not in known or status.get("phase") != "Bound":
            continue
        what = f"pvc {namespace}/{_name(pvc)}: storage capacity"
        size_gib = _quantity((status.get("capacity") or {}).get("storage"), what, warnings,
                             gib=True)
        if size_gib is not None:
            spec = pvc.get("spec") or {}
            storage_class = spec.get("storageClassName") or DEFAULT_STORAGE_CLASS
            tally.add(namespace, STORAGE_GIB_HOURS, storage_class, False, size_gib)
    for service in services:
        namespace = (service.get("metadata") or {}).get("namespace")
        if namespace not in known or (service.get("spec") or {}).get("type") != "LoadBalancer":
            continue
        # Billed once the cloud has provisioned it (an address is assigned).
        if ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
            tally.add(namespace, LOADBALANCER_HOURS, "", False, Decimal(1))
    return Reading(tuple(tenants), tally.samples(), dedicated, not_ready, tuple(warnings))
