-- Usage CSVs apart from their documents, by their SHA-256.
--
-- A finalized document's usage CSV (billing.export) was stored in its own
-- invoices row (usage_csv), so every conversion of that row to JSON (the seal's
-- document_text at commit, the immutability trigger on each delivery UPDATE)
-- converted the CSV too: hundreds of kilobytes a tenant, and most of a month
-- close's time. A document finalized from now on keeps only usage_csv_sha256 in
-- its row (covered by its document_sha256, as before); the text is here, built
-- and hashed by PostgreSQL in the finalizing transaction, and never changes.
-- usage_csv stays NULL on those rows, so document_text (050, 090), which leaves
-- NULL columns out, hashes older documents (their CSV in the row) as it did.
CREATE TABLE openfaas_metering.document_usage_csvs (
    sha256 text PRIMARY KEY,   -- encode(sha256(convert_to(csv, 'UTF8')), 'hex')
    csv    text NOT NULL
);
-- Stored uncompressed: pglz took 0.5 s of a 10-million-event close for its 1,000
-- CSVs (84 MB, about three times what pglz keeps), next to the gigabytes of raw
-- events they sum up.
ALTER TABLE openfaas_metering.document_usage_csvs ALTER COLUMN csv SET STORAGE EXTERNAL;

-- Content addressed: a row is its hash, so it never changes and is never removed
-- (documents that share a text share the row).
CREATE FUNCTION openfaas_metering.refuse_usage_csv_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'usage CSV %: stored CSVs cannot change or be removed',
        CASE WHEN TG_LEVEL = 'ROW' THEN OLD.sha256 ELSE '(all)' END
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TRIGGER document_usage_csvs_immutable BEFORE UPDATE OR DELETE ON openfaas_metering.document_usage_csvs
    FOR EACH ROW EXECUTE FUNCTION openfaas_metering.refuse_usage_csv_change();
CREATE TRIGGER document_usage_csvs_no_truncate BEFORE TRUNCATE ON openfaas_metering.document_usage_csvs
    FOR EACH STATEMENT EXECUTE FUNCTION openfaas_metering.refuse_truncate();

-- usage_csv stays what it was at finalization: NULL on a document from now on (its
-- CSV is the one usage_csvs holds under its usage_csv_sha256), never set later.
CREATE OR REPLACE FUNCTION openfaas_metering.document_frozen_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT openfaas_metering.document_frozen_columns_before_vat()
           || ARRAY['vat_currency', 'vat_exchange_rate', 'vat_exchange_source',
                    'vat_tax_converted', 'usage_csv']
$$;
