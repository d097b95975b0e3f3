-- tenant-portal reads one tenant at a time: a month of its daily rollup (the
-- primary key leads with the day, for the close's one range over every
-- tenant), and its quarantined events newest first. Both indexes cost ingest
-- one entry per new row; updates of a rollup row change no indexed column.
CREATE INDEX function_usage_daily_namespace_day
    ON openfaas_metering.function_usage_daily (namespace, day_start);
CREATE INDEX usage_rejected_events_namespace_received
    ON openfaas_metering.usage_rejected_events (namespace, received_at DESC);
