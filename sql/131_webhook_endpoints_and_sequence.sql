-- The endpoints deliver-webhooks has seen in WEBHOOK_URLS: an endpoint gets the
-- events emitted from when it was added; when it leaves WEBHOOK_URLS its
-- pending deliveries are cancelled (visible in {"list": "cancelled"}), and
-- when it comes back it is added again from then. The operator can replay a
-- time range of events to an endpoint.
CREATE TABLE openfaas_metering.webhook_endpoints (
    endpoint   text        PRIMARY KEY,
    added_at   timestamptz NOT NULL DEFAULT now(),
    removed_at timestamptz
);
INSERT INTO openfaas_metering.webhook_endpoints (endpoint, added_at)
SELECT d.endpoint, min(e.created_at)
  FROM openfaas_metering.webhook_deliveries AS d
  JOIN openfaas_metering.webhook_events AS e USING (event_id)
 GROUP BY d.endpoint;

ALTER TABLE openfaas_metering.webhook_deliveries
    DROP CONSTRAINT webhook_deliveries_status_check,
    ADD CONSTRAINT webhook_deliveries_status_check
        CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled'));

-- Delivery order is not guaranteed (retries, parallel attempts); each event
-- carries a sequence number, strictly increasing per tenant (data.tenant; ''
-- for events about no tenant) in commit order: the per-tenant counter row is
-- locked until the emitting transaction ends, so a later number never
-- commits before an earlier one. Per tenant, never across tenants.
CREATE TABLE openfaas_metering.webhook_sequences (
    tenant        text   PRIMARY KEY,
    last_sequence bigint NOT NULL
);
ALTER TABLE openfaas_metering.webhook_events
    ADD COLUMN tenant   text NOT NULL DEFAULT '',
    ADD COLUMN sequence bigint,
    -- the instant of each event, even for several facts of one transaction
    ALTER COLUMN created_at SET DEFAULT clock_timestamp();
UPDATE openfaas_metering.webhook_events AS e
   SET tenant = n.tenant, sequence = n.sequence
  FROM (SELECT event_id, coalesce(data->>'tenant', '') AS tenant,
               row_number() OVER (PARTITION BY coalesce(data->>'tenant', '')
                                  ORDER BY created_at, event_id) AS sequence
          FROM openfaas_metering.webhook_events) AS n
 WHERE e.event_id = n.event_id;
INSERT INTO openfaas_metering.webhook_sequences (tenant, last_sequence)
SELECT tenant, max(sequence) FROM openfaas_metering.webhook_events GROUP BY tenant;
ALTER TABLE openfaas_metering.webhook_events ALTER COLUMN sequence SET NOT NULL;

CREATE FUNCTION openfaas_metering.number_webhook_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.tenant := coalesce(NEW.data->>'tenant', '');
    INSERT INTO openfaas_metering.webhook_sequences AS s (tenant, last_sequence)
    VALUES (NEW.tenant, 1)
    ON CONFLICT (tenant) DO UPDATE SET last_sequence = s.last_sequence + 1
    RETURNING s.last_sequence INTO NEW.sequence;
    RETURN NEW;
END $$;
CREATE TRIGGER webhook_events_numbered BEFORE INSERT ON openfaas_metering.webhook_events
    FOR EACH ROW EXECUTE FUNCTION openfaas_metering.number_webhook_event();

-- crossings of one evaluation each at their own instant
ALTER TABLE openfaas_metering.budget_crossings
    ALTER COLUMN crossed_at SET DEFAULT clock_timestamp();
