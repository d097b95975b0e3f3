-- Corrections of a closed month, subscriptions, the operator's price book.
--
-- Documents. The invoices table holds every billing document: a month's
-- invoice, and the corrections of that month: a supplementary invoice (more
-- is owed; same gap-free number series as invoices) or a credit note (less is
-- owed; its own gap-free series per calendar year of issue, CREDIT_NOTE_PREFIX).
-- A correction names the invoice it corrects; the documents of one month add
-- up to pricing that month from scratch with everything now known about it.
ALTER TABLE openfaas_metering.invoices
    ADD COLUMN document_kind text NOT NULL DEFAULT 'invoice'
        CHECK (document_kind IN ('invoice', 'supplementary', 'credit_note')),
    ADD COLUMN corrects_invoice_id uuid REFERENCES openfaas_metering.invoices (invoice_id),
    ADD COLUMN correction_no integer,   -- 1, 2, ... per corrected invoice
    -- the usage CSV attached to the document, built once at finalization
    ADD COLUMN usage_csv text,
    ADD COLUMN usage_csv_sha256 text,
    ADD CONSTRAINT invoices_correction_refers
        CHECK ((document_kind = 'invoice') = (corrects_invoice_id IS NULL)
               AND (document_kind = 'invoice') = (correction_no IS NULL)),
    -- never a negative invoice; a credit note's figures are negative (what it takes off)
    ADD CONSTRAINT invoices_sign_of_kind
        CHECK (total IS NULL OR (document_kind = 'credit_note') = (total < 0));

ALTER TABLE openfaas_metering.invoices DROP CONSTRAINT invoices_namespace_period_key;
CREATE UNIQUE INDEX invoices_one_per_month ON openfaas_metering.invoices (namespace, period)
    WHERE document_kind = 'invoice';
CREATE UNIQUE INDEX invoices_correction_once
    ON openfaas_metering.invoices (corrects_invoice_id, correction_no)
    WHERE corrects_invoice_id IS NOT NULL;

ALTER TABLE openfaas_metering.invoices DROP CONSTRAINT invoices_number_year_number_seq_key;
CREATE UNIQUE INDEX invoices_number_series ON openfaas_metering.invoices
    ((document_kind = 'credit_note'), number_year, number_seq);

-- The next credit note number per calendar year of issue (invoices and
-- supplementary invoices keep invoice_number_counters).
CREATE TABLE openfaas_metering.credit_note_number_counters (
    year      integer PRIMARY KEY,
    last_seq  integer NOT NULL DEFAULT 0
);

-- Lines of a correction are differences per line of the month (quantity and
-- amount may be negative); `corrects_period` says which month.
ALTER TABLE openfaas_metering.invoice_lines
    ADD COLUMN gross numeric,            -- before the discount, rounded (gross - discount = amount)
    ADD COLUMN billed_days integer,      -- base fee / commitment: days of the period subscribed
    ADD COLUMN period_days integer;      -- ... of so many

-- A closed month is re-read for late usage only when the daily rollup has a
-- row of its days written after `usage_checked_at` (set at its close and at
-- every correction check), so a close does not grow with history.
ALTER TABLE openfaas_metering.closed_periods
    ADD COLUMN usage_checked_at timestamptz;
UPDATE openfaas_metering.closed_periods SET usage_checked_at = closed_at;
ALTER TABLE openfaas_metering.closed_periods ALTER COLUMN usage_checked_at SET NOT NULL;
ALTER TABLE openfaas_metering.closed_periods ALTER COLUMN usage_checked_at SET DEFAULT now();
CREATE INDEX function_usage_daily_updated ON openfaas_metering.function_usage_daily
    (updated_at);

-- Subscriptions: from the first tick of meter-capacity that listed the
-- namespace until the first tick that no longer did (gone_at; NULL while it
-- is there). A tenant with subscribed_at NULL was never seen by
-- meter-capacity: it is billed only in months with usage.
ALTER TABLE openfaas_metering.tenants
    ADD COLUMN subscribed_at timestamptz,
    ADD COLUMN gone_at       timestamptz;

-- The price book version in force is the one activated last: storing a new
-- text activates it, and so does loading an already stored text again with
-- scripts/pricebook load (the operator's last act wins).
ALTER TABLE openfaas_metering.price_book_versions
    ADD COLUMN activated_at timestamptz;
UPDATE openfaas_metering.price_book_versions SET activated_at = loaded_at;
ALTER TABLE openfaas_metering.price_book_versions ALTER COLUMN activated_at SET NOT NULL;
ALTER TABLE openfaas_metering.price_book_versions ALTER COLUMN activated_at SET DEFAULT clock_timestamp();
