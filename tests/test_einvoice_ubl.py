"""Every kind of document as Peppol BIS Billing 3.0 UBL breaks no fatal rule of the
Commission's EN 16931 UBL Schematron nor of Peppol's; as XRechnung 3.0 UBL, none of
XRechnung's either (the official rule sets, unchanged, tests/data)."""
from __future__ import annotations

import dataclasses

import pytest
from lxml import etree

from chargeback.documents.ubl import ubl_xml

from .einvoice_rules import PEPPOL_RULES, UBL_RULES, XRECHNUNG_RULES, broken_rules_of
from .einvoice_documents import DOCUMENTS, SUPPLIER

SELLER = dataclasses.replace(SUPPLIER, email="billing@nordwind.example")
CONTACT = {"name": "Buchhaltung", "telephone": "+49 30 1234567",
           "email": "billing@nordwind.example"}
UBL_NS = {"cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
          "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"}


@pytest.mark.parametrize("kind", DOCUMENTS)
def test_every_kind_of_document_as_peppol_ubl_breaks_no_rule(kind):
    xml = ubl_xml(DOCUMENTS[kind], SELLER)
    assert broken_rules_of(xml, UBL_RULES) == []
    assert broken_rules_of(xml, PEPPOL_RULES) == []


@pytest.mark.parametrize("kind", DOCUMENTS)
def test_every_kind_of_document_as_xrechnung_breaks_no_rule(kind):
    xml = ubl_xml(DOCUMENTS[kind], SELLER, flavour="xrechnung",
                  buyer_reference="04011000-12345-34", seller_contact=CONTACT)
    assert broken_rules_of(xml, UBL_RULES) == []
    assert broken_rules_of(xml, XRECHNUNG_RULES) == []


def test_a_credit_note_is_a_creditnote_with_the_original_and_positive_amounts():
    xml = ubl_xml(DOCUMENTS["credit note"], SELLER)
    root = etree.fromstring(xml)
    assert etree.QName(root).localname == "CreditNote"
    # the credit note of 537.02 (stored -537.02) states 537.02 payable, 381
    assert root.xpath("cbc:CreditNoteTypeCode/text()", namespaces=UBL_NS) == ["381"]
    assert root.xpath("cac:LegalMonetaryTotal/cbc:PayableAmount/text()",
                      namespaces=UBL_NS) == ["537.02"]
    assert root.xpath("cac:BillingReference//cbc:ID/text()", namespaces=UBL_NS) == [
        "INV-2026-000041"]
    assert root.xpath("cac:BillingReference//cbc:IssueDate/text()", namespaces=UBL_NS) == [
        "2026-10-01"]


def test_an_xrechnung_without_buyer_reference_breaks_br_de_15():
    xml = ubl_xml(DOCUMENTS["invoice"], SELLER, flavour="xrechnung", buyer_reference=" ",
                  seller_contact=CONTACT)
    assert any(rule.startswith("BR-DE-15") for rule in broken_rules_of(xml, XRECHNUNG_RULES))
