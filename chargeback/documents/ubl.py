"""The invoice as Peppol BIS Billing 3.0 UBL (OASIS UBL 2.1 Invoice / CreditNote), or as
XRechnung 3.0 UBL (the German CIUS), built with lxml from the same Invoice the PDF
shows. Pure.

It states what the CII e-invoice (documents.einvoice) states, in UBL's elements: both
parties' frozen addresses, VAT IDs only where they are EU VAT IDs and the category is
not O, each line's real quantity, unit code, price and spot allowance, credit applied
from grants as a document-level allowance, the billing period, payment means, the corrected or replaced invoice with its date, the VAT
category and its legal basis. A credit note is a CreditNote (381) with positive amounts.
Peppol asks for an electronic address of each party (BT-34/BT-49: derived from its
VAT ID or Japanese registration, billing.postal.endpoint) and a buyer reference (BT-10):
the tenant's `buyer_reference`, else its namespace (XRechnung: the buyer's Leitweg-ID,
never a default; billing.legal holds the document without one, or without either
electronic address under Peppol).
"""
from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from lxml import etree

from chargeback.billing import postal
from chargeback.billing.pricing import minor_units
from chargeback.documents.einvoice import (
    _BIC,
    _IBAN,
    _URL,
    UNIT_CODES,
    _address,
    _plain,
    _tax_category,
)
from chargeback.documents.model import Invoice, Issuer

CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
ROOTS = {"Invoice": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
         "CreditNote": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"}
CUSTOMIZATIONS = {
    "ubl": "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0",
    "xrechnung": "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0",
}
PROFILE = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
class _Builder:
    def __init__(self, currency: str):
        self.currency = currency

    def cbc(self, parent, name: str, text, **attrs):
        element = etree.SubElement(parent, f"{{{CBC}}}{name}", **attrs)
        element.text = str(text)
        return element

    def cac(self, parent, name: str):
        return etree.SubElement(parent, f"{{{CAC}}}{name}")

    def amount(self, parent, name: str, value: Decimal, currency: str | None = None):
        places = Decimal(1).scaleb(-min(2, minor_units(currency or self.currency)))
        value = value.quantize(places, rounding=ROUND_HALF_UP)
        return self.cbc(parent, name, _plain(abs(value) if not value else value),
                        currencyID=currency or self.currency)


def _party(b: _Builder, parent, name: str, address: postal.Address | None,
           tax_id: str | None, category: str, contact: dict | None):
    party = b.cac(parent, "Party")
    if address_id := postal.endpoint(tax_id):                    # BT-34 / BT-49
        b.cbc(party, "EndpointID", address_id[1], schemeID=address_id[0])
    b.cbc(b.cac(party, "PartyName"), "Name", name)
    if address:
        where = b.cac(party, "PostalAddress")
        if address.street:
            b.cbc(where, "StreetName", address.street[0])
            if len(address.street) > 1:
                b.cbc(where, "AdditionalStreetName", ", ".join(address.street[1:]))
        if address.city:
            b.cbc(where, "CityName", address.city)
        if address.postcode:
            b.cbc(where, "PostalZone", address.postcode)
        b.cbc(b.cac(where, "Country"), "IdentificationCode", address.country)
    vat_id = tax_id if tax_id and postal.vat_country(tax_id) and category != "O" else None
    if vat_id:                                                   # BT-31 / BT-48
        scheme = b.cac(party, "PartyTaxScheme")
        b.cbc(scheme, "CompanyID", vat_id)
        b.cbc(b.cac(scheme, "TaxScheme"), "ID", "VAT")
    elif tax_id and contact is not None:   # the seller's other registration (BT-32)
        scheme = b.cac(party, "PartyTaxScheme")
        b.cbc(scheme, "CompanyID", tax_id)
        b.cbc(b.cac(scheme, "TaxScheme"), "ID", "TAX")
    legal = b.cac(party, "PartyLegalEntity")
    b.cbc(legal, "RegistrationName", name)                       # BT-27 / BT-44
    if tax_id and not vat_id:                                    # BT-30 / BT-47
        b.cbc(legal, "CompanyID", tax_id)
    if contact:                                                  # BG-6 (XRechnung)
        person = b.cac(party, "Contact")
        for key, element in (("name", "Name"), ("telephone", "Telephone"),
                             ("email", "ElectronicMail")):
            if contact.get(key):
                b.cbc(person, element, contact[key])


def _payment_means(b: _Builder, root, details: tuple[str, ...], invoice: Invoice) -> None:
    text = "\n".join(details)
    means = b.cac(root, "PaymentMeans")
    if iban := _IBAN.search(text):
        b.cbc(means, "PaymentMeansCode", "58" if invoice.currency == "EUR" else "30")
        b.cbc(means, "PaymentID", invoice.number)                 # BT-83
        account = b.cac(means, "PayeeFinancialAccount")
        b.cbc(account, "ID", iban.group(1).replace(" ", ""))
        if bic := _BIC.search(text):
            b.cbc(b.cac(account, "FinancialInstitutionBranch"), "ID", bic.group(1))
    elif url := _URL.search(text):
        b.cbc(means, "PaymentMeansCode", "68")
        b.cbc(means, "InstructionNote", url.group(0))
    else:
        b.cbc(means, "PaymentMeansCode", "ZZZ")


def _line(b: _Builder, root, tag: str, line, sign: int, category: str,
          rate_percent: Decimal | None, name: str) -> None:
    """One line: its real quantity and unit code, price and spot allowance, as the
    document's sign states them; a line whose amount moved without its quantity (or
    against it) is 1 C62 at its amount, as in the CII."""
    quantity, gross = sign * line.quantity, sign * (line.amount + line.discount)
    discount, amount = sign * line.discount, sign * line.amount
    code = UNIT_CODES.get(line.unit, "C62")
    cents = Decimal(1).scaleb(-minor_units(b.currency))
    simple = not quantity or gross * quantity < 0 or discount < 0
    element = b.cac(root, f"{tag}Line")
    b.cbc(element, "ID", line.line_no)
    quantity_name = "CreditedQuantity" if tag == "CreditNote" else "InvoicedQuantity"
    if simple:
        b.cbc(element, quantity_name, -1 if amount < 0 else 1, unitCode="C62")
    else:
        b.cbc(element, quantity_name, _plain(quantity), unitCode=code)
    b.amount(element, "LineExtensionAmount", amount)
    if discount and not simple:
        allowance = b.cac(element, "AllowanceCharge")
        b.cbc(allowance, "ChargeIndicator", "false")
        b.cbc(allowance, "AllowanceChargeReasonCode", "95")       # UNCL 5189: discount
        b.cbc(allowance, "AllowanceChargeReason",
              f"Spot discount {line.discount_percent.normalize():f} %")
        b.amount(allowance, "Amount", discount)
    item = b.cac(element, "Item")
    b.cbc(item, "Name", name)
    tax = b.cac(item, "ClassifiedTaxCategory")
    b.cbc(tax, "ID", category)
    if rate_percent is not None:
        b.cbc(tax, "Percent", _plain(rate_percent))
    b.cbc(b.cac(tax, "TaxScheme"), "ID", "VAT")
    price = b.cac(element, "Price")
    if simple:
        b.amount(price, "PriceAmount", abs(amount))
    elif (line.unit_price is not None and not line.tiers and not line.allowance
          and (quantity * line.unit_price).quantize(cents, ROUND_HALF_UP) == gross):
        b.cbc(price, "PriceAmount", _plain(line.unit_price), currencyID=b.currency)
    else:   # tiers, free units: the gross for the whole quantity
        b.amount(price, "PriceAmount", abs(gross))
        b.cbc(price, "BaseQuantity", _plain(abs(quantity)), unitCode=code)


def _category(b: _Builder, parent, category: str, rate_percent: Decimal | None,
              reason: str | None, flavour: str) -> None:
    """The VAT category of a breakdown (BG-23) or a document-level allowance (BG-20)."""
    tax = b.cac(parent, "TaxCategory")
    b.cbc(tax, "ID", category)
    if rate_percent is not None:
        b.cbc(tax, "Percent", _plain(rate_percent))
    elif flavour == "xrechnung":   # BR-DE-14: a breakdown's rate always, 0 under O
        b.cbc(tax, "Percent", "0")
    if reason:
        b.cbc(tax, "TaxExemptionReason", reason)
    b.cbc(b.cac(tax, "TaxScheme"), "ID", "VAT")


def ubl_xml(invoice: Invoice, issuer: Issuer, names: dict[int, str] | None = None, *,
            flavour: str = "ubl", buyer_reference: str | None = None,
            seller_contact: dict | None = None) -> bytes:
    """The UBL XML of `invoice`: Peppol BIS Billing 3.0 (`flavour` "ubl") or XRechnung 3.0
    ("xrechnung", which needs `buyer_reference` and `seller_contact` {"name", "telephone",
    "email"}); item names from `names` by line number, as the CII."""
    credit = invoice.document_kind == "credit_note"
    tag = "CreditNote" if credit else "Invoice"
    root = etree.Element(f"{{{ROOTS[tag]}}}{tag}", nsmap={None: ROOTS[tag], "cac": CAC,
                                                          "cbc": CBC})
    b = _Builder(invoice.currency)
    sign = -1 if credit else 1
    local = ZoneInfo(invoice.billing_timezone)
    category, reason = _tax_category(invoice)
    b.cbc(root, "CustomizationID", CUSTOMIZATIONS[flavour])
    b.cbc(root, "ProfileID", PROFILE)
    b.cbc(root, "ID", invoice.number)
    b.cbc(root, "IssueDate", invoice.issued_at.astimezone(local).date().isoformat())
    if invoice.due_date and not credit:
        b.cbc(root, "DueDate", invoice.due_date.isoformat())
    b.cbc(root, f"{tag}TypeCode", "381" if credit else "380")
    b.cbc(root, "DocumentCurrencyCode", invoice.currency)
    converted = invoice.vat_currency and invoice.vat_tax_converted is not None
    if converted:
        b.cbc(root, "TaxCurrencyCode", invoice.vat_currency)      # BT-6
    b.cbc(root, "BuyerReference", buyer_reference or invoice.namespace)   # BT-10
    period = b.cac(root, "InvoicePeriod")                          # BT-73/74
    b.cbc(period, "StartDate", invoice.period_start.astimezone(local).date().isoformat())
    b.cbc(period, "EndDate",
          (invoice.period_end.astimezone(local) - timedelta(days=1)).date().isoformat())
    preceding = invoice.corrects or invoice.replaces              # BT-25/26
    if preceding:
        reference = b.cac(b.cac(root, "BillingReference"), "InvoiceDocumentReference")
        b.cbc(reference, "ID", preceding)
        issued = invoice.corrects_issued if invoice.corrects else invoice.replaces_issued
        if issued:
            b.cbc(reference, "IssueDate", issued.isoformat())
    _party(b, b.cac(root, "AccountingSupplierParty"), issuer.name,
           _address(issuer.postal, issuer.address, issuer.tax_id), issuer.tax_id, category,
           seller_contact if seller_contact is not None else {})
    _party(b, b.cac(root, "AccountingCustomerParty"), invoice.bill_to_name,
           _address(invoice.bill_to_postal, invoice.bill_to_address, invoice.bill_to_tax_id),
           invoice.bill_to_tax_id, category, None)
    _payment_means(b, root, issuer.payment_details, invoice)
    if invoice.payment_terms_days is not None and not credit:
        b.cbc(b.cac(root, "PaymentTerms"), "Note",
              f"Payment within {invoice.payment_terms_days} days")
    rate_percent = None if category == "O" else (invoice.tax_rate * 100).quantize(
        Decimal("0.01"))
    # a "Credit applied" line (billing.grants) is a document-level allowance (BG-20,
    # BT-92), a charge (BG-21) where a correction takes some of it back: not an item
    credit = sum((sign * line.amount for line in invoice.lines if line.kind == "credit"),
                 Decimal("0.00"))
    if credit:
        allowance = b.cac(root, "AllowanceCharge")
        b.cbc(allowance, "ChargeIndicator", "true" if credit > 0 else "false")
        b.cbc(allowance, "AllowanceChargeReason", "Credit applied")
        b.amount(allowance, "Amount", abs(credit))
        _category(b, allowance, category, rate_percent, None, flavour)
    total = b.cac(root, "TaxTotal")
    b.amount(total, "TaxAmount", sign * invoice.tax)
    subtotal = b.cac(total, "TaxSubtotal")
    b.amount(subtotal, "TaxableAmount", sign * invoice.subtotal)
    b.amount(subtotal, "TaxAmount", sign * invoice.tax)
    _category(b, subtotal, category, rate_percent, reason, flavour)
    if converted:                                                   # BT-111
        b.amount(b.cac(root, "TaxTotal"), "TaxAmount", sign * invoice.vat_tax_converted,
                 invoice.vat_currency)
    money = b.cac(root, "LegalMonetaryTotal")
    b.amount(money, "LineExtensionAmount", sign * invoice.subtotal - credit)
    b.amount(money, "TaxExclusiveAmount", sign * invoice.subtotal)
    b.amount(money, "TaxInclusiveAmount", sign * invoice.total)
    if credit < 0:
        b.amount(money, "AllowanceTotalAmount", -credit)
    elif credit > 0:
        b.amount(money, "ChargeTotalAmount", credit)
    b.amount(money, "PayableAmount", sign * invoice.total)
    for line in sorted(invoice.lines, key=lambda line: line.line_no):
        if line.kind == "credit":
            continue
        _line(b, root, tag, line, sign, category, rate_percent,
              (names or {}).get(line.line_no, line.description))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
