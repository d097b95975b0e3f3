-- The tables aggregate-month writes and email-invoice reads: price book
-- versions, invoices and their lines. Later migrations may add to them.

-- Billing details email-invoice and aggregate-month need beyond 001's:
-- the tenant's locale (annotation <prefix>locale, default en) and an
-- operator's tax rate override (a fraction: 0.19 is 19 %).
ALTER TABLE openfaas_metering.tenants
    ADD COLUMN locale            text,
    ADD COLUMN locale_override   text,
    ADD COLUMN tax_rate_override numeric CHECK (tax_rate_override >= 0 AND tax_rate_override < 1);

-- pricebook.yml as loaded: a new version whenever its content (hash) changes;
-- old versions are kept, and every finalized invoice names the one it used.
CREATE TABLE openfaas_metering.price_book_versions (
    version         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    content_sha256  text        NOT NULL UNIQUE,
    source_text     text        NOT NULL,   -- the YAML exactly as loaded
    document        jsonb       NOT NULL,   -- its parsed form
    loaded_at       timestamptz NOT NULL DEFAULT now()
);

-- One invoice per tenant per calendar month in the billing time zone.
-- draft -> finalized -> sent | undeliverable. The figures of a finalized
-- invoice never change; only the delivery columns (queued_*, send_*, sent_*,
-- message_id, undeliverable_reason) move after finalization.
CREATE TABLE openfaas_metering.invoices (
    invoice_id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    namespace           text        NOT NULL REFERENCES openfaas_metering.tenants (namespace),
    period              text        NOT NULL CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),  -- 2026-09
    period_start        timestamptz NOT NULL,   -- local midnight on the 1st, as an instant
    period_end          timestamptz NOT NULL,   -- exclusive
    billing_timezone    text        NOT NULL,   -- IANA name
    status              text        NOT NULL DEFAULT 'draft'
                        CHECK (status IN ('draft', 'finalized', 'sent', 'undeliverable')),
    draft_reasons       jsonb       NOT NULL DEFAULT '[]',   -- why it is still a draft
    plan                text,
    currency            text,                   -- ISO 4217
    price_book_version  integer REFERENCES openfaas_metering.price_book_versions (version),
    -- what the invoice is addressed to, frozen at finalization
    bill_to_name        text,
    bill_to_email       text,
    locale              text,
    subtotal            numeric,
    tax_rate            numeric,
    tax                 numeric,
    total               numeric,
    -- gap-free per calendar year of issue, assigned in the finalizing transaction
    number              text        UNIQUE,     -- INVOICE_PREFIX || '2026-000042'
    number_year         integer,
    number_seq          integer,
    issued_at           timestamptz,            -- the finalization instant (document date)
    inputs_sha256       text,                   -- canonical inputs (rows read, price book version)
    lines_sha256        text,                   -- canonical lines
    computed_at         timestamptz NOT NULL DEFAULT now(),
    -- delivery (email-invoice)
    queued_at           timestamptz,            -- last hand-off to email-invoice
    queued_count        integer     NOT NULL DEFAULT 0,
    send_claimed_at     timestamptz,            -- a sender holds it since (NULL: nobody)
    send_attempts       integer     NOT NULL DEFAULT 0,
    last_send_error     text,
    sent_at             timestamptz,
    message_id          text,
    undeliverable_reason text,
    UNIQUE (namespace, period),
    UNIQUE (number_year, number_seq),
    CHECK ((status = 'draft') = (number IS NULL)),
    CHECK (status <> 'sent' OR (sent_at IS NOT NULL AND message_id IS NOT NULL)),
    CHECK (status <> 'undeliverable' OR undeliverable_reason IS NOT NULL)
);
CREATE INDEX invoices_to_send ON openfaas_metering.invoices (status, queued_at)
    WHERE status = 'finalized';

-- The next number per calendar year of issue; taken with UPDATE ... RETURNING
-- in the finalizing transaction, so a rollback gives the number back.
CREATE TABLE openfaas_metering.invoice_number_counters (
    year      integer PRIMARY KEY,
    last_seq  integer NOT NULL DEFAULT 0
);

-- Lines in display order. kind: usage (gb_seconds, invocations), capacity
-- (the capacity meters), base_fee, commitment (top-up to the minimum),
-- adjustment (late usage of an earlier, finalized period).
CREATE TABLE openfaas_metering.invoice_lines (
    invoice_id        uuid     NOT NULL REFERENCES openfaas_metering.invoices (invoice_id)
                               ON DELETE CASCADE,   -- drafts are recomputed; finals never deleted
    line_no           integer  NOT NULL,
    kind              text     NOT NULL
                      CHECK (kind IN ('usage', 'capacity', 'base_fee', 'commitment', 'adjustment')),
    meter             text,                  -- gb_seconds, invocations, node_hours, gpu_hours, ...
    sku               text     NOT NULL DEFAULT '',
    spot              boolean  NOT NULL DEFAULT false,
    description       text     NOT NULL,
    quantity          numeric  NOT NULL,     -- in `unit`, exact
    unit              text     NOT NULL,     -- GB-s, invocations, node-hours, GPU-hours, ...
    unit_price        numeric,               -- flat price per unit (NULL when tiered)
    tiers             jsonb,                 -- tiers applied: [{"from","to","unit_price","quantity","amount"}]
    tier_mode         text     CHECK (tier_mode IN ('graduated', 'volume')),
    allowance         numeric  NOT NULL DEFAULT 0,   -- included units used by this line
    discount_percent  numeric  NOT NULL DEFAULT 0,   -- e.g. the spot discount
    discount          numeric  NOT NULL DEFAULT 0,   -- money taken off (positive)
    amount            numeric  NOT NULL,     -- rounded half-even to the currency's minor unit
    price_from        timestamptz,           -- the price's effective window covered by this line
    price_to          timestamptz,
    adjustment_period text CHECK (adjustment_period ~ '^[0-9]{4}-[0-9]{2}$'),  -- month it belongs to
    PRIMARY KEY (invoice_id, line_no)
);
