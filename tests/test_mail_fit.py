"""A mail any inbox shows right: RFC 2047 subjects, a phone-width HTML with a preview
line and real table semantics, one CSV form, no oversized attachment, names a filing
clerk can sort."""
from __future__ import annotations

import csv
import dataclasses
import email
import io
import re
from email.header import decode_header, make_header

import pytest

from chargeback.core.settings import load
from chargeback.documents import rendered as documents
from chargeback.documents.presentation import present
from chargeback.documents.rendering import lines_csv, render_html, render_text
from chargeback.documents.message import Attachment, attachment_names, build, supplier_token

from .documents_helpers import INVOICE, ISSUER

SUBJECTS = [
    "Example Functions Ltd からの請求書 INV-2026-000042（2026年9月）: ￥1,469 " * 2,
    "Faktura INV-2026-000042 od Łódź Żółć Sp. z o.o. za wrzesień 2026: 1 469,06 zł",
    "Invoice INV-2026-000042 from ООО «Ромашка» for September 2026: 1 469,06 ₽ " * 3,
]


@pytest.mark.parametrize("subject", SUBJECTS, ids=["ja", "pl", "ru"])
def test_a_long_subject_is_folded_into_encoded_words_of_at_most_75_characters(subject):
    invoice = dataclasses.replace(INVOICE, bill_to_name="Łódź Żółć Sp. z o.o. " * 4)
    msg, _ = build(invoice, subject=subject, text="t", html="<p>h</p>", attachments=[],
                   mail_from="Nordwind Billing <billing@example.com>", reply_to=None,
                   bcc=None, sent_at=INVOICE.issued_at)
    raw = msg.as_bytes()
    head = raw.split(b"\n\n", 1)[0].decode("ascii")  # every header is ASCII
    words = re.findall(r"=\?[^?]+\?[bBqQ]\?[^?]*\?=", head)
    assert words and max(len(w) for w in words) <= 75  # RFC 2047 section 2
    assert max(len(line) for line in head.splitlines()) <= 78  # RFC 5322 section 2.1.1
    parsed = email.message_from_bytes(raw)
    assert str(make_header(decode_header(parsed["Subject"]))) == subject


def test_the_html_has_a_preview_line_color_scheme_lang_and_table_semantics():
    html = render_html(present(dataclasses.replace(INVOICE, locale="de_DE"), ISSUER))
    assert '<html lang="de" dir="ltr">' in html and '<meta name="color-scheme" content="light">' in html
    preview = re.search(r'<div style="display:none;[^"]*">([^<]+)</div>', html).group(1)
    assert preview == "Rechnung INV-2026-000042 für September 2026: 1.469,06\xa0€."
    lines_table = html[html.index("<caption"):html.index("</tfoot>")]
    assert 'role="presentation"' not in lines_table  # a data table, announced as one
    assert lines_table.count('<th scope="col"') == 3 and lines_table.count('scope="row"') == 3
    assert "<thead>" in lines_table and "<tbody>" in lines_table


def test_both_csvs_are_crlf_with_true_false_and_the_lines_csv_closes_with_the_totals():
    text = lines_csv(INVOICE)
    assert text.count("\r\n") == len(text.splitlines()) and "\n" not in text.replace("\r\n", "")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["spot"] for r in rows if r["line_no"]} == {"false"}
    closing = [(r["kind"], r["amount"]) for r in rows if not r["line_no"]]
    assert closing == [("subtotal", "1234.50"), ("tax", "234.56"), ("total", "1469.06")]


def test_a_usage_csv_over_the_limit_is_not_attached_and_the_mail_says_so(tmp_path):
    settings = dataclasses.replace(load({"SECRETS_DIR": str(tmp_path)}),
                                   max_attachment_bytes=1000)
    usage = "line_no,kind\r\n" + "1,usage\r\n" * 300  # 2,714 bytes: over 1,000
    rendered = documents.render(INVOICE, ISSUER, settings, usage)
    assert [a.filename for a in rendered.attachments] == [
        "examplefunctions-2026-09-INV-2026-000042.pdf",
        "examplefunctions-2026-09-INV-2026-000042-lines.csv",
        "examplefunctions-2026-09-INV-2026-000042-factur-x.xml"]
    # 2,714 bytes in German words; the text part wraps lines: compare words
    note = "Die Nutzungsdetails (2,7 kB) sind zu groß für einen Anhang"
    assert note in " ".join(rendered.text.split()) and note in " ".join(rendered.html.split())
    small = documents.render(INVOICE, ISSUER, dataclasses.replace(
        settings, max_attachment_bytes=len(usage)), usage)
    assert small.attachments[-1] == Attachment(
        "examplefunctions-2026-09-INV-2026-000042-usage.csv", "text/csv", usage.encode())
    assert "Nutzungsdetails" not in small.text


def test_attachment_names_carry_supplier_period_and_number():
    assert attachment_names(INVOICE, "Example Functions Ltd", True) == (
        "examplefunctions-2026-09-INV-2026-000042.pdf",
        "examplefunctions-2026-09-INV-2026-000042-lines.csv",
        "examplefunctions-2026-09-INV-2026-000042-factur-x.xml",
        "examplefunctions-2026-09-INV-2026-000042-usage.csv")
    assert supplier_token("Müller & Söhne GmbH & Co. KG") == "mullersohne"
    assert supplier_token("株式会社テスト") == ""
    assert attachment_names(INVOICE, "株式会社テスト", False)[0] == "2026-09-INV-2026-000042.pdf"
    assert "Anhänge: a.pdf." in render_text(present(INVOICE, ISSUER, attachments=("a.pdf",)))
