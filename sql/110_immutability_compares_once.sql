-- The immutability trigger of sql/050 compared each column of a finalized document
-- with to_jsonb(NEW) -> column, which PostgreSQL evaluated once per column: some
-- sixty conversions of the whole row, its stored usage CSV included (hundreds of
-- kilobytes for a tenant with many functions), for every delivery bookkeeping
-- UPDATE (claiming for the hand-off, claiming a send, marking it sent). The same
-- rule, with the row converted once on each side.
CREATE OR REPLACE FUNCTION openfaas_metering.refuse_finalized_invoice_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed text;
    before jsonb;
    after jsonb;
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
    before := to_jsonb(OLD) - openfaas_metering.document_delivery_columns();
    after := to_jsonb(NEW);
    SELECT string_agg(o.key, ', ' ORDER BY o.key) INTO changed
      FROM jsonb_each(before) AS o
     WHERE (o.value <> 'null'::jsonb OR o.key = ANY(openfaas_metering.document_frozen_columns()))
       AND o.value IS DISTINCT FROM after -> o.key;
    IF changed IS NOT NULL THEN
        RAISE EXCEPTION 'invoice % is finalized: % cannot change', OLD.number, changed
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
