-- invoices.send_claimed_at and send_attempts date from before the mail outbox: since
-- email-invoice sends through it (claims, attempts and errors live on the outbox row),
-- nothing sets them but to NULL. Dropped, and with them their names in the list of
-- columns a finalized document may still change. The document text of the hash chain
-- (document_text) leaves the delivery columns out, so every stored hash still holds.
ALTER TABLE openfaas_metering.invoices
    DROP COLUMN send_claimed_at,
    DROP COLUMN send_attempts;

CREATE OR REPLACE FUNCTION openfaas_metering.document_delivery_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['status', 'queued_at', 'queued_count', 'last_send_error', 'sent_at',
                 'message_id', 'undeliverable_reason']
$$;
