"""Labels follow the customer's language in HTML, text, PDF and Subject (Babel's gettext
catalogs); a language or a label without a translation is shown in English."""
from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from chargeback.documents import i18n
from chargeback.documents.document import present, render_html, render_text, resolve_locale
from chargeback.documents.pdf import render_pdf

from .test_invoice_document import INVOICE, ISSUER

LEGAL = dataclasses.replace(INVOICE, due_date=date(2026, 10, 15), payment_terms_days=14)
PACKAGE = Path(i18n.__file__).resolve().parent


def _msgids() -> set[str]:
    """Every label the documents' code asks gettext for (`_("...")`)."""
    return {message for _, _, message, _, _ in extract_from_dir(
        str(PACKAGE), method_map=[("*.py", "python")], keywords={"_": None})}


def test_at_least_six_languages_have_catalogs_and_every_label_is_translated():
    assert {"de", "es", "fr", "ja", "pl", "ru"} <= set(i18n.languages())  # and English, the source
    wanted = _msgids()
    assert len(wanted) >= 30
    for language in i18n.languages():
        with i18n.catalog_path(language).open("rb") as po:
            catalog = read_po(po, locale=language)
        translated = {m.id: m.string for m in catalog if m.id}
        assert set(translated) == wanted, language
        assert all(translated.values()), language
        # a translation keeps every placeholder of its English label
        for msgid, msgstr in translated.items():
            assert sorted(_fields(msgid)) == sorted(_fields(msgstr)), (language, msgid)


def _fields(text: str) -> list[str]:
    return [part.split("}")[0] for part in text.split("{")[1:]]


# (locale, labels that must appear, English labels that must not)
EXPECTED = [
    ("de_DE", ["RECHNUNG", "Rechnungsempfänger", "Zwischensumme", "Fällig am 15. Oktober 2026",
               "Zahlbar bis 15. Oktober 2026 (14 Tage)."], ["Subtotal", "Bill to"]),
    ("fr_FR", ["FACTURE", "Facturé à", "Sous-total", "Échéance le 15 octobre 2026"],
     ["Subtotal", "Bill to"]),
    ("es_ES", ["FACTURA", "Facturar a", "Importe", "Vence el 15 de octubre de 2026"],
     ["Amount", "Bill to"]),  # Subtotal is Spanish too
    ("pl_PL", ["FAKTURA", "Nabywca", "Suma częściowa", "Termin płatności 15 października 2026"],
     ["Subtotal", "Bill to"]),
    ("ja_JP", ["請求書", "請求先", "小計", "支払期日 2026年10月15日"], ["Subtotal", "Bill to"]),
    ("ru_RU", ["СЧЁТ", "Плательщик", "Промежуточный итог", "Оплатить до 15 октября 2026"],
     ["Subtotal", "Bill to"]),
]


@pytest.mark.parametrize("locale, shown, absent", EXPECTED, ids=[e[0] for e in EXPECTED])
def test_every_part_speaks_the_customers_language(locale, shown, absent):
    view = present(dataclasses.replace(LEGAL, locale=locale), ISSUER,
                   attachments=("a.pdf",))
    pdf = pdfium.PdfDocument(render_pdf(view, LEGAL.issued_at))
    pdf_text = " ".join(" ".join(page.get_textpage().get_text_bounded().split())
                        for page in pdf)
    html, text = render_html(view), render_text(view)
    for part_name, part in (("html", html), ("text", text), ("pdf", pdf_text)):
        for label in shown:
            assert label.upper() in part.upper() if part_name == "pdf" else label in part, (
                part_name, label)
        for label in absent:
            assert label not in part, (part_name, label)
    assert f'<html lang="{locale.split("_")[0]}">' in html
    assert view["subject"].split(" ")[0] in ("Rechnung", "Facture", "Factura", "Faktura",
                                             "Счёт") or \
        view["subject"].startswith(ISSUER.name)  # ja: 〈issuer〉 からの請求書
    assert "Invoice" not in view["subject"]


def test_a_language_without_a_catalog_is_english_and_keeps_its_formats():
    view = present(dataclasses.replace(LEGAL, locale="it_IT"), ISSUER)
    text = render_text(view)
    assert "Bill to" in text and "Subtotal" in text and "Issued 1 ottobre 2026" in text
    assert view["lang"] == "en" and view["subject"].startswith("Invoice INV-2026-000042 from")


def test_a_label_missing_from_a_catalog_is_english_never_a_key():
    german = i18n.for_locale(resolve_locale("de"))[1]
    assert german.gettext("Subtotal") == "Zwischensumme"
    assert german.gettext("A label added after the catalog") == "A label added after the catalog"
