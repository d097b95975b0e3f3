-- receive-usage: raw function_usage events, the hourly rollup, and what each
-- webhook delivery did. No SERIAL ids: nothing here needs a cross-tenant
-- sequence, and every table that grows with usage leads with `namespace`
-- so it can be distributed by tenant (Citus) unchanged.

-- Every accepted invocation, append-only. `started` and `duration` are what
-- the OpenFaaS docs' sample monthly query reads (microseconds, as Postgres
-- holds them); `started_ns` and `duration_ns` are the exact values from the
-- webhook and what invoices use. The primary key is the event's identity, so
-- an event re-sent in another delivery is stored once. `started` is in the key
-- only because a partitioned table's unique key must hold the partition key;
-- it is a function of `started_ns`, so it changes nothing about identity.
-- The key leads with `started_ns`: events arrive roughly in start order, so
-- new keys land at the right edge of the index (cheap appends) instead of in
-- the middle of every tenant's range (page splits); the column order changes
-- nothing about what is unique, and `namespace` is still in the key for Citus.
-- Partitioned by month (UTC) so a month is cheap to find and old months can be
-- detached and archived; ensure_function_usage_partitions() adds months on demand.
-- Names are COLLATE "C": they are ASCII Kubernetes names, whose byte order is
-- their order, and the key compares bytes instead of applying a locale's rules.
CREATE TABLE openfaas_metering.function_usage (
    namespace     text COLLATE "C" NOT NULL,
    function_name text COLLATE "C" NOT NULL,
    started       timestamptz NOT NULL,
    started_ns    bigint      NOT NULL,  -- nanoseconds since 1970-01-01T00:00:00Z
    duration      interval    NOT NULL,
    duration_ns   bigint      NOT NULL CHECK (duration_ns >= 0),
    memory_bytes  bigint      NOT NULL CHECK (memory_bytes > 0),
    delivery_id   text        NOT NULL,  -- the delivery that first brought it
    received_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT function_usage_identity
        PRIMARY KEY (started_ns, namespace, function_name, duration_ns, memory_bytes, started)
) PARTITION BY RANGE (started);

-- Create the monthly partitions (UTC months) that `months` fall in, if missing.
-- Safe with many replicas: creators queue on an advisory lock, then look again
-- with a fresh snapshot (pg_class, not to_regclass, whose cache may predate the
-- other creator's commit).
CREATE FUNCTION openfaas_metering.ensure_function_usage_partitions(months date[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    month date;
    part  text;
BEGIN
    FOREACH month IN ARRAY months LOOP
        month := date_trunc('month', month)::date;
        part := 'function_usage_' || to_char(month, 'YYYY_MM');
        CONTINUE WHEN to_regclass(format('openfaas_metering.%I', part)) IS NOT NULL;
        PERFORM pg_advisory_xact_lock(
            hashtextextended('openfaas_metering.function_usage partitions', 0));
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                                JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                               WHERE n.nspname = 'openfaas_metering' AND c.relname = part);
        BEGIN
            EXECUTE format(
                'CREATE TABLE openfaas_metering.%I PARTITION OF openfaas_metering.function_usage'
                ' FOR VALUES FROM (%L) TO (%L)',
                part,
                month::timestamp AT TIME ZONE 'UTC',
                (month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
        EXCEPTION WHEN duplicate_table THEN
            NULL;  -- created meanwhile by another replica: what we wanted
        END;
    END LOOP;
END
$$;

-- Per namespace, function and UTC hour (of the exact start), maintained at
-- ingest from the newly inserted rows only, so month close never scans raw
-- events. gb_seconds = sum(duration_ns * memory_bytes) / 1e9 / 2^30, exact.
CREATE TABLE openfaas_metering.function_usage_hourly (
    namespace     text COLLATE "C" NOT NULL,
    function_name text COLLATE "C" NOT NULL,
    hour_start    timestamptz NOT NULL,
    invocations   bigint      NOT NULL,
    duration_ns   numeric     NOT NULL,
    gb_seconds    numeric     NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, function_name, hour_start)
);

-- One row per delivery processed: a replay (same id, same body) is answered
-- from here and changes nothing. The body hash is part of the key so that an
-- id reused for a different body is still ingested (its events are then
-- deduplicated by identity) instead of being lost.
CREATE TABLE openfaas_metering.usage_deliveries (
    delivery_id  text        NOT NULL,
    body_sha256  text        NOT NULL,
    events       integer     NOT NULL,
    accepted     integer     NOT NULL,
    duplicates   integer     NOT NULL,
    excluded     integer     NOT NULL,
    rejected     integer     NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_id, body_sha256)
);

-- What a delivery did per namespace (for "duplicates ignored" per tenant).
CREATE TABLE openfaas_metering.usage_delivery_namespaces (
    namespace    text    NOT NULL,
    delivery_id  text    NOT NULL,
    body_sha256  text    NOT NULL,
    accepted     integer NOT NULL,
    duplicates   integer NOT NULL,
    excluded     integer NOT NULL,
    PRIMARY KEY (namespace, delivery_id, body_sha256)
);

-- Quarantine: invalid events (kept with their index and reason) ...
CREATE TABLE openfaas_metering.usage_rejected_events (
    delivery_id  text        NOT NULL,
    body_sha256  text        NOT NULL,
    event_index  integer     NOT NULL,
    namespace    text,                   -- as sent, when it was a string
    reason       text        NOT NULL,
    event_json   text        NOT NULL,   -- the event as sent, re-encoded as JSON
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_id, body_sha256, event_index)
);

-- ... and signed deliveries whose body is not a JSON array, kept raw for audit.
CREATE TABLE openfaas_metering.usage_quarantined_deliveries (
    delivery_id  text        NOT NULL,
    body_sha256  text        NOT NULL,
    event_type   text,
    reason       text        NOT NULL,
    body         bytea       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_id, body_sha256)
);
