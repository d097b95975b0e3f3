-- capacity_monthly (006) stepped its months with timestamptz arithmetic, which
-- PostgreSQL does in the session's TimeZone: in America/New_York the month
-- after 2026-11-01 00:00 UTC began at 2026-12-01 01:00 UTC. Step UTC months
-- as plain timestamps, whatever the session's zone.
CREATE OR REPLACE VIEW openfaas_metering.capacity_monthly AS
WITH bounds AS (
    SELECT date_trunc('month', min(slot - make_interval(secs => billed_seconds))
                                   AT TIME ZONE 'UTC') AS first_month,
           max(slot) AT TIME ZONE 'UTC' AS last_slot
      FROM openfaas_metering.capacity_ticks
), months AS (
    SELECT m AT TIME ZONE 'UTC' AS period_start,
           (m + interval '1 month') AT TIME ZONE 'UTC' AS period_end
      FROM bounds, generate_series(bounds.first_month, bounds.last_slot, interval '1 month') AS m
)
SELECT u.namespace, m.period_start, u.meter, u.sku, u.spot, u.unit_seconds,
       u.unit_seconds / 3600 AS hours
  FROM months m,
       openfaas_metering.capacity_usage(m.period_start, m.period_end) u;
