"""The schema is ready to be distributed by tenant (Citus, docs/architecture.md
"Scaling"): read from the catalog of a fully migrated database, so a new table or key
that would not distribute fails here, not on the day of the move."""
from __future__ import annotations

import inspect

import psycopg
import pytest

from chargeback.capacity import store as capacity_store
from chargeback.usage import ingest

# Distributed by `namespace`: every row belongs to one tenant.
DISTRIBUTED = {"function_usage", "function_usage_hourly_stripes",
               "function_usage_daily_stripes", "usage_delivery_namespaces",
               "capacity_holdings"}
# The other tables of the usage, rollup and capacity families, and why they are
# not distributed (Citus: reference tables, or local to the coordinator).
NOT_DISTRIBUTED = {
    "usage_deliveries": "one row per delivery, which spans tenants: local",
    "usage_rejected_events": "quarantine; `namespace` is as sent, maybe absent: local",
    "usage_quarantined_deliveries": "quarantine of unreadable bodies: local",
    "webhook_other_events": "per event type and day, not per tenant: local",
    "webhook_events": "the outbound outbox (any billing fact, not only usage): local",
    "webhook_deliveries": "one row per outbound event and endpoint: local",
    "webhook_endpoints": "the operator's endpoints, not per tenant: local",
    "webhook_sequences": "one counter per tenant, locked by the emitting transaction: "
                         "local, beside webhook_events",
    "capacity_ticks": "one row per tick for the whole cluster: reference",
    "capacity_voided_ticks": "ticks voided for the whole cluster: reference",
}
FAMILIES = ("function_usage", "usage_", "capacity_", "webhook_")

TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'openfaas_metering' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"""

# every primary key, unique constraint and unique index, with its columns
UNIQUE_KEYS = """
SELECT c.relname, i.relname,
       array(SELECT a.attname FROM unnest(x.indkey) k
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k)
  FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'openfaas_metering' AND x.indisunique AND c.relname = ANY(%s)"""

# columns filled from a sequence (serial, identity): one counter for all tenants
SEQUENCED = """
SELECT c.relname, a.attname FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = 'openfaas_metering' AND c.relname = ANY(%s) AND NOT a.attisdropped
   AND (a.attidentity <> '' OR pg_get_expr(d.adbin, d.adrelid) LIKE '%%nextval%%')"""


@pytest.fixture
def catalog(database_url):
    """A fully migrated database, read only."""
    with psycopg.connect(database_url) as conn:
        yield conn


def test_every_usage_rollup_and_capacity_table_is_classified(catalog):
    tables = {name for (name,) in catalog.execute(TABLES) if name.startswith(FAMILIES)}
    assert tables == DISTRIBUTED | set(NOT_DISTRIBUTED), (
        "a new table: add it to DISTRIBUTED (keys hold `namespace`) or NOT_DISTRIBUTED")


def test_every_unique_key_of_a_distributed_table_holds_the_namespace(catalog):
    keys = catalog.execute(UNIQUE_KEYS, (sorted(DISTRIBUTED),)).fetchall()
    assert {table for table, _, _ in keys} == DISTRIBUTED  # each has a primary key
    lacking = [(table, index, columns) for table, index, columns in keys
               if "namespace" not in columns]
    assert lacking == []


def test_no_hot_path_write_needs_a_cross_tenant_sequence(catalog):
    # what ingest and the capacity tick write: no serial or identity column ...
    written = sorted(DISTRIBUTED | set(NOT_DISTRIBUTED))
    assert catalog.execute(SEQUENCED, (written,)).fetchall() == []
    # ... and no statement or function on their path draws from a sequence
    sources = [inspect.getsource(ingest), inspect.getsource(capacity_store)] + [
        src for (src,) in catalog.execute("""
            SELECT p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'openfaas_metering'""")]
    assert not [s for s in sources if "nextval" in s.lower()]
