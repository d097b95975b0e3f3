-- Subscriptions are the intervals in which meter-capacity listed a namespace: one row
-- per interval, opened by the first tick that lists the namespace, ended by the first
-- tick that no longer does (ended_at NULL while it is listed). A namespace listed again
-- opens a new row, so the months between bill nothing. A tenant without a row was
-- never seen by meter-capacity: it is billed only in months with usage.
CREATE TABLE openfaas_metering.tenant_subscription_periods (
    namespace  text        NOT NULL REFERENCES openfaas_metering.tenants (namespace),
    started_at timestamptz NOT NULL,
    ended_at   timestamptz,
    PRIMARY KEY (namespace, started_at),
    CHECK (ended_at > started_at)
);
-- at most one open interval per namespace (the tick's insert relies on it)
CREATE UNIQUE INDEX tenant_subscription_periods_open
    ON openfaas_metering.tenant_subscription_periods (namespace) WHERE ended_at IS NULL;

-- What tenants.subscribed_at / gone_at held becomes one interval each (the gaps they
-- lost, a namespace that came back, cannot be recovered from them).
INSERT INTO openfaas_metering.tenant_subscription_periods (namespace, started_at, ended_at)
SELECT namespace, subscribed_at, gone_at
  FROM openfaas_metering.tenants WHERE subscribed_at IS NOT NULL;

ALTER TABLE openfaas_metering.tenants DROP COLUMN subscribed_at, DROP COLUMN gone_at;

-- Late usage of a month voided without a reissue is reported in a close's "waived"
-- once for each state of that usage, not at every close that reads the month again.
CREATE TABLE openfaas_metering.waived_usage_reports (
    invoice_id        uuid        PRIMARY KEY REFERENCES openfaas_metering.invoices (invoice_id),
    quantities_sha256 text        NOT NULL,
    reported_at       timestamptz NOT NULL DEFAULT now()
);
