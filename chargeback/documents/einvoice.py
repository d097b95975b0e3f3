"""The invoice as EN 16931 e-invoice XML (UN/CEFACT CII, Factur-X / ZUGFeRD profile
EN 16931), built with drafthorse from the same Invoice the PDF shows. Pure.

The PDF carries it as its PDF/A-3 associated file `factur-x.xml` (documents.pdf)
and the mail attaches the same bytes. Both parties' addresses are the ones frozen
at finalization (billing.postal: street, postcode, city, ISO country; Greece is GR
while its VAT IDs keep EL); an EU VAT ID is BT-31/BT-48, any other registration
(a Japanese T-number) or any ID under category O is not coded as a VAT ID. The
VAT category is the one frozen (billing.legal). Each line states its real
quantity in a UN/ECE rec 20 unit (HUR, MON, C62), its price and its spot
discount as a line allowance; the billing period is BT-73/74; payment means are a
credit transfer to the supplier's IBAN/BIC, an online payment URL, or ZZZ. A
credit note (kind credit_note) is type code 381, an invoice or a supplementary
invoice 380; a correction names the invoice it corrects, a reissue the one it
replaces (BT-25, its issue date BT-26). A credit note is stored with negative
amounts; its XML states them with the opposite sign, as type 381 asks. VAT also
shown in ISSUER_VAT_CURRENCY (billing.vat) is the tax currency (BT-6) with its
total there (BT-111). Item names (BT-153) are the line descriptions in the
customer's language, as the PDF shows them.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from html import escape
from zoneinfo import ZoneInfo

from drafthorse.models.accounting import (
    ApplicableTradeTax,
    CategoryTradeTax,
    TradeAllowanceCharge,
)
from drafthorse.models.document import Document
from drafthorse.models.party import TaxRegistration
from drafthorse.models.payment import PaymentMeans, PaymentTerms
from drafthorse.models.tradelines import LineItem

from chargeback.billing import postal
from chargeback.billing.invoicing import Line
from chargeback.billing.pricing import minor_units
from chargeback.documents.model import Invoice, Issuer

FILENAME = "factur-x.xml"
PROFILE = "urn:cen.eu:en16931:2017"
TYPE_CODES = {"invoice": "380", "supplementary": "380", "credit_note": "381"}


def _address(postal_json: dict | None, lines: tuple[str, ...], tax_id: str | None
             ) -> postal.Address | None:
    """The party's address as frozen (parsed at finalization); for a document finalized
    before that, its lines parsed now, else only the country of its VAT ID."""
    address = postal.from_json(postal_json) or postal.parse("\n".join(lines))
    country = postal.vat_country(tax_id)
    if address is None and country:
        return postal.parse("\n".join((*lines, country))) or postal.Address(
            lines, None, None, country)
    return address


def _party(party, name: str, address: postal.Address | None, tax_id: str | None,
           category: str, seller: bool) -> None:
    party.name = name
    if address:  # a postal address without its country is not valid CII: none at all then
        party.address.country_id = address.country  # ISO 3166: Greece is GR (its VAT IDs EL)
        if address.postcode:
            party.address.postcode = address.postcode
        if address.street:
            party.address.line_one = address.street[0]
            if len(address.street) > 1:
                party.address.line_two = ", ".join(address.street[1:])
        if address.city:
            party.address.city_name = address.city
    if not tax_id:
        return
    if postal.vat_country(tax_id) and category != "O":
        party.tax_registrations.add(TaxRegistration(id=("VA", tax_id)))  # BT-31, BT-48
    elif seller:   # another registration (a Japanese T-number), or any under category O:
        party.id = tax_id                                                # BT-29 (BR-CO-26)
        party.tax_registrations.add(TaxRegistration(id=("FC", tax_id)))  # BT-32
    else:          # the buyer's: its legal registration (BT-47), never a VAT ID (BR-O-02)
        party.legal_organization.id = tax_id


# UN/ECE recommendation 20 codes of our units; a unit without one (GB-s, GiB-hours) is
# counted in C62 ("one"), its name in the item's name
UNIT_CODES = {"node-hours": "HUR", "core-hours": "HUR", "GPU-hours": "HUR",
              "LB-hours": "HUR", "month": "MON", "invocations": "C62"}
_IBAN = re.compile(r"\bIBAN:?\s*([A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){10,30})")
_BIC = re.compile(r"\b(?:BIC|SWIFT):?\s*([A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?)\b")
_URL = re.compile(r"https://\S+")


def _payment_means(details: tuple[str, ...], currency: str) -> PaymentMeans:
    """BG-16 from the supplier's payment details: a credit transfer to the IBAN (BT-84) and
    BIC (BT-86) they name, SEPA (58) in euros, else 30; a payment URL: online payment (68)
    with the URL as its text (BT-82); neither: mutually defined (ZZZ)."""
    text = "\n".join(details)
    means = PaymentMeans()
    if iban := _IBAN.search(text):
        means.type_code = "58" if currency == "EUR" else "30"
        means.payee_account.iban = iban.group(1).replace(" ", "")
        if bic := _BIC.search(text):
            means.payee_institution.bic = bic.group(1)
    elif url := _URL.search(text):
        means.type_code = "68"
        means.information.add(url.group(0))
    else:
        means.type_code = "ZZZ"
    return means


def _plain(number: Decimal) -> str:
    """A decimal as xs:decimal writes it: never in exponent form (a price of 2E-7)."""
    return f"{number:f}"


def _quantity_and_price(item: LineItem, line: Line, sign: int, currency: str) -> None:
    """The line's real quantity (BT-129) in its unit's code (BT-130), its price (BT-146),
    and a spot discount as a line allowance (BG-27), as the XML's sign states them. The
    price is the unit price when quantity x unit price gives the line; else (tiers, an
    allowance of free units) the line's gross for its whole quantity (price base quantity
    BT-149 = the quantity). A correction's line whose amount moved without its quantity,
    or against it, is 1 C62 at its amount (BR-27: no negative price)."""
    quantity, gross = sign * line.quantity, sign * (line.amount + line.discount)
    discount, amount = sign * line.discount, sign * line.amount
    code = UNIT_CODES.get(line.unit, "C62")
    if not quantity or gross * quantity < 0 or discount < 0:
        item.delivery.billed_quantity = (Decimal(-1 if amount < 0 else 1), "C62")
        item.agreement.net.amount = abs(amount)
        return
    item.delivery.billed_quantity = (_plain(quantity), code)
    cents = Decimal(1).scaleb(-minor_units(currency))
    if (line.unit_price is not None and not line.tiers and not line.allowance
            and abs(quantity * line.unit_price - gross) < cents):
        item.agreement.net.amount = _plain(line.unit_price)
    else:
        item.agreement.net.amount = abs(gross)
        item.agreement.net.basis_quantity = (_plain(abs(quantity)), code)
    if discount:
        allowance = TradeAllowanceCharge()
        allowance.indicator = False
        allowance.actual_amount = discount
        allowance.reason = f"Spot discount {line.discount_percent.normalize():f} %"
        allowance.reason_code = "95"     # UNCL 5189: discount
        item.settlement.allowance_charge.add(allowance)


def _tax_category(invoice: Invoice) -> tuple[str, str | None]:
    """(VAT category code, exemption reason): as frozen at finalization (billing.legal);
    a document finalized before that: S at a positive rate, at 0 % AE when its tax note
    says reverse charge, else E with the note as the reason."""
    if invoice.tax_category:
        category = invoice.tax_category
    elif invoice.tax_rate:
        category = "S"
    else:
        category = "AE" if "reverse charge" in (invoice.tax_note or "").lower() else "E"
    if category in ("S", "Z"):
        return category, None
    return category, invoice.tax_note or "Exempt from VAT"


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
    category, reason = _tax_category(invoice)
    _party(agreement.seller, issuer.name, _address(issuer.postal, issuer.address,
                                                   issuer.tax_id), issuer.tax_id, category,
           seller=True)
    _party(agreement.buyer, invoice.bill_to_name,
           _address(invoice.bill_to_postal, invoice.bill_to_address, invoice.bill_to_tax_id),
           invoice.bill_to_tax_id, category, seller=False)
    if invoice.buyer_reference:                  # BT-10, when the tenant gave one
        agreement.buyer_reference = invoice.buyer_reference
    settlement.currency_code = invoice.currency
    if invoice.vat_currency and invoice.vat_tax_converted is not None:
        settlement.tax_currency_code = invoice.vat_currency  # BT-6
    settlement.payment_means.add(_payment_means(issuer.payment_details, invoice.currency))
    # BT-73/74: the month billed, its first and last day in the billing time zone
    settlement.period.start = invoice.period_start.astimezone(local).date()
    settlement.period.end = (invoice.period_end.astimezone(local) - timedelta(days=1)).date()
    preceding = invoice.corrects or invoice.replaces   # BT-25/26: what this corrects or
    if preceding:                                      # replaces, and when it was issued
        reference = settlement.invoice_referenced_document
        reference.issuer_assigned_id = preceding
        issued = invoice.corrects_issued if invoice.corrects else invoice.replaces_issued
        if issued:
            reference.issue_date_time = issued
    if invoice.due_date:
        terms = PaymentTerms()
        terms.due = invoice.due_date
        settlement.terms.add(terms)
    # no rate at all "not subject to VAT" (BR-O-05, BR-O-06)
    rate_percent = None if category == "O" else (invoice.tax_rate * 100).quantize(Decimal("0.01"))
    # a "Credit applied" line (billing.grants) is a document-level allowance (BG-20,
    # BT-92), a charge (BG-21) where a correction takes some of it back: not an item
    credit = sum((signed(line.amount) for line in invoice.lines if line.kind == "credit"),
                 Decimal("0.00"))
    if credit:
        allowance = TradeAllowanceCharge()
        allowance.indicator = credit > 0
        allowance.actual_amount = abs(credit)
        allowance.reason = "Credit applied"
        category_tax = CategoryTradeTax()
        category_tax.type_code = "VAT"
        category_tax.category_code = category
        if rate_percent is not None:
            category_tax.rate_applicable_percent = rate_percent
        allowance.trade_tax.add(category_tax)
        settlement.allowance_charge.add(allowance)
    for line in sorted(invoice.lines, key=lambda line: line.line_no):
        if line.kind == "credit":
            continue
        item = LineItem()
        item.document.line_id = str(line.line_no)
        item.product.name = (names or {}).get(line.line_no, line.description)
        _quantity_and_price(item, line, sign, invoice.currency)
        item.settlement.trade_tax.type_code = "VAT"
        item.settlement.trade_tax.category_code = category
        if rate_percent is not None:
            item.settlement.trade_tax.rate_applicable_percent = rate_percent
        item.settlement.monetary_summation.total_amount = signed(line.amount)
        doc.trade.items.add(item)
    tax = ApplicableTradeTax()
    tax.calculated_amount = signed(invoice.tax)
    tax.basis_amount = signed(invoice.subtotal)
    tax.type_code = "VAT"
    tax.category_code = category
    if reason:
        tax.exemption_reason = reason
    if rate_percent is not None:
        tax.rate_applicable_percent = rate_percent
    settlement.trade_tax.add(tax)
    totals = settlement.monetary_summation
    totals.line_total = signed(invoice.subtotal) - credit
    totals.charge_total = max(credit, Decimal("0.00"))
    totals.allowance_total = max(-credit, Decimal("0.00"))
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
