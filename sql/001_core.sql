-- Core objects every part of chargeback uses.
-- Schema openfaas_metering is the one the OpenFaaS billing-metrics docs use.

-- A tenant is an OpenFaaS function namespace. Billing details come from the
-- namespace's annotations (meter-capacity upserts them every tick); the
-- *_override columns are set by an operator and win over the annotations.
CREATE TABLE openfaas_metering.tenants (
    namespace          text PRIMARY KEY,
    display_name       text,
    email              text,
    plan               text,
    currency           text,
    display_name_override text,
    email_override     text,
    plan_override      text,
    currency_override  text,
    first_seen_at      timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
