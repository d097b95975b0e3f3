-- Credits the operator grants a tenant (billing.grants): applied at close to the
-- subtotal before tax as a "Credit applied" line, the earliest expiry first; what a
-- grant has not given carries over to the next months until it expires.
CREATE TABLE openfaas_metering.credit_grants (
    grant_id   uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    namespace  text        NOT NULL REFERENCES openfaas_metering.tenants (namespace),
    amount     numeric     NOT NULL CHECK (amount > 0),
    currency   text        NOT NULL,
    reason     text        NOT NULL,
    expires_at timestamptz,
    plan       text,           -- only invoices on this plan
    meter      text,           -- only lines of this meter
    granted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credit_grants_namespace ON openfaas_metering.credit_grants (namespace);

-- What each grant gave each document (a correction: the difference, either sign).
-- A grant's balance: its amount less what documents not voided took, less its expiry.
CREATE TABLE openfaas_metering.credit_grant_uses (
    grant_id   uuid    NOT NULL REFERENCES openfaas_metering.credit_grants (grant_id),
    invoice_id uuid    NOT NULL REFERENCES openfaas_metering.invoices (invoice_id),
    amount     numeric NOT NULL,
    PRIMARY KEY (grant_id, invoice_id)
);
CREATE INDEX credit_grant_uses_invoice ON openfaas_metering.credit_grant_uses (invoice_id);

-- A grant past its expiry: what was left of it then, recorded once.
CREATE TABLE openfaas_metering.credit_grant_expiries (
    grant_id   uuid        PRIMARY KEY REFERENCES openfaas_metering.credit_grants (grant_id),
    amount     numeric     NOT NULL,
    expired_at timestamptz NOT NULL
);

-- credit.balance_low fires once when a tenant's balance in a currency falls below
-- CREDIT_BALANCE_LOW; it is armed again when the balance rises to it or above.
CREATE TABLE openfaas_metering.credit_balance_alerts (
    namespace  text        NOT NULL,
    currency   text        NOT NULL,
    low        boolean     NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, currency)
);

ALTER TABLE openfaas_metering.invoice_lines DROP CONSTRAINT invoice_lines_kind_check;
ALTER TABLE openfaas_metering.invoice_lines ADD CONSTRAINT invoice_lines_kind_check
    CHECK (kind IN ('usage', 'capacity', 'base_fee', 'commitment', 'adjustment', 'credit'))
    NOT VALID;   -- the rows there are checked below without blocking writes meanwhile
ALTER TABLE openfaas_metering.invoice_lines VALIDATE CONSTRAINT invoice_lines_kind_check;
