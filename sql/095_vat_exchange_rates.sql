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

-- Frozen like the other legal fields: the list as it stood, and these four.
ALTER FUNCTION openfaas_metering.document_frozen_columns()
    RENAME TO document_frozen_columns_before_vat;
CREATE FUNCTION openfaas_metering.document_frozen_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT openfaas_metering.document_frozen_columns_before_vat()
           || ARRAY['vat_currency', 'vat_exchange_rate', 'vat_exchange_source',
                    'vat_tax_converted']
$$;
