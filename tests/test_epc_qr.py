"""The EPC QR code (EPC069-12, "GiroCode") on EUR invoices: decoded from the rendered PDF
page (pypdfium2 renders it, zxing-cpp reads it) and from the HTML document, every field
checked; no code on a credit note, in another currency or without a valid IBAN."""
from __future__ import annotations

import base64
import dataclasses
import io
import re
from decimal import Decimal

import pypdfium2
import pytest
import zxingcpp
from PIL import Image

from chargeback.core.settings import load
from chargeback.documents import epc_qr
from chargeback.documents import rendered as documents

from .documents_helpers import INVOICE, ISSUER

BANK = dataclasses.replace(ISSUER, payment_details=(
    "Commerzbank Berlin", "IBAN DE89 3704 0044 0532 0130 00", "BIC COBADEFFXXX"))


def decoded(image) -> list[str]:
    [found] = [b for b in zxingcpp.read_barcodes(image)
               if b.format == zxingcpp.BarcodeFormat.QRCode]
    return found.text.split("\n")


def pdf_code(pdf: bytes) -> list[str]:
    page = pypdfium2.PdfDocument(pdf)[0]
    return decoded(page.render(scale=4).to_pil())


def html_code(html: str) -> list[str]:
    [uri] = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    return decoded(Image.open(io.BytesIO(base64.b64decode(uri))))


def render(invoice, issuer, tmp_path):
    return documents.render(invoice, issuer, load({"SECRETS_DIR": str(tmp_path)}))


def test_the_pdf_and_the_html_carry_a_code_with_amount_creditor_iban_and_number(tmp_path):
    rendered = render(INVOICE, BANK, tmp_path)
    for fields in (pdf_code(rendered.pdf), html_code(rendered.html)):
        # EPC069-12: service tag, version 002, character set (1-8), SEPA credit transfer,
        # BIC, creditor, IBAN, EUR amount, purpose, structured reference, remittance
        assert fields[:2] == ["BCD", "002"] and fields[2] in "12345678"
        assert fields[3:8] == ["SCT", "COBADEFFXXX", "Example Functions Ltd",
                               "DE89370400440532013000", "EUR1469.06"]
        assert fields[8:11] == ["", "", "INV-2026-000042"]   # the invoice's total, number


@pytest.mark.parametrize("change", [
    {"currency": "USD"},
    {"document_kind": "credit_note", "total": Decimal("-1469.06")},
])
def test_no_code_on_a_credit_note_or_another_currency(tmp_path, change):
    rendered = render(dataclasses.replace(INVOICE, **change), BANK, tmp_path)
    assert "data:image/png" not in rendered.html
    assert not zxingcpp.read_barcodes(pypdfium2.PdfDocument(rendered.pdf)[0]
                                      .render(scale=4).to_pil())


def test_no_code_without_a_valid_iban():
    wrong_check_digits = dataclasses.replace(ISSUER, payment_details=(
        "IBAN DE88 3704 0044 0532 0130 00",))
    assert epc_qr.payment(INVOICE, ISSUER) is None            # no payment details
    assert epc_qr.payment(INVOICE, wrong_check_digits) is None
    assert epc_qr.iban_valid("GB82WEST12345698765432")        # the ISO 13616 example
