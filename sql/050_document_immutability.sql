-- A finalized document cannot change, in the database itself: triggers refuse
-- any UPDATE of what it says and any DELETE of it or its lines, whoever runs
-- the statement. Only the delivery bookkeeping moves after finalization
-- (status among the non-draft states, queued_*, send_*, sent_at,
-- message_id, undeliverable_reason, last_send_error); a column that is still
-- NULL may be set once (what is stored beside a document at finalization,
-- such as the hash chain below), except what the document says (number,
-- figures, addressee, hashes of its inputs and lines: document_frozen_columns).
--
-- Hash chain: each finalized document stores the SHA-256 of its own content
-- (figures, addressee, lines) and of the document before it in its series
-- (same number prefix and year, number_seq - 1), so `verify` notices a
-- document that was removed or altered with the triggers disabled.

ALTER TABLE openfaas_metering.invoices
    ADD COLUMN previous_sha256 text,   -- document_sha256 of the previous document in the series
    ADD COLUMN document_sha256 text;   -- SHA-256 of document_text(this, previous_sha256)

-- What a finalized document says: never changes, not even from NULL.
CREATE FUNCTION openfaas_metering.document_frozen_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['number', 'number_year', 'number_seq', 'namespace', 'period', 'period_start',
                 'period_end', 'billing_timezone', 'plan', 'currency', 'price_book_version',
                 'bill_to_name', 'bill_to_email', 'locale', 'subtotal', 'tax_rate', 'tax',
                 'total', 'issued_at', 'inputs', 'inputs_sha256', 'lines_sha256']
$$;

-- The columns that may change on a finalized document.
CREATE FUNCTION openfaas_metering.document_delivery_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['status', 'queued_at', 'queued_count', 'send_claimed_at', 'send_attempts',
                 'last_send_error', 'sent_at', 'message_id', 'undeliverable_reason']
$$;

CREATE FUNCTION openfaas_metering.refuse_finalized_invoice_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'invoice % is finalized: it cannot be deleted', OLD.number
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status = 'draft' OR OLD.document_sha256 IS NULL THEN
        -- a draft is recomputed freely; the finalizing transaction completes its
        -- document until the seal at its commit
        RETURN NEW;
    END IF;
    IF NEW.status = 'draft' THEN
        RAISE EXCEPTION 'invoice % is finalized: it cannot become a draft again', OLD.number
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    -- every column but the delivery ones: unchanged, or set once from NULL
    SELECT string_agg(o.key, ', ' ORDER BY o.key) INTO changed
      FROM jsonb_each(to_jsonb(OLD) - openfaas_metering.document_delivery_columns()) AS o
     WHERE (o.value <> 'null'::jsonb OR o.key = ANY(openfaas_metering.document_frozen_columns()))
       AND o.value IS DISTINCT FROM to_jsonb(NEW) -> o.key;
    IF changed IS NOT NULL THEN
        RAISE EXCEPTION 'invoice % is finalized: % cannot change', OLD.number, changed
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON openfaas_metering.invoices
    FOR EACH ROW EXECUTE FUNCTION openfaas_metering.refuse_finalized_invoice_change();

CREATE FUNCTION openfaas_metering.refuse_finalized_line_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    line_of openfaas_metering.invoices;
BEGIN
    SELECT * INTO line_of FROM openfaas_metering.invoices
     WHERE invoice_id = CASE WHEN TG_OP = 'INSERT' THEN NEW.invoice_id ELSE OLD.invoice_id END;
    -- lines are written in the finalizing transaction, before the chain seals it
    IF line_of.status <> 'draft' AND (TG_OP <> 'INSERT' OR line_of.document_sha256 IS NOT NULL)
    THEN
        RAISE EXCEPTION 'invoice % is finalized: its lines cannot change', line_of.number
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;

CREATE TRIGGER invoice_lines_immutable BEFORE INSERT OR UPDATE OR DELETE
    ON openfaas_metering.invoice_lines
    FOR EACH ROW EXECUTE FUNCTION openfaas_metering.refuse_finalized_line_change();

CREATE FUNCTION openfaas_metering.refuse_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM openfaas_metering.invoices WHERE status <> 'draft') THEN
        RAISE EXCEPTION '% holds finalized documents: it cannot be truncated', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER invoices_no_truncate BEFORE TRUNCATE ON openfaas_metering.invoices
    FOR EACH STATEMENT EXECUTE FUNCTION openfaas_metering.refuse_truncate();
CREATE TRIGGER invoice_lines_no_truncate BEFORE TRUNCATE ON openfaas_metering.invoice_lines
    FOR EACH STATEMENT EXECUTE FUNCTION openfaas_metering.refuse_truncate();

-- What a document's SHA-256 covers: canonical JSON (jsonb's text form: keys in
-- a fixed order, numerics as stored, instants in UTC and bytes in hex whatever
-- the session says). NULL columns are left out, so a column added later that
-- is NULL on older documents leaves their hashes as they were.
CREATE FUNCTION openfaas_metering.document_text(doc uuid, previous text) RETURNS text
LANGUAGE sql STABLE SET TimeZone = 'UTC' SET bytea_output = 'hex' AS $$
SELECT (jsonb_strip_nulls(to_jsonb(i) - openfaas_metering.document_delivery_columns()
                          - ARRAY['invoice_id', 'computed_at', 'draft_reasons', 'inputs',
                                  'previous_sha256', 'document_sha256'])
        || jsonb_build_object(
            'previous_sha256', $2,  -- the argument ($2), not the column of that name
            'lines', (SELECT coalesce(jsonb_agg(jsonb_strip_nulls(to_jsonb(l) - 'invoice_id')
                                                ORDER BY l.line_no), '[]')
                        FROM openfaas_metering.invoice_lines l
                       WHERE l.invoice_id = i.invoice_id)))::text
  FROM openfaas_metering.invoices i WHERE i.invoice_id = doc
$$;

CREATE FUNCTION openfaas_metering.document_sha256(doc uuid, previous text) RETURNS text
LANGUAGE sql STABLE AS $$
SELECT encode(sha256(convert_to(openfaas_metering.document_text(doc, previous), 'UTF8')), 'hex')
$$;

-- The series a numbered document belongs to: its number without the sequence
-- (INV-2026-000042 -> INV-2026-).
CREATE FUNCTION openfaas_metering.document_series(number text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT regexp_replace(number, '[0-9]+$', '') $$;

CREATE INDEX invoices_series ON openfaas_metering.invoices
    (openfaas_metering.document_series(number), number_seq) WHERE number IS NOT NULL;

-- Seal every finalized, unsealed document of `series` in number order.
CREATE FUNCTION openfaas_metering.seal_series(series text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    doc record;
    previous text;
BEGIN
    FOR doc IN SELECT invoice_id, number_seq FROM openfaas_metering.invoices
                WHERE openfaas_metering.document_series(number) = series
                  AND status <> 'draft' AND document_sha256 IS NULL
                ORDER BY number_seq FOR UPDATE
    LOOP
        SELECT document_sha256 INTO previous FROM openfaas_metering.invoices
         WHERE openfaas_metering.document_series(number) = series
           AND number_seq = doc.number_seq - 1;
        UPDATE openfaas_metering.invoices
           SET previous_sha256 = previous,
               document_sha256 = openfaas_metering.document_sha256(doc.invoice_id, previous)
         WHERE invoice_id = doc.invoice_id;
    END LOOP;
END $$;

-- Sealed when the finalizing transaction commits (deferred), after its lines
-- were written; the numbers' counter row serializes finalizers of a series.
CREATE FUNCTION openfaas_metering.seal_on_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM openfaas_metering.seal_series(openfaas_metering.document_series(NEW.number));
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER invoices_seal AFTER INSERT OR UPDATE ON openfaas_metering.invoices
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.status <> 'draft' AND NEW.document_sha256 IS NULL)
    EXECUTE FUNCTION openfaas_metering.seal_on_commit();

-- Documents finalized before this migration join the chain now.
SELECT openfaas_metering.seal_series(s)
  FROM (SELECT DISTINCT openfaas_metering.document_series(number) AS s
          FROM openfaas_metering.invoices WHERE number IS NOT NULL) AS series;
