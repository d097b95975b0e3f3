-- Monthly budgets per tenant, in the plan's currency: the annotation
-- <prefix>budget (meter-capacity keeps it like the other annotations), and an
-- operator's override that wins over it.
ALTER TABLE openfaas_metering.tenants
    ADD COLUMN budget          numeric CHECK (budget > 0),
    ADD COLUMN budget_override numeric CHECK (budget_override > 0);

-- Each crossing of a threshold, once per tenant, period, kind, threshold and
-- arming. kind 'threshold': month-to-date total >= budget * threshold / 100;
-- kind 'forecast': the projected month total >= budget (threshold 100, never
-- re-armed, so at most once a month). A budget raised above what made a
-- threshold cross re-arms it (rearmed_at set), and its next crossing is the
-- next arming. The primary key is what makes a crossing fire once whatever
-- restarts or concurrent evaluators bring.
CREATE TABLE openfaas_metering.budget_crossings (
    crossing_id       uuid        NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    namespace         text        NOT NULL REFERENCES openfaas_metering.tenants (namespace),
    period            text        NOT NULL CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),
    kind              text        NOT NULL CHECK (kind IN ('threshold', 'forecast')),
    threshold_percent integer     NOT NULL CHECK (threshold_percent > 0),
    arming            integer     NOT NULL DEFAULT 1,
    budget            numeric     NOT NULL,   -- the budget it crossed
    amount            numeric     NOT NULL,   -- month to date (threshold) or projected (forecast)
    month_to_date     numeric     NOT NULL,
    currency          text        NOT NULL,
    crossed_at        timestamptz NOT NULL DEFAULT now(),
    rearmed_at        timestamptz,            -- the budget was raised above it
    -- the mail, sent exactly once as invoices are (claim, send, record)
    mail_status       text        NOT NULL DEFAULT 'pending'
                      CHECK (mail_status IN ('pending', 'sent', 'undeliverable')),
    mail_claimed_at   timestamptz,
    mail_attempts     integer     NOT NULL DEFAULT 0,
    mail_sent_at      timestamptz,
    message_id        text,
    mail_error        text,
    PRIMARY KEY (namespace, period, kind, threshold_percent, arming)
);
CREATE INDEX budget_crossings_mail_pending ON openfaas_metering.budget_crossings (crossed_at)
    WHERE mail_status = 'pending';
-- at most one armed (not re-armed) crossing per tenant, period, kind and threshold
CREATE UNIQUE INDEX budget_crossings_armed
    ON openfaas_metering.budget_crossings (namespace, period, kind, threshold_percent)
    WHERE rearmed_at IS NULL;
