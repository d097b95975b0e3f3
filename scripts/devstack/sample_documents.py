"""One invoice as plain values, and its tenant in each script, for what renders and reads
back documents: the document tests (tests/documents_helpers.py, tests/test_pdf_scripts.py)
and scripts/bench/pdf_engines. `misread` is the read-back check both apply: the tenant's
name, address lines and month, and every amount, in the PDF's text layer as pypdf and
poppler's pdftotext give it back, exactly."""
from __future__ import annotations

import re
import subprocess
from datetime import datetime, timezone
from decimal import Decimal as D
from io import BytesIO

import pypdf

from chargeback.billing.invoicing import Line
from chargeback.documents.model import Invoice, Issuer

ISSUER = Issuer("Example Functions Ltd", ("1 Cloud Street", "10115 Berlin"), "DE123456789",
                "accounts@example.com")
INVOICE = Invoice(
    invoice_id="0b6c2d1e-7a4f-4c3e-9d2b-5f6a7b8c9d0e", number="INV-2026-000042",
    namespace="acme-shop", period="2026-09",
    period_start=datetime(2026, 9, 1, tzinfo=timezone.utc),
    period_end=datetime(2026, 10, 1, tzinfo=timezone.utc), billing_timezone="UTC",
    issued_at=datetime(2026, 10, 1, 1, 0, 5, tzinfo=timezone.utc), currency="EUR",
    bill_to_name="Müller & Söhne", bill_to_email="billing@acme.example", locale="de_DE",
    subtotal=D("1234.50"), tax_rate=D("0.19"), tax=D("234.56"), total=D("1469.06"),
    lines=(
        Line("usage", "=HYPERLINK(\"http://evil\")", D("1000.000000"), "GB-s",
             D("1185.50"), unit_price=D("1.1855"), line_no=2),
        Line("usage", "Function usage", D("500000"), "GB-s", D("49.00"),
             tiers=({"from": "0", "to": "400000", "unit_price": "0", "quantity": "400000",
                     "amount": "0"},
                    {"from": "400000", "to": None, "unit_price": "0.00049",
                     "quantity": "100000", "amount": "49.00"}),
             tier_mode="graduated", allowance=D(400000), line_no=1),
    ))

# name, street, "postcode city" in each locale's script, its country, and September as
# the period ("September 2026") names it there (CLDR's stand-alone month)
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

# What poppler's pdftotext alone gives back otherwise, and why (pypdf reads them exactly):
# - its own reordering of a line puts the space between a right-to-left word and the
#   digits after it inside the right-to-left run ("‫ רחוב הרצל‬10");
# - Noto Sans Arabic draws the little keheh inside a final kaf (ك) as a glyph of its own
#   with no width, which pdftotext makes a word ("المل ك").
# Their letters and digits are all there, in order: exact but for a space.
POPPLER_REORDERS = {("he", "רחוב הרצל 10"), ("ar", "شارع الملك فهد")}


def plain(text: str) -> str:
    """Text as a reader sees it: no bidi marks or control noise, no-break spaces as spaces."""
    text = _BIDI.sub("", _NOISE.sub("", text))
    return text.replace("\xa0", " ").replace("\u202f", " ")


def pdftotext(pdf: bytes) -> str:
    out = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
    return plain(out.stdout.decode())


def pypdf_text(pdf: bytes) -> str:
    return plain("\n".join(p.extract_text() for p in pypdf.PdfReader(BytesIO(pdf)).pages))


def expected(locale: str, view: dict) -> list[str]:
    """The tenant's name, address lines and month, and every amount of the document:
    each line's, the subtotal, the tax and the total, as the view formats them."""
    name, street, place, _, september = TENANTS[locale]
    amounts = [line["amount"] for line in view["lines"]] + [
        view["subtotal"], view["tax"], view["total"]]
    return [name, street, place, september, *map(plain, amounts)]


def misread(locale: str, view: dict, pdf: bytes) -> list[str]:
    """What does not read back exactly: "pypdf: <text>" or "pdftotext: <text>" ([] when
    everything does; POPPLER_REORDERS compared without spaces in pdftotext's)."""
    poppler, by_pypdf = pdftotext(pdf), pypdf_text(pdf)
    out = [f"pypdf: {e}" for e in expected(locale, view) if e not in by_pypdf]
    for e in expected(locale, view):
        if (locale, e) in POPPLER_REORDERS:
            found = "".join(e.split()) in "".join(poppler.split())
        else:
            found = e in poppler
        if not found:
            out.append(f"pdftotext: {e}")
    return out
