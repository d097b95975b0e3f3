-- Folding the rollup stripes (sql/080) of past periods back into stripe 0.
--
-- A key gets one stripe row per transaction that wrote it at the same time,
-- so under steady concurrent ingest a day of a busy function holds up to one
-- row per ingest connection (replicas x DB_POOL_MAX), and month close reads
-- that many times more daily rows. Periods that ended before `before` no
-- longer take live traffic (only late events), so their stripes are summed
-- into stripe 0, in one transaction: the views read the same sums before and
-- after (each reader's snapshot sees either all stripes or the folded row).
-- receive-usage calls it now and then (ingest.fold_stripes); one folder at a
-- time, the others skip. A late event's ingest that holds a stripe row being
-- folded waits for the fold (or the fold for it) and then adds to what is
-- there: nothing is lost or counted twice.
CREATE FUNCTION openfaas_metering.fold_rollup_stripes(before timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    hourly bigint;
    daily bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('openfaas_metering rollup fold')) THEN
        RETURN 0;  -- another replica is folding
    END IF;
    WITH moved AS (
        DELETE FROM openfaas_metering.function_usage_hourly_stripes
         WHERE stripe > 0 AND hour_start < before
        RETURNING namespace, function_name, hour_start, invocations, duration_ns, gb_seconds,
                  updated_at
    )
    INSERT INTO openfaas_metering.function_usage_hourly_stripes AS h
        (namespace, function_name, hour_start, stripe, invocations, duration_ns, gb_seconds,
         updated_at)
    SELECT namespace, function_name, hour_start, 0, sum(invocations), sum(duration_ns),
           sum(gb_seconds), max(updated_at)
      FROM moved
     GROUP BY namespace, function_name, hour_start
     ORDER BY namespace, function_name, hour_start
    ON CONFLICT (namespace, function_name, hour_start, stripe) DO UPDATE
       SET invocations = h.invocations + excluded.invocations,
           duration_ns = h.duration_ns + excluded.duration_ns,
           gb_seconds  = h.gb_seconds + excluded.gb_seconds,
           -- when the usage was written, not when it was folded: month close's
           -- late-usage check reads it
           updated_at  = greatest(h.updated_at, excluded.updated_at);
    GET DIAGNOSTICS hourly = ROW_COUNT;

    WITH moved AS (
        DELETE FROM openfaas_metering.function_usage_daily_stripes
         WHERE stripe > 0 AND day_start + interval '1 day' <= before
        RETURNING day_start, namespace, function_name, invocations, duration_ns, gb_seconds,
                  updated_at
    )
    INSERT INTO openfaas_metering.function_usage_daily_stripes AS d
        (day_start, namespace, function_name, stripe, invocations, duration_ns, gb_seconds,
         updated_at)
    SELECT day_start, namespace, function_name, 0, sum(invocations), sum(duration_ns),
           sum(gb_seconds), max(updated_at)
      FROM moved
     GROUP BY day_start, namespace, function_name
     ORDER BY day_start, namespace, function_name
    ON CONFLICT (day_start, namespace, function_name, stripe) DO UPDATE
       SET invocations = d.invocations + excluded.invocations,
           duration_ns = d.duration_ns + excluded.duration_ns,
           gb_seconds  = d.gb_seconds + excluded.gb_seconds,
           updated_at  = greatest(d.updated_at, excluded.updated_at);
    GET DIAGNOSTICS daily = ROW_COUNT;
    RETURN hourly + daily;
END
$$;
