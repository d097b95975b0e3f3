-- What an EU VAT invoice must say (Directive 2006/112/EC art. 226), frozen on
-- the document when it is finalized and never read again at send time.

-- The customer's postal address (lines separated by newlines) and VAT/tax ID:
-- from the namespace annotations <prefix>address and <prefix>tax-id, or the
-- operator's overrides; a tax note (reverse charge, exemption) per tenant
-- overrides the plan's.
ALTER TABLE openfaas_metering.tenants
    ADD COLUMN address            text,
    ADD COLUMN tax_id             text,
    ADD COLUMN address_override   text,
    ADD COLUMN tax_id_override    text,
    ADD COLUMN tax_note_override  text;

ALTER TABLE openfaas_metering.invoices
    ADD COLUMN bill_to_address        text,
    ADD COLUMN bill_to_tax_id         text,
    ADD COLUMN issuer_name            text,   -- the supplier, from ISSUER_* at finalization
    ADD COLUMN issuer_address         text,
    ADD COLUMN issuer_tax_id          text,
    ADD COLUMN issuer_payment_details text,   -- IBAN/BIC or a payment URL
    ADD COLUMN payment_terms_days     integer CHECK (payment_terms_days >= 0),
    ADD COLUMN due_date               date,
    ADD COLUMN tax_note               text;   -- printed when the tax rate is 0

-- Once sealed these never change either (050: a finalizing transaction may
-- still complete its document before the seal).
CREATE OR REPLACE FUNCTION openfaas_metering.document_frozen_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['number', 'number_year', 'number_seq', 'namespace', 'period', 'period_start',
                 'period_end', 'billing_timezone', 'plan', 'currency', 'price_book_version',
                 'bill_to_name', 'bill_to_email', 'locale', 'subtotal', 'tax_rate', 'tax',
                 'total', 'issued_at', 'inputs', 'inputs_sha256', 'lines_sha256',
                 'bill_to_address', 'bill_to_tax_id', 'issuer_name', 'issuer_address',
                 'issuer_tax_id', 'issuer_payment_details', 'payment_terms_days', 'due_date',
                 'tax_note']
$$;
