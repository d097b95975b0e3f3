-- VAT in the member state's currency when the invoice is in another (Directive
-- 2006/112/EC art. 230): with ISSUER_VAT_CURRENCY set, the operator supplies one
-- exchange rate per month and currency pair (scripts/vat-rate), with its source
-- (e.g. "ECB reference rate 2026-09-30"); finalization freezes the rate, its
-- source and the VAT converted on the document. A document that needs a rate the
-- month does not have stays in draft.
CREATE TABLE openfaas_metering.vat_exchange_rates (
    period         text NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    from_currency  text NOT NULL CHECK (from_currency ~ '^[A-Z]{3}$'),
    to_currency    text NOT NULL CHECK (to_currency ~ '^[A-Z]{3}$'),
    rate           numeric NOT NULL CHECK (rate > 0),   -- 1 from_currency = rate to_currency
    source         text NOT NULL CHECK (btrim(source) <> ''),
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (period, from_currency, to_currency),
    CHECK (from_currency <> to_currency)
);

ALTER TABLE openfaas_metering.invoices
    ADD COLUMN vat_currency        text,     -- ISSUER_VAT_CURRENCY, when it differs from currency
    ADD COLUMN vat_exchange_rate   numeric,  -- 1 currency = vat_exchange_rate vat_currency
    ADD COLUMN vat_exchange_source text,
    ADD COLUMN vat_tax_converted   numeric;  -- tax in vat_currency, rounded to its minor unit

-- Frozen like the other legal fields (051's list and these four).
CREATE OR REPLACE FUNCTION openfaas_metering.document_frozen_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['number', 'number_year', 'number_seq', 'namespace', 'period', 'period_start',
                 'period_end', 'billing_timezone', 'plan', 'currency', 'price_book_version',
                 'bill_to_name', 'bill_to_email', 'locale', 'subtotal', 'tax_rate', 'tax',
                 'total', 'issued_at', 'inputs', 'inputs_sha256', 'lines_sha256',
                 'bill_to_address', 'bill_to_tax_id', 'issuer_name', 'issuer_address',
                 'issuer_tax_id', 'issuer_payment_details', 'payment_terms_days', 'due_date',
                 'tax_note', 'vat_currency', 'vat_exchange_rate', 'vat_exchange_source',
                 'vat_tax_converted']
$$;
