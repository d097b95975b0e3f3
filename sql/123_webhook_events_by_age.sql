-- deliver-webhooks prunes events past WEBHOOK_RETENTION_DAYS on every call (every
-- minute), oldest first; the only index on created_at (070) holds just the events not
-- yet fanned out, so each call read the whole table, which keeps 30 days of events.
CREATE INDEX webhook_events_created ON openfaas_metering.webhook_events (created_at);
