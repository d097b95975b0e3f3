-- Deliveries of event types receive-usage does not store (api_access, the
-- gateway's audit events, shares the metering subscription) are acknowledged
-- with 200, or the event-worker would retry them forever, and counted here per
-- type and UTC day so an operator can see what arrives. Only signed deliveries
-- are counted; a sender's retries are counted again (deliveries received).
--
-- A correction to 002's header comment, which cannot be edited (applied
-- migrations are checksummed): not every usage table leads with `namespace`.
-- The event key of function_usage leads with `started_ns` (namespace is in
-- it), and the delivery tables have no namespace. Distributing by tenant
-- (Citus) would key function_usage and function_usage_hourly by namespace
-- and keep the delivery tables as reference or local tables.
CREATE TABLE openfaas_metering.webhook_other_events (
    event_type        text        NOT NULL,  -- X-Openfaas-Event as sent (at most 100 chars)
    day               date        NOT NULL,  -- UTC day received
    deliveries        bigint      NOT NULL,
    events            bigint      NOT NULL,  -- items of the JSON arrays received (0 if not one)
    first_received_at timestamptz NOT NULL DEFAULT now(),
    last_received_at  timestamptz NOT NULL DEFAULT now(),
    last_delivery_id  text        NOT NULL,
    PRIMARY KEY (event_type, day)
);
