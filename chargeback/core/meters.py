"""What several capabilities share by name: the meters, their units, the GB-second factor
and the namespace pattern. Usage and capacity produce these meters, billing prices them.
"""
from __future__ import annotations

import re
from decimal import Decimal

# Function usage, from the gateway's webhook.
GB_SECONDS = "gb_seconds"
INVOCATIONS = "invocations"
USAGE_METERS = (GB_SECONDS, INVOCATIONS)

# Capacity held in the cluster. Meter names say the unit a price is quoted in;
# samples hold units held, and unit-hours are sum(units * seconds) / 3600.
NODE_HOURS = "node_hours"                  # SKU: instance type
CPU_CORE_HOURS = "cpu_core_hours"          # SKU: "" (full capacity of dedicated nodes)
MEMORY_GIB_HOURS = "memory_gib_hours"      # SKU: ""
GPU_HOURS = "gpu_hours"                    # SKU: GPU product, MIG profile as its own SKU
STORAGE_GIB_HOURS = "storage_gib_hours"    # SKU: storage class
LOADBALANCER_HOURS = "loadbalancer_hours"  # SKU: ""
CAPACITY_METERS = (NODE_HOURS, CPU_CORE_HOURS, MEMORY_GIB_HOURS, GPU_HOURS, STORAGE_GIB_HOURS,
                   LOADBALANCER_HOURS)

# Read from Prometheus when PROMETHEUS_URL is set, per UTC hour (chargeback.metrics).
EGRESS_GIB = "egress_gib"                          # SKU: ""; bytes sent / 2^30
GPU_UTILISATION_HOURS = "gpu_utilisation_hours"    # SKU: GPU model; util% / 100 x hours
PROMETHEUS_METERS = (EGRESS_GIB, GPU_UTILISATION_HOURS)

METERS = USAGE_METERS + CAPACITY_METERS + PROMETHEUS_METERS
# the unit each meter's quantity (and price) is in
UNITS = {GB_SECONDS: "GB-s", INVOCATIONS: "invocations", NODE_HOURS: "node-hours",
         CPU_CORE_HOURS: "core-hours", MEMORY_GIB_HOURS: "GiB-hours",
         GPU_HOURS: "GPU-hours", STORAGE_GIB_HOURS: "GiB-hours",
         LOADBALANCER_HOURS: "LB-hours", EGRESS_GIB: "GiB",
         GPU_UTILISATION_HOURS: "GPU-hours"}

# Exact: 2^-30 has 30 decimal places, so 1 / (1e9 * 2^30) is a finite decimal
# and multiplying by it never rounds (dividing by 2^30 in Postgres would).
GB_SECONDS_PER_BYTE_NS = Decimal("0.000000000000000000931322574615478515625")

# a Kubernetes DNS-1123 label (namespaces, OpenFaaS function names); use with fullmatch
DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
