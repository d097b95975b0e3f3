-- Payments the operator records or imports from bank statements (camt.053). A payment
-- names the document it pays; what it pays beyond that document's open amount is the
-- tenant's balance (billing.payments derives every standing from these rows and the
-- documents, so nothing here is ever updated). A reference is the bank's (or the
-- operator's) id of the transfer: the same reference twice for a tenant is one payment,
-- so importing a statement again records nothing twice.
CREATE TABLE openfaas_metering.payments (
    payment_id  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    namespace   text        NOT NULL REFERENCES openfaas_metering.tenants (namespace),
    invoice_id  uuid        NOT NULL REFERENCES openfaas_metering.invoices (invoice_id),
    currency    text        NOT NULL,
    amount      numeric     NOT NULL CHECK (amount > 0),
    received_on date        NOT NULL,
    reference   text        NOT NULL,
    source      text        NOT NULL CHECK (source IN ('operator', 'camt053')),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace, reference)
);
CREATE INDEX payments_invoice ON openfaas_metering.payments (invoice_id);

-- Each payable document's standing as last derived: a change of status is a fact
-- (invoice.paid, invoice.payment_overdue go to the outbox in the same transaction).
CREATE TABLE openfaas_metering.document_payment_status (
    invoice_id  uuid        PRIMARY KEY REFERENCES openfaas_metering.invoices (invoice_id),
    namespace   text        NOT NULL,
    status      text        NOT NULL
                CHECK (status IN ('open', 'partially_paid', 'paid', 'overdue', 'voided')),
    paid        numeric     NOT NULL,
    open_amount numeric     NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX document_payment_status_unsettled
    ON openfaas_metering.document_payment_status (namespace)
    WHERE status NOT IN ('paid', 'voided');
