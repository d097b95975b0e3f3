-- Payment reminders: one row per (document, step), a step being a number of days after
-- the due date from REMINDER_DAYS. The hourly run (aggregate-month) writes the row and
-- its mail (mail_outbox kind 'reminder', subject '<invoice_id>/<days>') in the
-- transaction that finds the document overdue; the primary key makes a re-run or a
-- race write it once. The mail outbox checks again, inside its claim, that something
-- is still open: a payment, credit note or void recorded in between withdraws it.
CREATE TABLE openfaas_metering.payment_reminders (
    invoice_id     uuid        NOT NULL REFERENCES openfaas_metering.invoices (invoice_id),
    days_after_due integer     NOT NULL CHECK (days_after_due > 0),
    namespace      text        NOT NULL,
    decided_at     timestamptz NOT NULL DEFAULT now(),
    status         text        NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'sent', 'undeliverable', 'withdrawn')),
    open_amount    numeric,                  -- what the mail said was open
    sent_at        timestamptz,
    message_id     text,
    reason         text,                     -- why undeliverable or withdrawn
    PRIMARY KEY (invoice_id, days_after_due)
);
CREATE INDEX payment_reminders_namespace ON openfaas_metering.payment_reminders (namespace);

-- a mail its kind no longer wants when it is claimed (a reminder of a document paid
-- in the meantime) is withdrawn, with the reason in last_error
ALTER TABLE openfaas_metering.mail_outbox DROP CONSTRAINT mail_outbox_status_check,
    ADD CONSTRAINT mail_outbox_status_check
        CHECK (status IN ('pending', 'sent', 'undeliverable', 'withdrawn'));
