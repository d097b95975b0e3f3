-- Hours whose billed invocations (function_usage_hourly, from the gateway's webhook) fell
-- short of the gateway's own counter gateway_function_invocation_total by more than the
-- tolerance (chargeback.metrics.drift). One row per namespace, function and UTC hour:
-- a re-run updates what it saw last, and only a new row is announced
-- (usage.drift_detected), so running the reconciliation again duplicates nothing.
CREATE TABLE openfaas_metering.reconciliation_drift (
    namespace       text COLLATE "C" NOT NULL,
    function_name   text NOT NULL,
    hour_start      timestamptz NOT NULL,
    billed          bigint NOT NULL,
    witnessed       numeric NOT NULL,    -- the counter's increase over the hour
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, function_name, hour_start)
);
