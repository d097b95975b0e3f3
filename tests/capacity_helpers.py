"""Capacity-test helpers: the tick call and the rows a test reads back."""
from __future__ import annotations

from datetime import datetime, timezone

import psycopg
import requests


T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)


H100 = "NVIDIA-H100-80GB-HBM3"

# What the fixture cluster (devstack.kubegen.fixture_cluster) holds, counted by hand from
# its nodes, PVCs and services; one holding = (tenant, meter, sku, spot):
#   helix-ai     5: its 2 Ready H100 nodes (the NotReady one is not billed) give node, cpu,
#                   memory and H100 GPU hours; the premium-rwo PVC gives storage
#   render-farm  7: 2 spot nodes of two instance types give 2 node holdings and one each of
#                   cpu, memory and a10g GPU (spot); gp3 storage (the pending PVC adds
#                   nothing); the one provisioned LoadBalancer
#   vision-lab  10: an on-demand MIG A100 and a spot L4 node: node, cpu and memory hours
#                   twice (spot and not), GPU hours for mig-1g.10gb, mig-3g.40gb and l4;
#                   storage of the class-less PVC
#   webshop      1: shared nodes only; its PVC (its LoadBalancer is still pending)
# former-customer's node has no namespace and kube-system is no tenant: nothing.
FIXTURE_HOLDINGS_BY_TENANT = {"helix-ai": 5, "render-farm": 7, "vision-lab": 10, "webshop": 1}
FIXTURE_HOLDINGS = sum(FIXTURE_HOLDINGS_BY_TENANT.values())  # 23


def tick(fn, at: datetime, session=requests):
    return session.post(fn.url, json={"now": at.isoformat()}, timeout=30)


def rows(database_url, sql, *args):
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, args).fetchall()


def unit_seconds(database_url, namespace, meter, sku=None):
    """units held by a tenant times the seconds billed, over every tick (exact NUMERIC)."""
    (total,) = rows(database_url,
                    "SELECT coalesce(sum(unit_seconds), 0) FROM openfaas_metering.capacity_usage("
                    "  '2000-01-01Z', '2100-01-01Z')"
                    " WHERE namespace = %s AND meter = %s AND (%s::text IS NULL OR sku = %s)",
                    namespace, meter, sku, sku)[0]
    return total
