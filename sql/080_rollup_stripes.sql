-- Striped rollups: concurrent deliveries of the same hour no longer queue
-- behind each other's rollup rows.
--
-- On live traffic every concurrent delivery carries events of the current
-- minute for the same functions, so every one of them upserted the same
-- (namespace, function, hour) and (day, namespace, function) rows, and each
-- row's lock, held until its transaction's commit (an fsync), serialized the
-- deliveries: scripts/bench/ingest --workloads live --waits showed 48-78% of
-- the ingest backends' time waiting for another transaction
-- (Lock:transactionid on the rollup upsert).
--
-- Now each rollup row also carries a `stripe`, and an ingest transaction adds
-- its sums to the rows of one stripe that no other running transaction holds
-- (take_rollup_stripe: the first free of 32 transaction-scoped advisory locks,
-- so stripes 0, 1, ... as many as transactions run at once). The stored rows
-- are the physical tables function_usage_hourly_stripes and
-- function_usage_daily_stripes; function_usage_hourly and function_usage_daily
-- are now views with the same names and columns as the tables they replace,
-- summing the stripes, so every reader (month close, verify, export, the
-- demo, tests) reads exactly what it read before. Sums of integers and exact
-- numerics: the order stripes are added in changes nothing.
--
-- Citus: the stripe tables are distributed by namespace like the raw events;
-- `namespace` is in both primary keys.

ALTER TABLE openfaas_metering.function_usage_hourly RENAME TO function_usage_hourly_stripes;
ALTER TABLE openfaas_metering.function_usage_hourly_stripes
    ADD COLUMN stripe smallint NOT NULL DEFAULT 0 CHECK (stripe >= 0),
    DROP CONSTRAINT function_usage_hourly_pkey,
    ADD CONSTRAINT function_usage_hourly_stripes_pkey
        PRIMARY KEY (namespace, function_name, hour_start, stripe);

ALTER TABLE openfaas_metering.function_usage_daily RENAME TO function_usage_daily_stripes;
ALTER TABLE openfaas_metering.function_usage_daily_stripes
    ADD COLUMN stripe smallint NOT NULL DEFAULT 0 CHECK (stripe >= 0),
    DROP CONSTRAINT function_usage_daily_pkey,
    ADD CONSTRAINT function_usage_daily_stripes_pkey
        PRIMARY KEY (day_start, namespace, function_name, stripe);

-- The old names, the old columns, one row per key. A reader's conditions on
-- the key columns (a range of hours or days, a set of namespaces) are applied
-- to the stripe rows before they are summed (PostgreSQL pushes them down).
CREATE VIEW openfaas_metering.function_usage_hourly AS
SELECT namespace, function_name, hour_start,
       sum(invocations)::bigint AS invocations,
       sum(duration_ns) AS duration_ns,
       sum(gb_seconds) AS gb_seconds,
       max(updated_at) AS updated_at
  FROM openfaas_metering.function_usage_hourly_stripes
 GROUP BY namespace, function_name, hour_start;

CREATE VIEW openfaas_metering.function_usage_daily AS
SELECT day_start, namespace, function_name,
       sum(invocations)::bigint AS invocations,
       sum(duration_ns) AS duration_ns,
       sum(gb_seconds) AS gb_seconds,
       max(updated_at) AS updated_at
  FROM openfaas_metering.function_usage_daily_stripes
 GROUP BY day_start, namespace, function_name;

-- The stripe this transaction adds its rollups to: the first of 32 whose
-- transaction-scoped advisory lock is free, so no two running ingest
-- transactions share one (and none waits for another's rollup rows). With
-- more than 32 at once, it waits for one (by backend pid): correct, only
-- slower. Advisory locks are re-entrant: a transaction keeps its stripe.
CREATE FUNCTION openfaas_metering.take_rollup_stripe() RETURNS smallint
LANGUAGE plpgsql AS $$
DECLARE
    class constant integer := hashtext('openfaas_metering rollup stripes');
    stripes constant integer := 32;
    s integer;
BEGIN
    FOR s IN 0 .. stripes - 1 LOOP
        IF pg_try_advisory_xact_lock(class, s) THEN
            RETURN s;
        END IF;
    END LOOP;
    s := pg_backend_pid() % stripes;
    PERFORM pg_advisory_xact_lock(class, s);
    RETURN s;
END
$$;
