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

from chargeback.documents import presentation
from chargeback.mail import i18n
from chargeback.mail.i18n import resolve_locale
from chargeback.documents.presentation import present
from chargeback.documents.rendering import lines_csv, render_html, render_text
from chargeback.documents.pdf import render_pdf

from .documents_helpers import INVOICE, ISSUER, STORED
from .documents_helpers import line as _line

LEGAL = dataclasses.replace(INVOICE, due_date=date(2026, 10, 15), payment_terms_days=14)
PACKAGE = Path(presentation.__file__).resolve().parent.parent  # all of chargeback


def _msgids() -> set[str]:
    """Every label the documents' code asks gettext for (`_("...")`)."""
    return {message for _, _, message, _, _ in extract_from_dir(
        str(PACKAGE), method_map=[("**.py", "python")], keywords={"_": None, "N_": None})}


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
    assert f'<html lang="{locale.split("_")[0]}" dir="ltr">' in html
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


ENGLISH = [line.description for line in STORED] + ["GPU-hours", " month "]


def test_a_german_invoice_shows_no_english_line_description():
    invoice = dataclasses.replace(LEGAL, plan="pro", lines=STORED)
    view = present(invoice, ISSUER)
    pdf = pdfium.PdfDocument(render_pdf(view, LEGAL.issued_at))
    pdf_text = " ".join(" ".join(page.get_textpage().get_text_bounded().split())
                        for page in pdf)
    html, text = render_html(view), render_text(view)
    assert [line["description"] for line in view["lines"]] == [
        "Funktionsrechenzeit", "GPUs nvidia-a10g (Spot)",
        "Funktionsaufrufe, 2026-09-01 00:00 bis 2026-09-16 00:00 UTC",
        "Grundgebühr, Tarif pro, 12 von 30 Tagen",
        "Mindestumsatz 120,00\xa0€, 12 von 30 Tagen: Aufstockung"]
    for part in (html, text, pdf_text):
        for english in ENGLISH:
            assert english not in part, english
        assert "Grundgebühr, Tarif pro" in part
    assert "1 GPU-Stunden" in text and "1 Monat" in text
    # the lines CSV is data: it keeps the stored description
    assert "Base fee, plan pro, 12 of 30 days" in lines_csv(invoice)


def test_a_description_billing_did_not_write_is_shown_as_stored():
    odd = _line(1, "base_fee", "Platform fee, plan pro")    # not the form invoicing writes
    other_plan = _line(2, "base_fee", "Base fee, plan basic")  # names another plan
    view = present(dataclasses.replace(LEGAL, plan="pro", lines=(odd, other_plan)), ISSUER)
    assert [line["description"] for line in view["lines"]] == [
        "Platform fee, plan pro", "Base fee, plan basic"]


def test_a_line_label_missing_from_a_catalog_is_english(tmp_path, monkeypatch):
    source = i18n.catalog_path("de").read_text(encoding="utf-8")
    without = source.replace('msgid "Function compute"\nmsgstr "Funktionsrechenzeit"\n', "")
    assert without != source
    target = tmp_path / "de" / "LC_MESSAGES" / "messages.po"
    target.parent.mkdir(parents=True)
    target.write_text(without, encoding="utf-8")
    monkeypatch.setattr(i18n, "LOCALES", tmp_path)
    i18n._translations.cache_clear()
    try:
        view = present(dataclasses.replace(LEGAL, plan="pro", lines=STORED), ISSUER)
    finally:
        i18n._translations.cache_clear()
    assert view["labels"]["subtotal"] == "Zwischensumme"     # still German ...
    assert view["lines"][0]["description"] == "Function compute"  # ... but this one English
    assert view["lines"][3]["description"] == "Grundgebühr, Tarif pro, 12 von 30 Tagen"


@pytest.mark.parametrize("locale", ["en", "de_DE", "fr_FR", "es_ES", "pl_PL", "ja_JP", "ru_RU"])
def test_every_language_names_the_lines(locale):
    view = present(dataclasses.replace(LEGAL, plan="pro", lines=STORED, locale=locale),
                   ISSUER)
    shown = [line["description"] for line in view["lines"]]
    if locale == "en":
        assert shown == [line.description for line in STORED]
    else:
        assert not set(shown) & set(ENGLISH), shown


def test_a_closed_month_for_a_german_tenant_names_its_lines_in_german(database_url, tmp_path):
    from chargeback.core import db
    from chargeback.documents import rendered as documents

    from .billing_helpers import NS, event, send, settings_for
    from .billing_helpers import close, on_plan
    from .corrections_helpers import BOOK, OCT_2

    s = settings_for(database_url, tmp_path, book=BOOK)
    on_plan(s, "acme", "committed")
    with db.transaction(s) as conn:
        conn.execute("UPDATE openfaas_metering.tenants SET locale = 'de_DE'"
                     " WHERE namespace = 'acme'")
    send(s, [event("acme", "2026-09-10T10:00:00Z", 10_000 * NS)])   # 1.10 of usage
    close(s, OCT_2)
    with db.transaction(s) as conn:
        (invoice_id,) = conn.execute("SELECT invoice_id::text FROM openfaas_metering.invoices"
                                     " WHERE namespace = 'acme'").fetchone()
    view = documents.rerender(s, invoice_id).view
    # usage, invocations (at 0), the 250.00 base fee, the top-up to the 300.00 commitment
    assert [line["description"] for line in view["lines"]] == [
        "Funktionsrechenzeit", "Funktionsaufrufe", "Grundgebühr, Tarif committed",
        "Mindestumsatz 300,00\xa0$: Aufstockung"]
