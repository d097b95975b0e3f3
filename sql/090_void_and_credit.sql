-- Void, reissue and the operator's credit notes (aggregate-month's "void" and "credit").
--
-- An operator credit note is an ordinary credit note (document_kind 'credit_note',
-- its own gap-free CN series, corrects_invoice_id = the document it credits) that
-- carries the operator's reason: credit_reason IS NOT NULL tells it from a credit
-- note a correction issued. A voided document keeps its number and its bytes;
-- voided_by names the credit note that took off what was left of it. A reissue is
-- a month's invoice again (document_kind 'invoice') that names the one it replaces.
ALTER TABLE openfaas_metering.invoices
    ADD COLUMN voided_by           uuid REFERENCES openfaas_metering.invoices (invoice_id),
    ADD COLUMN voided_at           timestamptz,
    ADD COLUMN replaces_invoice_id uuid REFERENCES openfaas_metering.invoices (invoice_id),
    ADD COLUMN credit_reason       text CHECK (credit_reason IN (
        'duplicated_charge', 'product_unsatisfactory', 'order_change', 'order_cancellation',
        'fraudulent_charge', 'other')),
    ADD COLUMN credit_memo         text,   -- the operator's free text beside the reason
    ADD CONSTRAINT invoices_void_pair CHECK ((voided_by IS NULL) = (voided_at IS NULL)),
    ADD CONSTRAINT invoices_operator_credit_is_credit_note
        CHECK (credit_reason IS NULL OR document_kind = 'credit_note'),
    ADD CONSTRAINT invoices_reissue_is_invoice
        CHECK (replaces_invoice_id IS NULL OR document_kind = 'invoice');

-- One month's invoice per tenant, plus its reissues: each replaces one document, once.
DROP INDEX openfaas_metering.invoices_one_per_month;
CREATE UNIQUE INDEX invoices_one_per_month ON openfaas_metering.invoices (namespace, period)
    WHERE document_kind = 'invoice' AND replaces_invoice_id IS NULL;
CREATE UNIQUE INDEX invoices_reissued_once ON openfaas_metering.invoices (replaces_invoice_id)
    WHERE replaces_invoice_id IS NOT NULL;

-- What the document says (050): the reason and the replaced invoice never change.
CREATE OR REPLACE FUNCTION openfaas_metering.document_frozen_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['number', 'number_year', 'number_seq', 'namespace', 'period', 'period_start',
                 'period_end', 'billing_timezone', 'plan', 'currency', 'price_book_version',
                 'bill_to_name', 'bill_to_email', 'locale', 'subtotal', 'tax_rate', 'tax',
                 'total', 'issued_at', 'inputs', 'inputs_sha256', 'lines_sha256',
                 'bill_to_address', 'bill_to_tax_id', 'issuer_name', 'issuer_address',
                 'issuer_tax_id', 'issuer_payment_details', 'payment_terms_days', 'due_date',
                 'tax_note', 'replaces_invoice_id', 'credit_reason', 'credit_memo']
$$;

-- voided_by / voided_at move like a delivery status, but exactly once: 050's rule lets
-- a NULL column be set once and refuses any later change (also back to NULL). This
-- trigger adds what that rule cannot know: only a finalized invoice or supplementary
-- invoice is voided, by a credit note of the same tenant that credits it.
CREATE FUNCTION openfaas_metering.check_void() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.voided_by IS NOT NULL AND OLD.voided_by IS NULL THEN
        IF OLD.status = 'draft' OR OLD.document_kind = 'credit_note' THEN
            RAISE EXCEPTION '% cannot be voided: only a finalized invoice can', OLD.number
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM openfaas_metering.invoices c
                        WHERE c.invoice_id = NEW.voided_by AND c.document_kind = 'credit_note'
                          AND c.corrects_invoice_id = OLD.invoice_id) THEN
            RAISE EXCEPTION '% can be voided only by a credit note that credits it', OLD.number
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER invoices_void BEFORE UPDATE OF voided_by ON openfaas_metering.invoices
    FOR EACH ROW EXECUTE FUNCTION openfaas_metering.check_void();

-- The document's SHA-256 (050) covers what it says, not that it was voided later:
-- voided_by / voided_at are left out, so voiding a sealed invoice keeps its chain intact
-- (the credit note that voids it is sealed in its own series). Unchanged otherwise;
-- both columns are NULL on every older document, so no stored hash changes.
CREATE OR REPLACE FUNCTION openfaas_metering.document_text(doc uuid, previous text) RETURNS text
LANGUAGE sql STABLE SET TimeZone = 'UTC' SET bytea_output = 'hex' AS $$
SELECT (jsonb_strip_nulls(to_jsonb(i) - openfaas_metering.document_delivery_columns()
                          - ARRAY['invoice_id', 'computed_at', 'draft_reasons', 'inputs',
                                  'previous_sha256', 'document_sha256', 'voided_by',
                                  'voided_at'])
        || jsonb_build_object(
            'previous_sha256', $2,  -- the argument ($2), not the column of that name
            'lines', (SELECT coalesce(jsonb_agg(jsonb_strip_nulls(to_jsonb(l) - 'invoice_id')
                                                ORDER BY l.line_no), '[]')
                        FROM openfaas_metering.invoice_lines l
                       WHERE l.invoice_id = i.invoice_id)))::text
  FROM openfaas_metering.invoices i WHERE i.invoice_id = doc
$$;
