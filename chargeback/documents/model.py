"""An invoice as plain values: the document, its lines and tiers, its supplier. Pure.

One model of a finalized document from the database to every rendering (HTML,
text, PDF, CSV, the e-invoice), its lines billing's own (billing.invoicing.Line);
documents.rows reads it from the database.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from chargeback.billing.invoicing import Line


@dataclass(frozen=True)
class Issuer:
    name: str
    address: tuple[str, ...] = ()
    tax_id: str | None = None
    email: str | None = None  # where customers write back (Reply-To, else From)
    payment_details: tuple[str, ...] = ()  # IBAN/BIC or a payment URL
    postal: dict | None = None  # billing.postal.Address.as_json(), frozen at finalization
    contact: dict | None = None  # BG-6 {"name", "telephone", "email"}, frozen (ISSUER_CONTACT_*)


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    number: str
    namespace: str
    period: str  # YYYY-MM
    period_start: datetime
    period_end: datetime  # exclusive
    billing_timezone: str
    issued_at: datetime
    currency: str
    bill_to_name: str
    bill_to_email: str | None
    locale: str
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal
    lines: tuple[Line, ...] = field(default=())
    plan: str | None = None
    # the legal fields frozen at finalization (billing.legal)
    bill_to_address: tuple[str, ...] = ()
    bill_to_tax_id: str | None = None
    due_date: date | None = None
    payment_terms_days: int | None = None
    tax_note: str | None = None
    document_kind: str = "invoice"  # invoice, supplementary, credit_note
    corrects: str | None = None     # the number of the invoice a correction corrects
    corrects_issued: date | None = None  # ... and its issue date (billing timezone)
    # VAT also in the member state's currency (billing.vat), frozen at finalization
    vat_currency: str | None = None
    vat_exchange_rate: Decimal | None = None  # 1 currency = rate vat_currency
    vat_exchange_source: str | None = None
    vat_tax_converted: Decimal | None = None
    replaces: str | None = None     # a reissue: the number of the voided invoice it replaces
    replaces_issued: date | None = None  # ... and its issue date (billing timezone)
    credit_reason: str | None = None  # an operator's credit note: why (billing.credits.REASONS)
    # EN 16931: the customer's address parsed (billing.postal.Address.as_json()) and the
    # VAT category (UNCL 5305), frozen at finalization; None on older documents
    bill_to_postal: dict | None = None
    tax_category: str | None = None
    # the e-invoice the tenant chose (billing.legal.FORMATS; None on older documents:
    # facturx) and the buyer reference it states (BT-10), frozen at finalization
    einvoice_format: str | None = None
    buyer_reference: str | None = None
