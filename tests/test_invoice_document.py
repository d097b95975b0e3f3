"""Rendering an invoice, with plain values: locale formats, escaping, same bytes twice."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from decimal import Decimal as D

import pypdfium2 as pdfium
import pytest
from pypdf import PdfReader

from chargeback.mail.i18n import resolve_locale
from chargeback.billing.invoicing import Line
from chargeback.documents.presentation import present
from chargeback.documents.rendering import lines_csv, render_html, render_text
from chargeback.documents.message import Attachment, Undeliverable, build
from chargeback.documents.pdf import render_pdf

from .conftest import ROOT
from .documents_helpers import INVOICE, ISSUER


def everything(invoice=INVOICE):
    view = present(invoice, ISSUER, attachments=("invoice.pdf",))
    return (render_html(view), render_text(view), render_pdf(view, invoice.issued_at),
            lines_csv(invoice))


_RENDER_ELSEWHERE = """
import hashlib, json
from tests.test_invoice_document import everything
print(json.dumps([hashlib.sha256(b if isinstance(b, bytes) else b.encode()).hexdigest()
                  for b in everything()]))
"""


def test_the_same_invoice_renders_to_the_same_bytes_in_another_process_and_time_zone():
    # a re-render (the portal, a resend) must give the bytes the mail carried, in another
    # process: another hash seed (set and dict order), another local time zone, later
    here = [hashlib.sha256(b if isinstance(b, bytes) else b.encode()).hexdigest()
            for b in everything()]
    for seed, zone in (("1", "Pacific/Kiritimati"), ("4242", "America/Adak")):
        env = {**os.environ, "PYTHONHASHSEED": seed, "TZ": zone,
               "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "scripts")])}
        out = subprocess.run([sys.executable, "-c", _RENDER_ELSEWHERE], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120, check=True).stdout
        assert json.loads(out) == here, (seed, zone)
    # and the PDF says the invoice's issue instant (2026-10-01T01:00:05Z), never the
    # moment it was rendered
    dates = re.findall(rb"<xmp:(CreateDate|ModifyDate|MetadataDate)>([^<]*)", everything()[2])
    assert dates == [(b"CreateDate", b"2026-10-01T01:00:05+00:00"),
                     (b"ModifyDate", b"2026-10-01T01:00:05+00:00"),
                     (b"MetadataDate", b"2026-10-01T01:00:05+00:00")]


def test_money_numbers_and_dates_follow_the_tenants_locale():
    text = render_text(present(INVOICE, ISSUER))
    assert "Rechnungsdatum 1. Oktober 2026" in text and "Leistungszeitraum: September 2026" in text
    nbsp = "\xa0"  # babel keeps number and currency together
    assert f"1.469,06{nbsp}€" in text and f"USt. 19{nbsp}%" in text and f"1,1855{nbsp}€" in text
    english = render_text(present(dataclasses.replace(INVOICE, locale="en"), ISSUER))
    assert "€1,469.06" in english and "Issued October 1, 2026" in english


def test_an_unknown_or_empty_locale_falls_back_to_the_default():
    assert str(resolve_locale("xx_NOPE")) == "en"
    assert str(resolve_locale("", "fr")) == "fr"
    assert str(resolve_locale("pt-BR")) == "pt_BR"


def test_lines_are_shown_in_line_order_with_tiers_and_allowance():
    text = render_text(present(INVOICE, ISSUER))
    assert text.index("Function usage") < text.index("HYPERLINK")
    assert "über 400.000 GB-s: 100.000 × 0,00049\xa0€ = 49,00\xa0€" in text
    assert "genutztes Inklusivvolumen: 400.000 GB-s" in text


def test_a_csv_cell_a_spreadsheet_would_run_is_kept_as_text():
    rows = lines_csv(INVOICE).splitlines()
    assert rows[0].startswith("invoice_number,line_no,kind")
    assert rows[1].startswith("INV-2026-000042,1,usage")
    assert "'=HYPERLINK" in rows[2]


def _pdf_text(pdf: bytes) -> str:
    """The PDF's text as PDFium extracts it (exact for CJK, where pypdf adds spaces)."""
    document = pdfium.PdfDocument(pdf)
    return "\n".join(page.get_textpage().get_text_bounded() for page in document)


def _spaces(text: str) -> str:
    """Babel separates with no-break spaces (U+00A0, U+202F); PDFium may give either back
    as a plain space: compare spaces as spaces."""
    return text.replace("\xa0", " ").replace("\u202f", " ")


# Tenant names in four scripts, with their currency and locale; what the PDF must say
# back: the name, the total as CLDR writes it in that locale (babel's data, by hand:
# pl 1 469,06 zł with a no-break space; ru 1 469,06 ₽; ja ￥1,469 (no minor unit);
# hi ₹1,469.06) and the issue date spelled in the locale.
SCRIPTS = [
    ("pl_PL", "PLN", "Łódź Żółć Sp. z o.o.", "1\xa0469,06\xa0zł", "1 października 2026"),
    ("ru_RU", "RUB", "ООО «Ромашка»", "1\xa0469,06\xa0₽", "1 октября 2026 г."),
    ("ja_JP", "JPY", "株式会社テスト東京", "￥1,469", "2026年10月1日"),
    ("hi_IN", "INR", "भारत डेटा सेवा", "₹1,469.06", "1 अक्टूबर 2026"),
]


@pytest.mark.parametrize("locale, currency, name, total, issued", SCRIPTS,
                         ids=[s[0] for s in SCRIPTS])
def test_the_pdf_shows_every_script_as_written(locale, currency, name, total, issued):
    invoice = dataclasses.replace(INVOICE, locale=locale, currency=currency, bill_to_name=name)
    view = present(invoice, ISSUER)
    assert (_spaces(view["total"]), _spaces(view["issued"])) == (_spaces(total), issued)
    pdf = render_pdf(view, invoice.issued_at)
    text = _spaces(_pdf_text(pdf))
    for expected in (name, total, issued):
        assert _spaces(expected) in text, expected
    # PDF/A keeps the document's title and subject in its XMP metadata
    xmp = PdfReader(io.BytesIO(pdf)).xmp_metadata
    assert xmp.dc_description["x-default"].startswith(name)
    assert xmp.dc_title["x-default"] == view["title"]
    assert "?" not in text


def test_a_tenants_markup_and_line_breaks_are_text_in_the_pdf():
    name = 'Łódź <script>alert("x")</script>\r\nX'
    pdf = render_pdf(present(dataclasses.replace(INVOICE, bill_to_name=name), ISSUER),
                     INVOICE.issued_at)
    text = " ".join(_pdf_text(pdf).split())  # PDFium collapses runs of spaces
    assert 'Łódź <script>alert("x")</script> X' in text and "1.469,06" in text


def _build(**overrides):
    invoice = dataclasses.replace(INVOICE, **overrides.pop("invoice", {}))
    options = dict(subject="Invoice", text="t", html="<p>h</p>",
                   attachments=[Attachment("invoice.pdf", "application/pdf", b"%PDF")],
                   mail_from="Billing <billing@example.com>", reply_to=None, bcc=None,
                   sent_at=INVOICE.issued_at)
    options.update(overrides)
    return build(invoice, **options)


def test_the_message_id_and_boundaries_come_from_the_invoice():
    first, envelope = _build()
    second, _ = _build()
    assert first.as_bytes() == second.as_bytes()
    assert first["Message-ID"] == f"<invoice-{INVOICE.invoice_id}@example.com>"
    assert envelope.sender == "billing@example.com"
    assert envelope.recipients == ("billing@acme.example",)


@pytest.mark.parametrize("overrides, reason", [
    ({"invoice": {"bill_to_name": "X\nBcc: a@b.c"}}, "To display name contains a line break"),
    ({"invoice": {"bill_to_email": "a@b.c\r\nBcc: v@x.y"}}, "To contains a line break"),
    ({"invoice": {"bill_to_email": "not an address"}}, "is not one e-mail address"),
    ({"invoice": {"bill_to_email": "a@b.c, d@e.f"}}, "is not one e-mail address"),
    ({"invoice": {"bill_to_email": None}}, "has no billing e-mail address"),
    ({"subject": "Invoice\r\nX-Evil: 1"}, "Subject contains a line break"),
    ({"mail_from": "billing@example.com\nBcc: x@y.z"}, "From contains a line break"),
])
def test_a_header_that_could_break_the_mail_makes_it_undeliverable(overrides, reason):
    with pytest.raises(Undeliverable, match=reason):
        _build(**overrides)


def test_exact_quantities_are_shown_to_three_decimals_and_kept_whole_in_the_csv():
    line = Line("capacity", "Dedicated memory", D("178991.092529296876"),
                "GiB-hours", D("85.92"), unit_price=D("0.0012"), line_no=1)
    invoice = dataclasses.replace(INVOICE, locale="en", lines=(line,))
    assert "178,991.093 GiB-hours × €0.0012" in render_text(present(invoice, ISSUER))
    assert ",178991.092529296876,GiB-hours," in lines_csv(invoice)


_RENDER_IN_A_FRESH_PROCESS = """
import dataclasses, sys
from devstack.sample_documents import INVOICE, ISSUER
from chargeback.documents.presentation import present
from chargeback.documents.pdf import render_pdf
invoice = dataclasses.replace(INVOICE, locale=sys.argv[1])
sys.stdout.buffer.write(render_pdf(present(invoice, ISSUER), invoice.issued_at))
"""


# ru: Latin and Cyrillic, Noto Sans regular and bold; ja: the CJK fallback cut to the
# document's characters
@pytest.mark.parametrize("locale", ["ru_RU", "ja_JP"])
def test_a_pdf_is_the_same_bytes_in_this_process_and_in_a_fresh_one_with_a_cold_font_cache(
        tmp_path, locale):
    import os
    import subprocess
    import sys
    from pathlib import Path
    invoice = dataclasses.replace(INVOICE, locale=locale)
    here = [render_pdf(present(invoice, ISSUER), invoice.issued_at) for _ in range(2)]
    root = Path(__file__).resolve().parents[1]
    fresh = subprocess.run(
        [sys.executable, "-c", _RENDER_IN_A_FRESH_PROCESS, locale], cwd=root,
        env={**os.environ, "FONT_CACHE_DIR": str(tmp_path), "PYTHONPATH": f"{root}:{root / 'scripts'}"},
        capture_output=True, check=True).stdout
    assert here[0] == here[1] == fresh
    assert list(tmp_path.glob("chargeback-fonts/*.ttf"))  # it cut its own fonts
    if locale == "ja_JP":   # and the CJK faces, small: the document's characters only
        cuts = list(tmp_path.glob("chargeback-fonts/NotoSansCJK*.otf"))
        assert len(cuts) == 2 and all(c.stat().st_size < 200_000 for c in cuts), cuts


def test_a_wrapped_attachment_list_keeps_its_size_and_does_not_overlap_itself():
    # Japanese labels start the line in the fallback font; four long names need two lines
    names = tuple(f"examplefunctions-2026-09-INV-2026-000042{suffix}" for suffix in (
        ".pdf", "-lines.csv", "-factur-x.xml", "-usage.csv"))
    invoice = dataclasses.replace(INVOICE, locale="ja_JP")
    pdf = pdfium.PdfDocument(render_pdf(present(invoice, ISSUER, attachments=names),
                                        invoice.issued_at))
    page = pdf[0].get_textpage()
    text = page.get_text_range()
    first, second = (text.index(".csv", text.index(name)) for name in names[1::2])
    # (left, bottom, right, top) of the "c" of ".csv" at the end of each line
    box_one, box_two = page.get_charbox(first + 1), page.get_charbox(second + 1)
    assert abs((box_one[3] - box_one[1]) - (box_two[3] - box_two[1])) < 0.01  # same size
    assert box_two[3] < box_one[1]  # the second line lies wholly below the first


def test_a_long_line_without_spaces_wraps_between_characters_and_keeps_every_one():
    note = "リバースチャージ方式により受領者が消費税を申告します。" * 6  # no space anywhere
    invoice = dataclasses.replace(INVOICE, locale="ja_JP", tax_rate=D(0), tax=D("0.00"),
                                  total=D("1234.50"), tax_note=note)
    view = present(invoice, ISSUER)
    text = _pdf_text(render_pdf(view, invoice.issued_at))
    assert note in "".join(text.split())        # wrapped onto several lines, nothing lost
    assert note not in text                      # (it did need more than one line)
