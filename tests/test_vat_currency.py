"""VAT in the member state's currency when the invoice is in another (art. 230): the
operator's monthly rate with its source, frozen at finalization, on every part of the
document and in the e-invoice; a month without its rate waits in draft. Real PostgreSQL,
the real close and the real rendering."""
from __future__ import annotations

import re
from decimal import Decimal

import psycopg
import pytest

from chargeback.core import db
from chargeback.billing import vat
from chargeback.documents import rendered as documents

from .billing_helpers import NS, close, event, on_plan, send, settings_for
from .corrections_helpers import BOOK, OCT_2
from .documents_helpers import NS as XML_NS
from .einvoice_rules import SELLER, assert_en16931, give_buyer_address
from lxml import etree

SOURCE = "NBP table 190/A/NBP/2026"


def _document(s, namespace="acme"):
    with db.transaction(s) as conn:
        return conn.execute("SELECT invoice_id::text, status, draft_reasons, number"
                            " FROM openfaas_metering.invoices WHERE namespace = %s",
                            (namespace,)).fetchone()


def test_a_euro_invoice_shows_its_vat_in_zloty_at_the_operators_rate(
        database_url, tmp_path, monkeypatch):
    s = settings_for(database_url, tmp_path, book=BOOK, ISSUER_VAT_CURRENCY="PLN", **SELLER)
    on_plan(s, "acme", "euro")                       # EUR, 19 % tax
    with db.transaction(s) as conn:
        give_buyer_address(conn, "acme")
    send(s, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS)])   # 1000 x 0.001 = 1.00 EUR
    close(s, OCT_2)
    invoice_id, status, reasons, number = _document(s)
    assert status == "draft" and number is None
    assert "no VAT exchange rate EUR to PLN for 2026-09" in " ".join(reasons)

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    assert vat.main(["2026-09", "eur", "PLN", "4.2651", SOURCE]) == 0
    close(s, OCT_2)
    invoice_id, status, reasons, number = _document(s)
    assert status == "finalized" and number == "INV-2026-000001"

    rendered = documents.rerender(s, invoice_id)
    # tax 0.19 EUR x 4.2651 = 0.810369 PLN, rounded half-even to the grosz: 0.81
    sentence = f"VAT in PLN: PLN0.81 (exchange rate 1 EUR = 4.2651 PLN, {SOURCE})"
    assert sentence in re.sub(r"[ \n]+", " ", rendered.text)  # wrapped at 72 columns
    assert sentence in rendered.html
    assert sentence in _pdf_text(rendered.pdf)
    xml = next(a.data for a in rendered.attachments if a.filename.endswith(".xml"))
    assert_en16931(xml)
    tree = etree.fromstring(xml)
    assert tree.xpath("//ram:TaxCurrencyCode/text()", namespaces=XML_NS) == ["PLN"]
    assert sorted((e.get("currencyID"), e.text) for e in tree.xpath(
        "//ram:TaxTotalAmount", namespaces=XML_NS)) == [("EUR", "0.19"), ("PLN", "0.81")]

    # a later rate changes no finalized document, and nobody can change it on the document
    assert vat.main(["2026-09", "EUR", "PLN", "4.5", "a typo fixed"]) == 0
    assert documents.rerender(s, invoice_id) == rendered
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="vat_exchange_rate"):
        with db.transaction(s) as conn:
            conn.execute("UPDATE openfaas_metering.invoices SET vat_exchange_rate = 5"
                         " WHERE invoice_id = %s", (invoice_id,))


def test_an_invoice_in_the_vat_currency_or_without_tax_needs_no_rate(database_url, tmp_path):
    s = settings_for(database_url, tmp_path, book=BOOK, ISSUER_VAT_CURRENCY="EUR")
    on_plan(s, "acme", "euro")                       # already EUR
    send(s, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS),
             event("bcme", "2026-09-10T10:00:00Z", 1000 * NS)])  # bcme: USD at 0 % tax
    close(s, OCT_2)
    for namespace in ("acme", "bcme"):
        invoice_id, status, _, _ = _document(s, namespace)
        assert status == "finalized", namespace
        assert "exchange rate" not in documents.rerender(s, invoice_id).text


@pytest.mark.parametrize("args, field", [
    (["2026-13", "EUR", "PLN", "4.2", SOURCE], "period"),
    (["2026-09", "EURO", "PLN", "4.2", SOURCE], "from"),
    (["2026-09", "EUR", "EUR", "4.2", SOURCE], "to"),
    (["2026-09", "EUR", "PLN", "-1", SOURCE], "rate"),
    (["2026-09", "EUR", "PLN", "abc", SOURCE], "rate"),
    (["2026-09", "EUR", "PLN", "4.2", "  "], "source"),
])
def test_a_bad_rate_is_refused_naming_the_field_and_nothing_is_stored(
        database_url, tmp_path, monkeypatch, capsys, args, field):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    assert vat.main(args) == 2
    assert capsys.readouterr().err.startswith(f"vat-rate: {field}:")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM openfaas_metering.vat_exchange_rates"
                            ).fetchone()[0] == 0


def _pdf_text(pdf: bytes) -> str:
    import pypdfium2 as pdfium
    return " ".join(" ".join(page.get_textpage().get_text_bounded().split())
                    for page in pdfium.PdfDocument(pdf))


def test_the_vat_currency_setting_is_a_currency_code():
    from chargeback.core.settings import ConfigError, load
    assert load({"ISSUER_VAT_CURRENCY": "pln"}).issuer_vat_currency == "PLN"
    assert load({}).issuer_vat_currency is None
    with pytest.raises(ConfigError, match="ISSUER_VAT_CURRENCY"):
        load({"ISSUER_VAT_CURRENCY": "zloty"}).issuer_vat_currency
    assert Decimal  # (money is Decimal throughout)
