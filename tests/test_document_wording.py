"""What a tax auditor reads on a document, in the customer's language: a credit note under
its national name, the corrected invoice's number and date on every correcting document,
the legal basis of a 0 % rate in the document's language, a VAT ID under the name its own
country gives it, a price on every line, a credit as the money it takes off, and a lines
CSV of plain decimals. The same words in the HTML, the text and the PDF."""
from __future__ import annotations

import csv
import dataclasses
import io
import tempfile
from datetime import date
from decimal import Decimal as D

import pytest
import pypdf

from chargeback.billing.invoicing import Line
from chargeback.core.settings import load
from chargeback.documents import rendered as documents
from chargeback.documents.rendering import lines_csv

from .documents_helpers import INVOICE, ISSUER

SETTINGS = load({"SECRETS_DIR": tempfile.mkdtemp()})
# INV-2026-000041, issued 1 October 2026, corrected or replaced by the documents below
CORRECTED = {"corrects": "INV-2026-000041", "corrects_issued": date(2026, 10, 1)}
CREDIT = dataclasses.replace(INVOICE, document_kind="credit_note", number="CN-2026-000001",
                             **CORRECTED)


def _rendered(invoice, issuer=ISSUER):
    """(HTML, text, the PDF's text) of `invoice`, whitespace runs made one space."""
    out = documents.render(invoice, issuer, SETTINGS)
    pdf = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(out.pdf)).pages)
    return [" ".join(part.replace("\xa0", " ").replace("\u202f", " ").split())
            for part in (out.html, out.text, pdf)]


@pytest.mark.parametrize("locale, title, heading", [
    ("de_DE", "Rechnungskorrektur CN-2026-000001", "RECHNUNGSKORREKTUR"),  # not Gutschrift
    ("es_ES", "Factura rectificativa CN-2026-000001", "FACTURA RECTIFICATIVA"),
    ("fr_FR", "Facture d'avoir CN-2026-000001", "FACTURE D'AVOIR"),
    ("pl_PL", "Faktura korygująca CN-2026-000001", "FAKTURA KORYGUJĄCA"),
])
def test_a_credit_note_carries_its_national_name(locale, title, heading):
    view = documents.render(dataclasses.replace(CREDIT, locale=locale), ISSUER, SETTINGS).view
    assert view["title"] == title and view["labels"]["heading"] == heading
    for part in _rendered(dataclasses.replace(CREDIT, locale=locale)):
        assert heading in part.replace("&#39;", "'")
        assert "Gutschrift" not in part and "GUTSCHRIFT" not in part


@pytest.mark.parametrize("kind, fields, expected", [
    ("credit note", {"document_kind": "credit_note", **CORRECTED},
     "Koryguje fakturę nr INV-2026-000041 z dnia 1 października 2026 (wrzesień 2026)"),
    ("supplementary invoice", {"document_kind": "supplementary", **CORRECTED},
     "Koryguje fakturę nr INV-2026-000041 z dnia 1 października 2026 (wrzesień 2026)"),
    ("reissue", {"replaces": "INV-2026-000041", "replaces_issued": date(2026, 10, 1)},
     "Zastępuje fakturę nr INV-2026-000041 z dnia 1 października 2026 (wrzesień 2026)"),
])
def test_every_correcting_document_names_the_original_number_and_its_date(kind, fields,
                                                                           expected):
    # Polish long date of 2026-10-01 (genitive month): "1 października 2026"; September
    # 2026 as a standalone month: "wrzesień 2026"
    invoice = dataclasses.replace(INVOICE, locale="pl_PL", **fields)
    for part in _rendered(invoice):
        assert expected in part, kind
    english = dataclasses.replace(INVOICE, locale="en", **fields)
    for part in _rendered(english):
        assert "invoice INV-2026-000041 of October 1, 2026 (September 2026)" in part


ZERO = {"tax_rate": D(0), "tax": D("0.00"), "total": D("1234.50")}


@pytest.mark.parametrize("locale, note, shown", [
    ("de_DE", "Reverse charge: VAT to be accounted for by the recipient, art. 196 Directive "
              "2006/112/EC",
     "Steuerschuldnerschaft des Leistungsempfängers (Reverse Charge), Art. 196 Richtlinie "
     "2006/112/EG"),
    ("fr_FR", "Not subject to EU VAT: place of supply outside the EU, art. 44 Directive "
              "2006/112/EC", "TVA non applicable : lieu de prestation hors de l'UE, art. 44"),
    ("pl_PL", "Exempt from VAT, art. 135(1) Directive 2006/112/EC",
     "Zwolnione z VAT, art. 135 ust. 1 dyrektywy 2006/112/WE"),
    # an operator's own wording is shown as written
    ("de_DE", "Steuerfrei nach § 4 Nr. 8 UStG", "Steuerfrei nach § 4 Nr. 8 UStG"),
])
def test_a_standard_tax_note_is_in_the_documents_language(locale, note, shown):
    invoice = dataclasses.replace(INVOICE, locale=locale, tax_note=note, **ZERO)
    for part in _rendered(invoice):
        assert shown in part.replace("&#39;", "'")
        if shown != note:
            assert "Directive 2006/112/EC" not in part


@pytest.mark.parametrize("locale, tax_id, label, not_shown", [
    ("en", "DE811111111", "USt-IdNr.: DE811111111", "VAT ID"),      # a German VAT ID
    ("ru_RU", "DE811111111", "USt-IdNr.: DE811111111", "ИНН"),      # ... on a Russian one
    ("de_DE", "PL5260250274", "NIP: PL5260250274", "USt-IdNr.: PL"),  # Polish: NIP
    ("pl_PL", "FR40303265045", "Nr VAT UE: FR40303265045", "NIP"),  # NIP only for Polish
    ("es_ES", "FR40303265045", "NIF-IVA: FR40303265045", "NIF: FR"),
    ("en", "FR40303265045", "VAT ID: FR40303265045", "Tax ID"),
    ("ru_RU", "T1234567890123", "Налоговый номер: T1234567890123", "ИНН"),  # no VAT ID
])
def test_a_tax_id_is_labelled_by_its_own_country(locale, tax_id, label, not_shown):
    invoice = dataclasses.replace(INVOICE, locale=locale, bill_to_tax_id=tax_id)
    for part in _rendered(invoice):
        assert label in part and not_shown not in part


def test_every_line_of_a_supplementary_invoice_shows_its_unit_price():
    # an adjustment of 10,000 GB-s at 0.0000166667: 0.166667 -> 0.17
    late = Line("usage", "Function compute", D(10000), "GB-s", D("0.17"), meter="gb_seconds",
                unit_price=D("0.0000166667"), adjustment_period="2026-09", line_no=1)
    invoice = dataclasses.replace(INVOICE, locale="en", document_kind="supplementary",
                                  lines=(late,), subtotal=D("0.17"), tax=D("0.03"),
                                  total=D("0.20"), **CORRECTED)
    for part in _rendered(invoice):
        assert "10,000 GB-s × €0.0000166667" in part


@pytest.mark.parametrize("kind, quantity, amount", [("supplementary", 100000, "49.00"),
                                                     ("credit_note", -100000, "-49.00")])
def test_a_tiered_adjustment_line_shows_what_a_unit_cost_on_average(kind, quantity, amount):
    # late usage of 100,000 GB-s priced by graduated tiers over the whole month: it stores
    # no tiers, only the difference, 49.00; 49.00 / 100,000 = 0.00049 a GB-s
    late = Line("usage", "Function usage", D(quantity), "GB-s", D(amount), meter="gb_seconds",
                tier_mode="graduated", adjustment_period="2026-09", line_no=1)
    invoice = dataclasses.replace(INVOICE, locale="en", document_kind=kind, lines=(late,),
                                  subtotal=D(amount), tax=D(0), total=D(amount), **CORRECTED)
    for part in _rendered(invoice):
        assert f"{quantity:,} GB-s, graduated tiers: €0.00049 on average" in part


def test_a_partial_credit_is_shown_as_the_money_it_takes_off():
    # 100 yen off a 500,000 GB-s line of 532 yen: the stored share is -93,984.962... GB-s,
    # a quantity nobody used; the document says what was credited: ¥100 (JPY: no decimals)
    share = Line("usage", "Function compute", D("-93984.962406015038"), "GB-s", D("-100"),
                 meter="gb_seconds", gross=D("-100"), line_no=1)
    credit = dataclasses.replace(CREDIT, locale="en", currency="JPY", lines=(share,),
                                 subtotal=D("-100"), tax=D("-19"), total=D("-119"),
                                 credit_reason="other")
    for part in _rendered(credit):
        assert "amount credited: -¥100" in part
        assert "93,984" not in part and "GB-s" not in part


def test_the_lines_csv_writes_plain_decimals():
    # 0.20 per million invocations: 2,000,000 x 0.0000002 = 0.40; stored as 2E+6 and 2E-7
    tiny = Line("usage", "Function invocations", D("2E+6"), "invocations", D("0.40"),
                unit_price=D("2E-7"), discount_percent=D("0E-2"), line_no=1)
    tiered = Line("usage", "Function usage", D(500000), "GB-s", D("0.05"),
                  tiers=({"from": "0", "to": "1E+5", "unit_price": "1E-7",
                          "quantity": "500000", "amount": "0.05"},), tier_mode="graduated",
                  line_no=2)
    invoice = dataclasses.replace(INVOICE, lines=(tiny, tiered), subtotal=D("0.45"),
                                  tax=D("0.09"), total=D("0.54"))
    text = lines_csv(invoice)
    assert "E-" not in text and "E+" not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert (rows[0]["quantity"], rows[0]["unit_price"]) == ("2000000", "0.0000002")
    assert '"to": "100000", "unit_price": "0.0000001"' in rows[1]["tiers"]
