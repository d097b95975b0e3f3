"""The invoice as EN 16931 e-invoice XML (UN/CEFACT CII, Factur-X / ZUGFeRD profile
EN 16931), built with drafthorse from the same Invoice the PDF shows. Pure.

The PDF carries it as its PDF/A-3 associated file `factur-x.xml` (documents.pdf)
and the mail attaches the same bytes. Choices where the data model is thinner
than the standard: each invoice line is one unit (C62) at its net amount, its
quantity and unit in the line's description; the seller's and buyer's
country is the two letters their VAT ID starts with, else their address's last
line when it names a country ("Germany", "Deutschland", "DE"); an address whose
country is unknown stays on the PDF but not in the XML (CII requires it); payment
means are "mutually defined" (ZZZ); the payment details are printed on the PDF.
A credit note (kind credit_note) is type code 381, an invoice or a supplementary
invoice 380; a correction names the invoice it corrects (BT-25, its issue date
BT-26). A credit note is stored with negative amounts; its XML states them with
the opposite sign, as type 381 asks (a credit of 10.00 is 10.00 on a 381). A line
whose amount is negative is quantity -1 at a positive net price (BR-27: no
negative prices). VAT also shown in ISSUER_VAT_CURRENCY (billing.vat) is the
tax currency (BT-6) with its total there (BT-111). Item names (BT-153) are the
line descriptions in the customer's language, as the PDF shows them.
"""
from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from decimal import Decimal
from html import escape
from zoneinfo import ZoneInfo

from babel import Locale
from drafthorse.models.accounting import ApplicableTradeTax
from drafthorse.models.document import Document
from drafthorse.models.party import TaxRegistration
from drafthorse.models.payment import PaymentTerms
from drafthorse.models.tradelines import LineItem

from chargeback.documents.model import Invoice, Issuer

FILENAME = "factur-x.xml"
PROFILE = "urn:cen.eu:en16931:2017"
TYPE_CODES = {"invoice": "380", "supplementary": "380", "credit_note": "381"}


@lru_cache(maxsize=1)
def _country_names() -> dict[str, str]:
    """Every country's name in the catalog languages (and its ISO code), lower-cased
    -> ISO 3166-1 alpha-2 code, from Babel's CLDR data."""
    names: dict[str, str] = {}
    for language in ("en", "de", "fr", "es", "pl", "ja", "ru"):
        for code, name in Locale.parse(language).territories.items():
            if len(code) == 2 and code.isalpha():
                names[name.lower()] = code
                names[code.lower()] = code
    return names


def _country(tax_id: str | None, address: tuple[str, ...]) -> str | None:
    """The VAT ID's two-letter prefix; else the address's last line when it is a
    country's name or code ("Germany", "Deutschland", "DE")."""
    prefix = (tax_id or "")[:2]
    if len(prefix) == 2 and prefix.isalpha():
        return prefix.upper()
    return _country_names().get(address[-1].strip().lower()) if address else None


def _party(party, name: str, address: tuple[str, ...], tax_id: str | None) -> None:
    party.name = name
    country = _country(tax_id, address)
    if country:  # a postal address without its country is not valid CII: none at all then
        party.address.country_id = country
        if address:
            party.address.line_one = address[0]
            if len(address) > 1:
                party.address.line_two = ", ".join(address[1:])
    if tax_id:
        party.tax_registrations.add(TaxRegistration(id=("VA", tax_id)))


def _tax_category(invoice: Invoice) -> tuple[str, str | None]:
    """(VAT category code, exemption reason): S at a positive rate; at 0 %, AE (reverse
    charge) when the tax note says so, else E (exempt) with the note as the reason."""
    if invoice.tax_rate:
        return "S", None
    note = invoice.tax_note or "Exempt from VAT"
    return ("AE" if "reverse charge" in note.lower() else "E"), note


def cii_xml(invoice: Invoice, issuer: Issuer, names: dict[int, str] | None = None) -> bytes:
    """The EN 16931 CII XML of `invoice` (drafthorse checks it against its schema); each
    line's item name (BT-153) from `names` by line number (the descriptions the PDF
    shows, in the label language), else its stored description."""
    doc = Document()
    doc.context.guideline_parameter.id = PROFILE
    doc.header.id = invoice.number
    doc.header.type_code = TYPE_CODES[invoice.document_kind]
    sign = -1 if invoice.document_kind == "credit_note" else 1

    def signed(amount: Decimal) -> Decimal:  # as the XML states it; never "-0.00"
        return sign * amount if amount else abs(amount)

    local = ZoneInfo(invoice.billing_timezone)
    doc.header.issue_date_time = invoice.issued_at.astimezone(local).date()
    agreement, settlement = doc.trade.agreement, doc.trade.settlement
    _party(agreement.seller, issuer.name, issuer.address, issuer.tax_id)
    _party(agreement.buyer, invoice.bill_to_name, invoice.bill_to_address,
           invoice.bill_to_tax_id)
    settlement.currency_code = invoice.currency
    if invoice.vat_currency and invoice.vat_tax_converted is not None:
        settlement.tax_currency_code = invoice.vat_currency  # BT-6
    settlement.payment_means.type_code = "ZZZ"
    if invoice.corrects:
        corrected = settlement.invoice_referenced_document
        corrected.issuer_assigned_id = invoice.corrects
        if invoice.corrects_issued:
            corrected.issue_date_time = invoice.corrects_issued
    if invoice.due_date:
        terms = PaymentTerms()
        terms.due = invoice.due_date
        settlement.terms.add(terms)
    category, reason = _tax_category(invoice)
    rate_percent = (invoice.tax_rate * 100).quantize(Decimal("0.01"))
    for line in sorted(invoice.lines, key=lambda line: line.line_no):
        item = LineItem()
        item.document.line_id = str(line.line_no)
        item.product.name = (names or {}).get(line.line_no, line.description)
        item.product.description = f"{line.quantity.normalize():f} {line.unit}"
        amount = signed(line.amount)
        item.agreement.net.amount = abs(amount)
        item.delivery.billed_quantity = (Decimal(-1 if amount < 0 else 1), "C62")
        item.settlement.trade_tax.type_code = "VAT"
        item.settlement.trade_tax.category_code = category
        item.settlement.trade_tax.rate_applicable_percent = rate_percent
        item.settlement.monetary_summation.total_amount = amount
        doc.trade.items.add(item)
    tax = ApplicableTradeTax()
    tax.calculated_amount = signed(invoice.tax)
    tax.basis_amount = signed(invoice.subtotal)
    tax.type_code = "VAT"
    tax.category_code = category
    if reason:
        tax.exemption_reason = reason
    tax.rate_applicable_percent = rate_percent
    settlement.trade_tax.add(tax)
    totals = settlement.monetary_summation
    totals.line_total = signed(invoice.subtotal)
    totals.charge_total = Decimal("0.00")
    totals.allowance_total = Decimal("0.00")
    totals.tax_basis_total = signed(invoice.subtotal)
    totals.tax_total = (signed(invoice.tax), invoice.currency)
    if invoice.vat_currency and invoice.vat_tax_converted is not None:
        # BT-111: the VAT total in the tax currency
        totals.tax_total_other_currency.add((signed(invoice.vat_tax_converted),
                                             invoice.vat_currency))
    totals.grand_total = signed(invoice.total)
    totals.due_amount = signed(invoice.total)
    return doc.serialize(schema="FACTUR-X_EN16931")


# PDF/A-3b identification, the document's dates (its issue instant, so the same invoice
# gives the same bytes) and, with the XML, the Factur-X extension schema that names it.
_XMP = """<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/"
    xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:pdf="http://ns.adobe.com/pdf/1.3/">
   <pdfaid:part>3</pdfaid:part>
   <pdfaid:conformance>B</pdfaid:conformance>
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">{title}</rdf:li></rdf:Alt></dc:title>
   <dc:creator><rdf:Seq><rdf:li>{author}</rdf:li></rdf:Seq></dc:creator>
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">{subject}</rdf:li></rdf:Alt></dc:description>
   <xmp:CreatorTool>chargeback</xmp:CreatorTool>
   <xmp:CreateDate>{date}</xmp:CreateDate>
   <xmp:ModifyDate>{date}</xmp:ModifyDate>
   <xmp:MetadataDate>{date}</xmp:MetadataDate>
   <pdf:Producer>chargeback</pdf:Producer>
  </rdf:Description>{facturx}
 </rdf:RDF>
</x:xmpmeta>"""

_FACTURX = """
  <rdf:Description rdf:about="" xmlns:fx="urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#">
   <fx:DocumentType>INVOICE</fx:DocumentType>
   <fx:DocumentFileName>factur-x.xml</fx:DocumentFileName>
   <fx:Version>1.0</fx:Version>
   <fx:ConformanceLevel>EN 16931</fx:ConformanceLevel>
  </rdf:Description>
  <rdf:Description rdf:about="" xmlns:pdfaExtension="http://www.aiim.org/pdfa/ns/extension/"
    xmlns:pdfaSchema="http://www.aiim.org/pdfa/ns/schema#"
    xmlns:pdfaProperty="http://www.aiim.org/pdfa/ns/property#">
   <pdfaExtension:schemas><rdf:Bag><rdf:li rdf:parseType="Resource">
    <pdfaSchema:schema>Factur-X PDFA Extension Schema</pdfaSchema:schema>
    <pdfaSchema:namespaceURI>urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#</pdfaSchema:namespaceURI>
    <pdfaSchema:prefix>fx</pdfaSchema:prefix>
    <pdfaSchema:property><rdf:Seq>{properties}</rdf:Seq></pdfaSchema:property>
   </rdf:li></rdf:Bag></pdfaExtension:schemas>
  </rdf:Description>"""

_PROPERTY = """
     <rdf:li rdf:parseType="Resource"><pdfaProperty:name>{name}</pdfaProperty:name>
      <pdfaProperty:valueType>Text</pdfaProperty:valueType>
      <pdfaProperty:category>external</pdfaProperty:category>
      <pdfaProperty:description>{name}</pdfaProperty:description></rdf:li>"""


def xmp(title: str, author: str, subject: str, issued_at: datetime, with_xml: bool) -> str:
    """The PDF's XMP metadata (see above); `issued_at` a timezone-aware instant."""
    properties = "".join(_PROPERTY.format(name=name) for name in (
        "DocumentFileName", "DocumentType", "Version", "ConformanceLevel"))
    return _XMP.format(title=escape(title), author=escape(author), subject=escape(subject),
                       date=issued_at.isoformat(timespec="seconds"),
                       facturx=_FACTURX.format(properties=properties) if with_xml else "")
