"""An invoice rendered as its e-mail carries it: text, HTML, PDF, the EN 16931 e-invoice
in the tenant's format (Factur-X inside the PDF, or Peppol/XRechnung UBL beside it) and
the CSV attachments. email-invoice renders it to send it; tenant-portal renders it
again to serve the very bytes the mail carried, without reaching the mail's sending.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chargeback.core import db
from chargeback.core.settings import Settings
from chargeback.core.tokens import hosted_invoice_url
from chargeback.documents import einvoice
from chargeback.documents.message import Attachment, attachment_names
from chargeback.documents.model import Invoice, Issuer
from chargeback.documents.presentation import present
from chargeback.documents.rendering import lines_csv, render_html, render_text
from chargeback.documents.rows import read_invoice
from chargeback.documents.ubl import ubl_xml


@dataclass(frozen=True)
class Rendered:
    """Everything one invoice renders to; the same invoice gives the same bytes."""
    view: dict[str, Any]
    text: str
    html: str
    pdf: bytes
    attachments: list[Attachment]


def render(invoice: Invoice, issuer: Issuer, settings: Settings,
           usage: str | None = None) -> Rendered:
    """All parts of the mail for `invoice`: text, HTML, PDF and the CSV attachments
    (the usage CSV, aggregate-month's export, when `usage` is given)."""
    usage_bytes = usage.encode() if usage is not None else None
    withheld = None  # a usage CSV over MAX_ATTACHMENT_BYTES is not attached; the mail says so
    if usage_bytes is not None and len(usage_bytes) > settings.max_attachment_bytes:
        withheld, usage_bytes = len(usage_bytes), None
    names = attachment_names(invoice, issuer.name, usage_bytes is not None)
    view = present(invoice, issuer, settings.default_locale, names, withheld)
    # the e-invoice, its item names as the PDF shows them: Factur-X's CII in the PDF and
    # attached as the same bytes; a UBL (Peppol, XRechnung) attached only, beside a PDF/A-3
    # without XML, so the mail holds one structured invoice (docs/einvoicing.md)
    item_names = {line["no"]: line["description"] for line in view["lines"]}
    fmt = invoice.einvoice_format or "facturx"
    if fmt == "facturx":
        xml = einvoice.cii_xml(invoice, issuer, item_names)
    else:
        xml = ubl_xml(invoice, issuer, item_names, flavour=fmt,
                      buyer_reference=invoice.buyer_reference, seller_contact=issuer.contact)
    # the hosted invoice page (tenant-portal), when PORTAL_URL is set
    view["hosted_url"] = hosted_invoice_url(settings, invoice.namespace, invoice.number,
                                            invoice.issued_at)
    # imported here: fpdf2 and fontTools are most of a function's start (1.3 s of
    # email-invoice's and tenant-portal's 2.4 and 3.3 s), and only a render needs them
    from chargeback.documents.pdf import render_pdf
    pdf = render_pdf(view, invoice.issued_at, xml if fmt == "facturx" else None)
    files = [Attachment(names[0], "application/pdf", pdf),
             Attachment(names[1], "text/csv", lines_csv(invoice).encode()),
             Attachment(names[2], "application/xml", xml)]
    if usage_bytes is not None:
        files.append(Attachment(names[3], "text/csv", usage_bytes))
    return Rendered(view, render_text(view), render_html(view), pdf, files)


def subject(invoice: Invoice, rendered: Rendered) -> str:
    """In the invoice's label language, like the document."""
    return rendered.view["subject"]


def rerender(settings: Settings, invoice_id: str) -> Rendered:
    """Render a finalized or sent invoice again: the same bytes as the mail carried."""
    with db.transaction(settings) as conn:
        invoice, supplier, usage = read_invoice(conn, invoice_id, settings)
    return render(invoice, supplier, settings, usage)
