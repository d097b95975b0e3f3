-- The e-invoice each tenant receives (docs/einvoicing.md, billing.legal).
--
-- From the namespace annotations <prefix>einvoice (facturx, ubl or xrechnung; any
-- other value is kept as given and holds the tenant's documents with the reason)
-- and <prefix>buyer-reference (BT-10: a Leitweg-ID for German public buyers), with
-- overrides that win over them as the other legal fields' do.
ALTER TABLE openfaas_metering.tenants
    ADD COLUMN einvoice                 text,
    ADD COLUMN buyer_reference          text,
    ADD COLUMN einvoice_override        text
        CHECK (einvoice_override IN ('facturx', 'ubl', 'xrechnung')),
    ADD COLUMN buyer_reference_override text;

-- Frozen at finalization beside the other legal fields: which e-invoice the document
-- is (NULL on older documents: Factur-X), the buyer reference it states, and the
-- supplier's contact (ISSUER_CONTACT_*: {"name", "telephone", "email"}, BG-6).
ALTER TABLE openfaas_metering.invoices
    ADD COLUMN einvoice_format text CHECK (einvoice_format IN ('facturx', 'ubl', 'xrechnung')),
    ADD COLUMN buyer_reference text,
    ADD COLUMN issuer_contact  jsonb;

CREATE OR REPLACE FUNCTION openfaas_metering.document_frozen_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT openfaas_metering.document_frozen_columns_before_vat()
           || ARRAY['vat_currency', 'vat_exchange_rate', 'vat_exchange_source',
                    'vat_tax_converted', 'usage_csv', 'bill_to_postal', 'issuer_postal',
                    'tax_category', 'einvoice_format', 'buyer_reference', 'issuer_contact']
$$;
