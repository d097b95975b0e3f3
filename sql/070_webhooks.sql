-- Outbound webhooks (Standard Webhooks). An event is written here in the same
-- transaction as the fact it reports (invoice finalized, sent, bounced, usage
-- rejected, budget crossed): it exists exactly when the fact does.
-- event_id is the webhook-id header of every attempt to every endpoint.
CREATE TABLE openfaas_metering.webhook_events (
    event_id      text        PRIMARY KEY
                  DEFAULT ('evt_' || replace(gen_random_uuid()::text, '-', '')),
    type          text        NOT NULL,   -- invoice.finalized, budget.threshold_crossed, ...
    data          jsonb       NOT NULL,   -- ids, numbers, amounts: never a secret or a document
    created_at    timestamptz NOT NULL DEFAULT now(),  -- the body's "timestamp"
    -- set when deliver-webhooks first handled the event: one delivery row per
    -- endpoint of WEBHOOK_URLS then (none configured yet: the event waits)
    fanned_out_at timestamptz
);
CREATE INDEX webhook_events_waiting ON openfaas_metering.webhook_events (created_at)
    WHERE fanned_out_at IS NULL;

-- One row per event and endpoint: pending -> delivered | failed. A drainer
-- claims a due row by moving next_attempt_at past the attempt (the lease:
-- committed before the HTTP call, so no row lock is held while it waits);
-- attempts fences the outcome, so a drainer whose lease ran out records nothing.
CREATE TABLE openfaas_metering.webhook_deliveries (
    event_id         text        NOT NULL
                     REFERENCES openfaas_metering.webhook_events (event_id),
    endpoint         text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    retry_from       timestamptz NOT NULL DEFAULT now(),  -- retries end 24 h after this
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    delivered_at     timestamptz,
    PRIMARY KEY (event_id, endpoint)
);
CREATE INDEX webhook_deliveries_due ON openfaas_metering.webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_failed ON openfaas_metering.webhook_deliveries (event_id)
    WHERE status = 'failed';
