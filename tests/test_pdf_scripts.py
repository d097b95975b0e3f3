"""A customer reads its document in its own script: the tenant's name and address, the
month and the amounts are in the PDF's text layer as written, read back with poppler's
pdftotext and with pypdf; the same document renders to the same bytes twice."""
from __future__ import annotations

import dataclasses
import tempfile
from io import BytesIO

import pypdf
import pytest
from lxml import etree

from chargeback.core.settings import load
from chargeback.documents import rendered as documents
from chargeback.documents.einvoice import cii_xml
from chargeback.documents.ubl import ubl_xml

from devstack.sample_documents import TENANTS, misread, pdftotext, pypdf_text

from .documents_helpers import INVOICE, ISSUER
from .einvoice_documents import BASE, SUPPLIER
from .einvoice_rules import (
    PEPPOL_RULES,
    UBL_RULES,
    XRECHNUNG_RULES,
    assert_en16931,
    broken_rules_of,
)

def _render(locale: str):
    name, street, place, country, _ = TENANTS[locale]
    invoice = dataclasses.replace(INVOICE, locale=locale, bill_to_name=name,
                                  bill_to_address=(street, place, country))
    return documents.render(invoice, ISSUER, load({"SECRETS_DIR": tempfile.mkdtemp()}))


@pytest.mark.parametrize("locale", TENANTS)
def test_every_name_address_month_and_amount_reads_back_with_pdftotext_and_pypdf(locale):
    rendered = _render(locale)
    assert misread(locale, rendered.view, rendered.pdf) == []
    assert _render(locale).pdf == rendered.pdf   # byte-identical re-rendering


def test_an_emoji_in_a_name_is_printed_not_dropped():
    # Noto Emoji (monochrome) is the last fallback: the rocket is in the text layer, and a
    # glyph was drawn for it (the font subset embedded in the PDF carries its outline)
    invoice = dataclasses.replace(INVOICE, locale="es", bill_to_name="Café 🚀 S.L.",
                                  bill_to_address=("Calle Mayor 1 🌍", "28013 Madrid", "ES"))
    rendered = documents.render(invoice, ISSUER, load({"SECRETS_DIR": tempfile.mkdtemp()}))
    for text in (pdftotext(rendered.pdf), pypdf_text(rendered.pdf)):
        assert "Café 🚀 S.L." in text and "Calle Mayor 1 🌍" in text
    fonts = {f["/BaseFont"] for p in pypdf.PdfReader(BytesIO(rendered.pdf)).pages
             for f in p["/Resources"]["/Font"].values()}
    assert any("NotoEmoji" in name for name in fonts), fonts


# each customer as its e-invoice states it: street, postcode, city, and a registration
# Peppol can address where one exists (EU VAT IDs, a Japanese registration number)
POSTAL = {
    "ar": ("11564", "الرياض", None), "he": ("6100001", "תל אביב", None),
    "th": ("10110", "กรุงเทพมหานคร", None), "hi": ("110001", "नई दिल्ली", None),
    "ja": ("100-0005", "東京都千代田区", "T1234567890123"), "ko": ("04524", "서울특별시", None),
    "zh": ("100000", "北京市", None), "el": ("105 63", "Αθήνα", "EL094259216"),
    "ru": ("125009", "Москва", None), "pl": ("90-001", "Łódź", "PL5260250274"),
    "de": ("80331", "München", "DE999999999"),
}


@pytest.mark.parametrize("locale", TENANTS)
def test_each_scripts_e_invoice_breaks_no_fatal_rule_of_cii_ubl_peppol_or_xrechnung(locale):
    """The twelve-locale run's names and addresses in every syntax, through the official
    rule sets: CII (XSD + EN 16931), UBL (EN 16931) and XRechnung for every customer,
    Peppol for the customers it can address (the close holds the others' Peppol)."""
    name, street, place, country, _ = TENANTS[locale]
    postcode, city, tax_id = POSTAL[locale]
    assert place in (f"{postcode} {city}", f"{postcode}\u00a0{city}")
    invoice = dataclasses.replace(
        BASE, locale=locale, bill_to_name=name, bill_to_address=(street, place, country),
        bill_to_postal={"street": [street], "postcode": postcode, "city": city,
                        "country": country}, bill_to_tax_id=tax_id)
    xml = cii_xml(invoice, SUPPLIER)
    assert_en16931(xml)
    text = set(etree.fromstring(xml).itertext())
    assert {name, street, postcode, city} <= text, text
    contact = {"name": "Accounts", "telephone": "+49 30 1234567", "email": "ar@nordwind.example"}
    xrechnung = ubl_xml(invoice, SUPPLIER, flavour="xrechnung",
                        buyer_reference="04011000-12345-34", seller_contact=contact)
    assert broken_rules_of(xrechnung, UBL_RULES) == []
    assert broken_rules_of(xrechnung, XRECHNUNG_RULES) == []
    if tax_id:
        peppol = ubl_xml(invoice, SUPPLIER, buyer_reference="PO-4711", seller_contact=contact)
        assert broken_rules_of(peppol, UBL_RULES) == []
        assert broken_rules_of(peppol, PEPPOL_RULES) == []
