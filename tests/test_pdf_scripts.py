"""A customer reads its document in its own script: the tenant's name and address, the
month and the amounts are in the PDF's text layer as written, read back with poppler's
pdftotext and with pypdf; the same document renders to the same bytes twice."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import tempfile
from io import BytesIO

import pypdf
import pytest
from lxml import etree

from chargeback.core.settings import load
from chargeback.documents import rendered as documents
from chargeback.documents.einvoice import cii_xml
from chargeback.documents.ubl import ubl_xml

from .documents_helpers import INVOICE, ISSUER
from .einvoice_documents import BASE, SUPPLIER
from .einvoice_rules import (
    PEPPOL_RULES,
    UBL_RULES,
    XRECHNUNG_RULES,
    assert_en16931,
    broken_rules_of,
)

# name, street, "postcode city" in each locale's script, and September as the period
# ("September 2026") names it there (CLDR's stand-alone month)
TENANTS = {
    "ar": ("شركة النور للتقنية", "شارع الملك فهد", "11564 الرياض", "SA", "سبتمبر"),
    "he": ("חברת אור בע״מ", "רחוב הרצל 10", "6100001 תל אביב", "IL", "ספטמבר"),
    "th": ("บริษัท แสงทอง", "99 ถนนสุขุมวิท", "10110 กรุงเทพมหานคร", "TH", "กันยายน"),
    "hi": ("भारत क्लाउड", "12 महात्मा गांधी मार्ग", "110001 नई दिल्ली", "IN", "सितंबर"),
    "ja": ("株式会社さくらクラウド", "丸の内1-1", "100-0005 東京都千代田区", "JP", "9月"),
    "ko": ("한빛 클라우드 주식회사", "세종대로 110", "04524 서울특별시", "KR", "9월"),
    "zh": ("北京云计算有限公司", "长安街1号", "100000 北京市", "CN", "9月"),
    "el": ("Ελληνική Νέφος Α.Ε.", "Οδός Ερμού 10", "105 63 Αθήνα", "GR", "Σεπτέμβριος"),
    "ru": ("ООО «Облако»", "ул. Тверская, 1", "125009 Москва", "RU", "сентябрь"),
    "pl": ("Chmura Łódź sp. z o.o.", "ul. Piotrkowska 100", "90-001 Łódź", "PL", "wrzesień"),
    "de": ("Müller & Söhne GmbH", "Hauptstraße 5", "80331 München", "DE", "September"),
}
# pdftotext marks right-to-left runs with embeddings, pypdf leaves NULs between CJK
# characters it decodes from two bytes; a reader sees none of them. CLDR's amounts hold
# no-break spaces, which the text layer keeps as spaces.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NOISE = re.compile("[\x00-\x08\x0b-\x1f]")


def _plain(text: str, marks: str = "") -> str:
    text = _BIDI.sub(marks, _NOISE.sub("", text))
    return text.replace("\xa0", " ").replace("\u202f", " ")


def _render(locale: str):
    name, street, place, country, _ = TENANTS[locale]
    invoice = dataclasses.replace(INVOICE, locale=locale, bill_to_name=name,
                                  bill_to_address=(street, place, country))
    return documents.render(invoice, ISSUER, load({"SECRETS_DIR": tempfile.mkdtemp()}))


def _pdftotext(pdf: bytes, marks: str = "") -> str:
    out = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
    return _plain(out.stdout.decode(), marks)


def _pypdf(pdf: bytes, marks: str = "") -> str:
    return _plain("\n".join(p.extract_text() for p in pypdf.PdfReader(BytesIO(pdf)).pages),
                  marks)


def _expected(locale: str, view: dict) -> list[str]:
    """The tenant's name, address lines and month, and every amount of the document:
    each line's, the subtotal, the tax and the total, as the view formats them."""
    name, street, place, _, september = TENANTS[locale]
    amounts = [line["amount"] for line in view["lines"]] + [
        view["subtotal"], view["tax"], view["total"]]
    return [name, street, place, september, *map(_plain, amounts)]


# What poppler's pdftotext alone gives back otherwise, and why (pypdf reads them exactly):
# - its own reordering of a line puts the space between a right-to-left word and the
#   digits after it inside the right-to-left run ("‫ רחוב הרצל‬10");
# - Noto Sans Arabic draws the little keheh inside a final kaf (ك) as a glyph of its own
#   with no width, which pdftotext makes a word ("المل ك").
# Their letters and digits are all there, in order: exact but for a space.
POPPLER_REORDERS = {("he", "רחוב הרצל 10"), ("ar", "شارع الملك فهد")}


@pytest.mark.parametrize("locale", TENANTS)
def test_every_name_address_month_and_amount_reads_back_with_pdftotext_and_pypdf(locale):
    rendered = _render(locale)
    poppler, pypdf_text = _pdftotext(rendered.pdf), _pypdf(rendered.pdf)
    for expected in _expected(locale, rendered.view):
        assert expected in pypdf_text, (locale, "pypdf", expected)
        if (locale, expected) in POPPLER_REORDERS:
            assert "".join(expected.split()) in "".join(poppler.split()), (
                locale, "pdftotext", expected)
        else:
            assert expected in poppler, (locale, "pdftotext", expected)
    assert _render(locale).pdf == rendered.pdf   # byte-identical re-rendering


def test_an_emoji_in_a_name_is_printed_not_dropped():
    # Noto Emoji (monochrome) is the last fallback: the rocket is in the text layer, and a
    # glyph was drawn for it (the font subset embedded in the PDF carries its outline)
    invoice = dataclasses.replace(INVOICE, locale="es", bill_to_name="Café 🚀 S.L.",
                                  bill_to_address=("Calle Mayor 1 🌍", "28013 Madrid", "ES"))
    rendered = documents.render(invoice, ISSUER, load({"SECRETS_DIR": tempfile.mkdtemp()}))
    for text in (_pdftotext(rendered.pdf), _pypdf(rendered.pdf)):
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
