-- Custom usage events (CloudEvents 1.0) that tenants' functions or the operator's own
-- services send to receive-usage: append-only, one row per (namespace, source, id).
-- The key leads with the namespace, so one tenant's ids never collide with another's
-- (a tenant cannot make another's events count as duplicates) and the table
-- distributes by namespace like function_usage. `data` is jsonb, whose numbers are
-- NUMERIC: a value read back with #>> and cast to numeric is exactly what was sent.
-- Meters (pricebook.yml, `meters:`) are aggregations over `data`, computed when a
-- window is priced, so a meter declared later also counts the events sent before it.
CREATE TABLE openfaas_metering.custom_events (
    namespace   text COLLATE "C" NOT NULL,  -- the CloudEvent's subject
    source      text NOT NULL,
    event_id    text NOT NULL,
    type        text NOT NULL,
    time_ns     bigint NOT NULL,            -- the event's time, ns since the epoch
    data        jsonb NOT NULL,
    delivery_id text NOT NULL,              -- "cloudevents:sha256:<body hash>"
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, source, event_id)
);

-- A meter reads one event type over a window, for every tenant or a few.
CREATE INDEX custom_events_type_time ON openfaas_metering.custom_events (type, time_ns);
-- Late events of a closed month are found by when they arrived (month close).
CREATE INDEX custom_events_received ON openfaas_metering.custom_events (received_at, time_ns);

-- Meters read from Prometheus (egress, GPU utilisation), one row per UTC hour, tenant
-- and SKU, written once per hour by meter-capacity's collection (idempotent per hour:
-- prometheus_hours says which hours are done). Quantities are exact decimals in the
-- meter's unit (GiB, GPU-hours).
CREATE TABLE openfaas_metering.prometheus_usage (
    meter      text NOT NULL,
    hour_start timestamptz NOT NULL,
    namespace  text COLLATE "C" NOT NULL,
    sku        text NOT NULL DEFAULT '',
    quantity   numeric NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (meter, hour_start, namespace, sku)
);

-- One row per meter and hour collected; `gaps` lists the series whose samples left a
-- hole wider than the allowed scrape gap (never filled in: billed as nothing).
CREATE TABLE openfaas_metering.prometheus_hours (
    meter        text NOT NULL,
    hour_start   timestamptz NOT NULL,
    series       integer NOT NULL,
    gaps         jsonb NOT NULL DEFAULT '[]',
    collected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter, hour_start)
);
