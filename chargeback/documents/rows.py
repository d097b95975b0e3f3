"""A document as the database holds it, read into the one model (documents.model): the
invoice as addressed at finalization, its lines (billing.lines), its supplier, its
usage CSV."""
from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from chargeback.billing import legal
from chargeback.billing.export import usage_csv
from chargeback.billing.lines import stored_lines
from chargeback.core.settings import Settings
from chargeback.documents.model import Invoice, Issuer

# The invoice as addressed at finalization; what it left empty, the tenant's current details.
_INVOICE = """
SELECT i.invoice_id::text AS invoice_id, i.number, i.namespace, i.period, i.period_start,
       i.period_end, i.billing_timezone, i.issued_at, i.currency,
       coalesce(i.bill_to_name, t.display_name_override, t.display_name, i.namespace)
           AS bill_to_name,
       coalesce(i.bill_to_email, t.email_override, t.email) AS bill_to_email,
       coalesce(i.locale, t.locale_override, t.locale, '') AS locale,
       i.subtotal, coalesce(i.tax_rate, 0) AS tax_rate, i.tax, i.total, i.plan,
       i.bill_to_address, i.bill_to_tax_id, i.due_date, i.payment_terms_days, i.tax_note,
       i.issuer_name, i.issuer_address, i.issuer_tax_id, i.issuer_payment_details,
       i.document_kind, c.number AS corrects,
       (c.issued_at AT TIME ZONE c.billing_timezone)::date AS corrects_issued,
       i.vat_currency, i.vat_exchange_rate, i.vat_exchange_source, i.vat_tax_converted,
       r.number AS replaces, (r.issued_at AT TIME ZONE r.billing_timezone)::date
           AS replaces_issued, i.credit_reason, i.bill_to_postal, i.issuer_postal,
       i.tax_category, i.einvoice_format, i.buyer_reference, i.issuer_contact
  FROM openfaas_metering.invoices AS i
  JOIN openfaas_metering.tenants AS t USING (namespace)
  LEFT JOIN openfaas_metering.invoices AS c ON c.invoice_id = i.corrects_invoice_id
  LEFT JOIN openfaas_metering.invoices AS r ON r.invoice_id = i.replaces_invoice_id
 WHERE i.invoice_id = %s
"""

# the supplier frozen on the document (documents.model.Issuer), not the Invoice's fields
_ISSUER_COLUMNS = ("issuer_name", "issuer_address", "issuer_tax_id", "issuer_payment_details",
                   "issuer_postal", "issuer_contact")


def read_document(conn: psycopg.Connection, invoice_id: str, settings: Settings
                  ) -> tuple[Invoice, Issuer]:
    """The invoice as it is rendered, with its lines, and its supplier."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_INVOICE, (invoice_id,)).fetchone()
    fields = {k: v for k, v in row.items() if k not in _ISSUER_COLUMNS}
    invoice = Invoice(**{**fields, "bill_to_address": legal.lines(row["bill_to_address"]),
                         "lines": tuple(stored_lines(conn, invoice_id))})
    return invoice, _issuer(row, settings)


def _issuer(row: dict, settings: Settings) -> Issuer:
    """The supplier as frozen on the invoice at finalization; an invoice finalized before
    the supplier was stored (issuer_name NULL) falls back to ISSUER_*. The contact
    address (Reply-To, else From) is the mail's, not the document's."""
    contact = settings.mail_reply_to or settings.mail_from
    if row["issuer_name"] is None:
        return Issuer(settings.issuer_name, settings.issuer_address, settings.issuer_tax_id,
                      contact, settings.issuer_payment_details)
    return Issuer(row["issuer_name"], legal.lines(row["issuer_address"]),
                  row["issuer_tax_id"], contact, legal.lines(row["issuer_payment_details"]),
                  row["issuer_postal"], row["issuer_contact"])


def read_invoice(conn: psycopg.Connection, invoice_id: str, settings: Settings
                 ) -> tuple[Invoice, Issuer, str]:
    """The invoice as it is rendered, its supplier, and its usage CSV (aggregate-month's
    export)."""
    invoice, issuer = read_document(conn, invoice_id, settings)
    return invoice, issuer, usage_csv(conn, invoice_id)
