-- The coarser rollup month close reads: per UTC day, namespace and function,
-- maintained at ingest from exactly the rows each insert added (like the
-- hourly one), so a month is ~30 rows per function instead of ~720 hours or
-- every raw event. It leads with the day, because a close reads one range of
-- days for every tenant; namespace stays in the key (Citus).
CREATE TABLE openfaas_metering.function_usage_daily (
    day_start     timestamptz NOT NULL,   -- UTC midnight
    namespace     text COLLATE "C" NOT NULL,
    function_name text COLLATE "C" NOT NULL,
    invocations   bigint      NOT NULL,
    duration_ns   numeric     NOT NULL,
    gb_seconds    numeric     NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day_start, namespace, function_name)
);

INSERT INTO openfaas_metering.function_usage_daily
       (day_start, namespace, function_name, invocations, duration_ns, gb_seconds)
SELECT date_trunc('day', hour_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
       namespace, function_name, sum(invocations), sum(duration_ns), sum(gb_seconds)
  FROM openfaas_metering.function_usage_hourly
 GROUP BY 1, 2, 3;

-- Whole hours at the edges of a period that are not whole UTC days (a zone
-- like Asia/Kolkata, a price change at noon) come from the hourly rollup by
-- range: BRIN costs ingest next to nothing, and rows arrive in time order.
CREATE INDEX function_usage_hourly_hour_brin ON openfaas_metering.function_usage_hourly
    USING brin (hour_start);
