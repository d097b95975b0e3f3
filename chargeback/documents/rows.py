"""A document as the database holds it, read into the one model (documents.model): the
invoice as addressed at finalization, its lines, its supplier, its usage CSV."""
from __future__ import annotations

from decimal import Decimal

from chargeback.billing import legal
from chargeback.billing.export import usage_csv
from chargeback.core.settings import Settings
from chargeback.documents.model import Invoice, InvoiceLine, Issuer, parse_tiers

# The invoice as addressed at finalization; what it left empty, the tenant's current details.
_INVOICE = """
SELECT i.invoice_id::text, i.number, i.namespace, i.period, i.period_start, i.period_end,
       i.billing_timezone, i.issued_at, i.currency,
       coalesce(i.bill_to_name, t.display_name_override, t.display_name, i.namespace),
       coalesce(i.bill_to_email, t.email_override, t.email),
       coalesce(i.locale, t.locale_override, t.locale),
       i.subtotal, i.tax_rate, i.tax, i.total, i.plan,
       i.bill_to_address, i.bill_to_tax_id, i.due_date, i.payment_terms_days, i.tax_note,
       i.issuer_name, i.issuer_address, i.issuer_tax_id, i.issuer_payment_details,
       i.document_kind, c.number, (c.issued_at AT TIME ZONE c.billing_timezone)::date,
       i.vat_currency, i.vat_exchange_rate, i.vat_exchange_source, i.vat_tax_converted,
       r.number, i.credit_reason
  FROM openfaas_metering.invoices AS i
  JOIN openfaas_metering.tenants AS t USING (namespace)
  LEFT JOIN openfaas_metering.invoices AS c ON c.invoice_id = i.corrects_invoice_id
  LEFT JOIN openfaas_metering.invoices AS r ON r.invoice_id = i.replaces_invoice_id
 WHERE i.invoice_id = %s
"""

_LINES = """
SELECT line_no, kind, description, quantity, unit, amount, meter, sku, spot, unit_price,
       tiers, tier_mode, allowance, discount_percent, discount, adjustment_period,
       billed_days, period_days
  FROM openfaas_metering.invoice_lines
 WHERE invoice_id = %s
 ORDER BY line_no
"""

def invoice_from_rows(row: tuple, line_rows: list[tuple]) -> Invoice:
    """An Invoice from the invoice query's row and the lines query's rows."""
    lines = tuple(
        InvoiceLine(line_no=r[0], kind=r[1], description=r[2], quantity=r[3], unit=r[4],
                    amount=r[5], meter=r[6], sku=r[7] or "", spot=r[8], unit_price=r[9],
                    tiers=parse_tiers(r[10]), tier_mode=r[11], allowance=r[12] or Decimal(0),
                    discount_percent=r[13] or Decimal(0), discount=r[14] or Decimal(0),
                    adjustment_period=r[15], billed_days=r[16], period_days=r[17])
        for r in line_rows)
    return Invoice(invoice_id=row[0], number=row[1], namespace=row[2], period=row[3],
                   period_start=row[4], period_end=row[5], billing_timezone=row[6],
                   issued_at=row[7], currency=row[8], bill_to_name=row[9],
                   bill_to_email=row[10], locale=row[11] or "", subtotal=row[12],
                   tax_rate=row[13] or Decimal(0), tax=row[14], total=row[15],
                   lines=lines, plan=row[16], bill_to_address=legal.lines(row[17]),
                   bill_to_tax_id=row[18], due_date=row[19], payment_terms_days=row[20],
                   tax_note=row[21], document_kind=row[26], corrects=row[27],
                   corrects_issued=row[28], vat_currency=row[29], vat_exchange_rate=row[30],
                   vat_exchange_source=row[31], vat_tax_converted=row[32],
                   replaces=row[33], credit_reason=row[34])


def issuer_of(row: tuple, settings: Settings) -> Issuer:
    """The supplier as frozen on the invoice at finalization; an invoice finalized before
    the supplier was stored (issuer_name NULL) falls back to ISSUER_*. The contact
    address (Reply-To, else From) is the mail's, not the document's."""
    contact = settings.mail_reply_to or settings.mail_from
    if row[22] is None:
        return Issuer(settings.issuer_name, settings.issuer_address, settings.issuer_tax_id,
                      contact, settings.issuer_payment_details)
    return Issuer(row[22], legal.lines(row[23]), row[24], contact, legal.lines(row[25]))


def read_invoice(conn, invoice_id: str, settings: Settings) -> tuple[Invoice, Issuer, str]:
    """The invoice as it is rendered, its supplier, and its usage CSV (aggregate-month's
    export)."""
    row = conn.execute(_INVOICE, (invoice_id,)).fetchone()
    invoice = invoice_from_rows(row, conn.execute(_LINES, (invoice_id,)).fetchall())
    return invoice, issuer_of(row, settings), usage_csv(conn, invoice_id)
