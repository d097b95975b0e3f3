-- What EN 16931 needs beyond 051's free text (billing.legal, billing.postal).
--
-- A tenant's postal address from the structured namespace annotations
-- <prefix>address-street, -postcode, -city and -country, as given
-- ({"street", "postcode", "city", "country"}); the free-text address (051) stays.
-- A tenant whose tax rate differs from its plan's, or whose 0 % is of another
-- kind, says which VAT category (UNCL 5305) applies.
ALTER TABLE openfaas_metering.tenants
    ADD COLUMN postal_address        jsonb,
    ADD COLUMN tax_category_override text
        CHECK (tax_category_override IN ('S', 'AE', 'O', 'E', 'K', 'G', 'Z'));

-- Frozen at finalization beside 051's fields: both parties' addresses parsed
-- ({"street": [...], "postcode", "city", "country": ISO 3166-1 alpha-2}) and the
-- document's VAT category, which the e-invoice states (BT-151, BT-118).
ALTER TABLE openfaas_metering.invoices
    ADD COLUMN bill_to_postal jsonb,
    ADD COLUMN issuer_postal  jsonb,
    ADD COLUMN tax_category   text;

CREATE OR REPLACE FUNCTION openfaas_metering.document_frozen_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT openfaas_metering.document_frozen_columns_before_vat()
           || ARRAY['vat_currency', 'vat_exchange_rate', 'vat_exchange_source',
                    'vat_tax_converted', 'usage_csv', 'bill_to_postal', 'issuer_postal',
                    'tax_category']
$$;
