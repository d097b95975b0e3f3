-- aggregate-month: which periods are closed, and the canonical inputs each
-- invoice was computed from (what its inputs_sha256 covers and `verify`
-- rebuilds it from).

-- A period is recorded here once its close left no draft: the hourly run then
-- skips it (late usage of it is billed as adjustments on later invoices).
CREATE TABLE openfaas_metering.closed_periods (
    period              text        PRIMARY KEY CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),
    period_start        timestamptz NOT NULL,
    period_end          timestamptz NOT NULL,
    billing_timezone    text        NOT NULL,
    price_book_version  integer     NOT NULL
                        REFERENCES openfaas_metering.price_book_versions (version),
    invoices            integer     NOT NULL,
    closed_at           timestamptz NOT NULL DEFAULT now()
);

-- The quantities, plan, tax details and price book version the invoice was
-- priced from, as canonical JSON (inputs_sha256 is the SHA-256 of its text).
ALTER TABLE openfaas_metering.invoices ADD COLUMN inputs jsonb;

-- What was billed for a month: its own lines and later adjustments naming it.
CREATE INDEX invoice_lines_adjustment_period ON openfaas_metering.invoice_lines (adjustment_period)
    WHERE adjustment_period IS NOT NULL;
CREATE INDEX invoices_period ON openfaas_metering.invoices (period, status);
