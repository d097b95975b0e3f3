-- One row per mail to be sent exactly once, whatever it is about: an invoice,
-- a budget crossing (and, next, a payment reminder). chargeback.mail.outbox
-- claims, sends and records it; the row it is about (its kind and subject_id)
-- learns the outcome in the same transaction that records it.
--
-- pending -> sent | undeliverable. A sender claims a due row by writing a
-- fresh claim_token and moving next_attempt_at to the end of its lease
-- (SEND_CLAIM_TIMEOUT_SECONDS); a transient failure moves it to the attempt's
-- backoff instead, and past MAIL_MAX_ATTEMPTS the mail is undeliverable with
-- the reason. A failure after the message was transmitted keeps the lease:
-- the server may have the mail, so it is not sent again before the lease ends.
CREATE TABLE openfaas_metering.mail_outbox (
    kind             text        NOT NULL,   -- 'invoice', 'budget', ...
    subject_id       text        NOT NULL,   -- the row it is about (invoice_id, crossing_id)
    namespace        text        NOT NULL,   -- the tenant it goes to
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sent', 'undeliverable')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    claim_token      uuid,                   -- the holder of the current attempt
    claimed_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    message_id       text,                   -- the same on every attempt
    last_error       text,
    undeliverable_reason text,
    PRIMARY KEY (kind, subject_id),
    CHECK (status <> 'sent' OR (sent_at IS NOT NULL AND message_id IS NOT NULL)),
    CHECK (status <> 'undeliverable' OR undeliverable_reason IS NOT NULL)
);
CREATE INDEX mail_outbox_due ON openfaas_metering.mail_outbox (kind, next_attempt_at)
    WHERE status = 'pending';

-- the budget mails still pending move over; their claims are dropped (a sender
-- that held one sent it again with the same Message-ID)
INSERT INTO openfaas_metering.mail_outbox (kind, subject_id, namespace, attempts, created_at)
SELECT 'budget', crossing_id::text, namespace, mail_attempts, crossed_at
  FROM openfaas_metering.budget_crossings
 WHERE mail_status = 'pending';
ALTER TABLE openfaas_metering.budget_crossings
    DROP COLUMN mail_claimed_at,
    DROP COLUMN mail_attempts;
