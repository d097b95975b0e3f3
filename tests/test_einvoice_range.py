"""Every kind of document the close and the operator make is a complete EN 16931 CII
e-invoice: real quantities in UN/ECE rec 20 units with their prices, spot discounts as line
allowances, the billing period, how to pay, the document it corrects or replaces, and each
0 % rate's category; the Commission's Schematron finds no fatal error in any of them."""
from __future__ import annotations

import dataclasses
from decimal import Decimal as D

import pytest
from lxml import etree

from chargeback.billing.invoicing import Line
from chargeback.documents.einvoice import cii_xml

from .documents_helpers import NS
from .einvoice_documents import BASE, DOCUMENTS, SUPPLIER
from .einvoice_rules import assert_en16931

def _x(xml: bytes, path: str) -> list[str]:
    return [e if isinstance(e, str) else e.text
            for e in etree.fromstring(xml).xpath(path, namespaces=NS)]


@pytest.mark.parametrize("kind", DOCUMENTS)
def test_every_kind_of_document_breaks_no_en16931_rule(kind):
    assert_en16931(cii_xml(DOCUMENTS[kind], SUPPLIER))


def test_lines_carry_real_quantities_units_prices_and_the_spot_discount():
    xml = cii_xml(BASE, SUPPLIER)
    assert _x(xml, "//ram:BilledQuantity/@unitCode") == ["HUR", "C62", "MON"]
    assert _x(xml, "//ram:BilledQuantity") == ["720", "500000", "1"]
    # the unit price where quantity x price is the line (720 x 1.31 = 943.20); the tiered
    # line's gross for its whole quantity (49.00 per 500,000 GB-s)
    assert _x(xml, "//ram:NetPriceProductTradePrice/ram:ChargeAmount") == [
        "1.31", "49.00", "25.00"]
    assert _x(xml, "//ram:NetPriceProductTradePrice/ram:BasisQuantity") == ["500000"]
    assert _x(xml, "//ram:SpecifiedLineTradeSettlement/ram:SpecifiedTradeAllowanceCharge"
                   "/ram:ActualAmount") == ["565.92"]
    # no raw quantity leaks into a description any more
    assert not _x(xml, "//ram:SpecifiedTradeProduct/ram:Description")


def test_a_price_below_a_millionth_is_written_as_a_plain_decimal():
    # 0.20 per million invocations: 2,000,000 x 0.0000002 = 0.40
    tiny = Line("usage", "Function invocations", D(2000000), "invocations", D("0.40"),
                unit_price=D("0.0000002"), line_no=1)
    invoice = dataclasses.replace(BASE, lines=(tiny,), subtotal=D("0.40"), tax=D("0.08"),
                                  total=D("0.48"))
    xml = cii_xml(invoice, SUPPLIER)
    assert _x(xml, "//ram:NetPriceProductTradePrice/ram:ChargeAmount") == ["0.0000002"]
    assert_en16931(xml)


def test_the_period_and_how_to_pay_are_stated():
    xml = cii_xml(BASE, SUPPLIER)
    assert _x(xml, "//ram:BillingSpecifiedPeriod//udt:DateTimeString") == ["20260901",
                                                                            "20260930"]
    assert _x(xml, "//ram:SpecifiedTradeSettlementPaymentMeans/ram:TypeCode") == ["58"]
    assert _x(xml, "//ram:IBANID") == ["DE02120300000000202051"]
    assert _x(xml, "//ram:BICID") == ["BYLADEM1001"]
    url = dataclasses.replace(SUPPLIER, payment_details=("https://pay.example/inv",))
    xml = cii_xml(BASE, url)
    assert _x(xml, "//ram:SpecifiedTradeSettlementPaymentMeans/ram:TypeCode") == ["68"]
    assert _x(xml, "//ram:SpecifiedTradeSettlementPaymentMeans/ram:Information") == [
        "https://pay.example/inv"]


def test_a_reissue_names_the_invoice_it_replaces_and_its_date():
    xml = cii_xml(DOCUMENTS["reissue"], SUPPLIER)
    assert _x(xml, "//ram:InvoiceReferencedDocument/ram:IssuerAssignedID") == [
        "INV-2026-000041"]
    assert _x(xml, "//ram:InvoiceReferencedDocument//qdt:DateTimeString") == ["20261001"]


def test_greece_is_gr_while_its_vat_id_keeps_el():
    xml = cii_xml(DOCUMENTS["Greek customer"], SUPPLIER)
    assert _x(xml, "//ram:BuyerTradeParty//ram:CountryID") == ["GR"]
    assert _x(xml, "//ram:BuyerTradeParty//ram:ID[@schemeID='VA']") == ["EL094259216"]


def test_outside_the_eu_is_o_and_a_japanese_registration_is_no_vat_id():
    xml = cii_xml(DOCUMENTS["outside the EU"], SUPPLIER)
    assert set(_x(xml, "//ram:CategoryCode")) == {"O"}
    assert _x(xml, "//ram:ExemptionReason") == ["Not subject to EU VAT, art. 44"]
    assert not _x(xml, "//ram:ID[@schemeID='VA']")      # BR-O-02: no VAT identifiers
    assert _x(xml, "//ram:SellerTradeParty//ram:ID[@schemeID='FC']") == ["DE811111111"]
    assert _x(xml, "//ram:BuyerTradeParty/ram:SpecifiedLegalOrganization/ram:ID") == [
        "T1234567890123"]


def test_exempt_and_reverse_charge_say_their_legal_basis():
    assert set(_x(cii_xml(DOCUMENTS["exempt"], SUPPLIER), "//ram:CategoryCode")) == {"E"}
    xml = cii_xml(DOCUMENTS["reverse charge"], SUPPLIER)
    assert set(_x(xml, "//ram:CategoryCode")) == {"AE"}
    assert _x(xml, "//ram:ExemptionReason") == ["Reverse charge, art. 196"]
