"""A document that would break a fatal EN 16931 rule or art. 226 of the VAT Directive is
not finalized: it stays a draft whose reasons say what is missing and how to give it,
the close's answer lists it, and an invoice.held webhook tells the operator once."""
from __future__ import annotations

from datetime import datetime, timezone

import psycopg
import pytest

from chargeback.billing import legal, postal
from chargeback.billing.postal import Address
from chargeback.capacity import store as capacity_store
from chargeback.capacity.holdings import Reading, Rules, Tenant, tenants_from_namespaces
from chargeback.core import db

from .billing_helpers import BOOK, NS, close, event, send, settings_for
from .einvoice_rules import SELLER

# standard (0 %) is a reverse charge here; pro charges 20 %
RC_BOOK = BOOK.replace('tax_category: O, tax_note: "Not subject to VAT"}',
                       'tax_category: AE, tax_note: "Reverse charge, art. 196"}', 1)


@pytest.mark.parametrize("text, address", [
    ("Hauptstraße 5\n80331 München\nDeutschland", Address(("Hauptstraße 5",), "80331",
                                                          "München", "DE")),
    ("ul. Marszałkowska 1\n00-950 Warszawa\nPolska", Address(("ul. Marszałkowska 1",),
                                                            "00-950", "Warszawa", "PL")),
    ("10 Downing Street\nLondon SW1A 2AA\nUnited Kingdom", Address(("10 Downing Street",),
                                                                  "SW1A 2AA", "London", "GB")),
    ("1 Main St\nSpringfield, IL 62701\nUS", Address(("1 Main St",), "IL 62701",
                                                     "Springfield", "US")),
    ("Οδός Ερμού 10\n105 63 Αθήνα\nΕλλάδα", Address(("Οδός Ερμού 10",), "105 63", "Αθήνα",
                                                     "GR")),
    ("Herengracht 100\n1015 BS Amsterdam\nNederland", Address(("Herengracht 100",),
                                                              "1015 BS", "Amsterdam", "NL")),
    ("Hauptstraße 5\n80331 München", None),     # no country: it does not parse
    ("Germany", None),
])
def test_a_free_text_address_parses_when_its_last_line_is_a_country(text, address):
    assert postal.parse(text) == address


def test_greek_vat_ids_are_el_but_the_country_is_gr():
    assert postal.vat_country("EL123456789") == "GR"
    assert postal.vat_country("T1234567890123") is None   # a Japanese registration number


def test_structured_annotations_give_the_address():
    warnings: list[str] = []
    [tenant] = tenants_from_namespaces([{"metadata": {"name": "acme", "annotations": {
        "openfaas": "1", "chargeback/address-street": "Rue de Rivoli 10\\nBâtiment B",
        "chargeback/address-postcode": "75001", "chargeback/address-city": "Paris",
        "chargeback/address-country": "FR"}}}], Rules(), warnings)
    assert postal.from_parts(tenant.postal_address) == Address(
        ("Rue de Rivoli 10", "Bâtiment B"), "75001", "Paris", "FR")
    assert warnings == []


def _outbox(conn, kind):
    return [data for (data,) in conn.execute(
        "SELECT data FROM openfaas_metering.webhook_events WHERE type = %s ORDER BY created_at",
        (kind,))]


def test_an_invoice_without_the_customers_address_or_vat_id_stays_a_draft_until_given(
        database_url, tmp_path):
    s = settings_for(database_url, tmp_path, RC_BOOK, LEGAL_CHECKS="en16931", **SELLER)
    send(s, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS)])
    first = close(s, period="2026-09")["periods"][0]
    assert first["invoices"] == [] and first["closed"] is False
    [draft] = first["drafts"]
    reasons = " | ".join(draft["reasons"])
    # what is missing, and where to give it: the annotations or the override
    assert "customer address: none given" in reasons
    assert "chargeback/address-country" in reasons and "tenants.address_override" in reasons
    assert "BR-10" in reasons
    assert "reverse charge (tax category AE) needs the customer's VAT ID" in reasons
    assert "chargeback/tax-id" in reasons and "BR-AE-02" in reasons
    close(s, period="2026-09")  # held again for the same reasons: no second webhook
    with db.transaction(s) as conn:
        [held] = _outbox(conn, "invoice.held")
        assert held["tenant"] == "acme" and held["reasons"] == draft["reasons"]
        # meter-capacity reads the annotations; the address arrives, the VAT ID not yet
        capacity_store.record_tick(conn, datetime(2026, 10, 2, tzinfo=timezone.utc), Reading(
            (Tenant("acme", postal_address={"street": "Rue de Rivoli 10", "postcode": "75001",
                                            "city": "Paris", "country": "France"}),),
            (), 0, 0, ()), 300)
    [draft] = close(s, period="2026-09")["periods"][0]["drafts"]
    assert draft["reasons"] == [r for r in draft["reasons"] if "VAT ID" in r] and draft["reasons"]
    with db.transaction(s) as conn:
        assert len(_outbox(conn, "invoice.held")) == 2   # held for another reason now
        conn.execute("UPDATE openfaas_metering.tenants SET tax_id_override = 'FR40303265045'"
                     " WHERE namespace = 'acme'")
    [invoice] = close(s, period="2026-09")["periods"][0]["invoices"]
    with psycopg.connect(database_url) as conn:
        frozen = conn.execute(
            "SELECT bill_to_postal, bill_to_tax_id, tax_category, issuer_postal"
            " FROM openfaas_metering.invoices WHERE invoice_id = %s",
            (invoice["invoice_id"],)).fetchone()
    assert frozen == ({"street": ["Rue de Rivoli 10"], "postcode": "75001", "city": "Paris",
                       "country": "FR"}, "FR40303265045", "AE",
                      {"street": ["Friedrichstraße 1"], "postcode": "10117", "city": "Berlin",
                       "country": "DE"})


def test_a_supplier_without_a_country_or_vat_id_holds_its_standard_rate_invoices():
    buyer = legal.Legal("x", Address((), "75001", "Paris", "FR"), None, "S", None)
    supplier = settings_for("postgresql://unused", __import__("pathlib").Path("/tmp"),
                            ISSUER_ADDRESS="Kaiserweg 1\\n10115 Berlin")
    reasons = legal.gaps(buyer, __import__("decimal").Decimal("0.19"), supplier, "cb/")
    assert [r.split(":")[0] for r in reasons] == ["supplier address", "supplier VAT ID"]


def test_a_tenant_taxed_at_zero_against_its_plan_needs_a_category(database_url, tmp_path):
    s = settings_for(database_url, tmp_path, LEGAL_CHECKS="en16931", **SELLER)
    send(s, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS)])
    with db.transaction(s) as conn:
        conn.execute("""INSERT INTO openfaas_metering.tenants
                            (namespace, plan_override, tax_rate_override, address_override)
                        VALUES ('acme', 'pro', 0, 'Via Roma 1' || E'\\n' || '00100 Roma'
                                || E'\\n' || 'Italia')
                        ON CONFLICT (namespace) DO UPDATE
                        SET plan_override = 'pro', tax_rate_override = 0,
                            address_override = excluded.address_override""")
    [draft] = close(s, period="2026-09")["periods"][0]["drafts"]
    assert draft["reasons"] == [
        "tax rate 0 without a tax category: give the plan tax_category and tax_note in the "
        "price book, or set tenants.tax_category_override (AE reverse charge, O outside "
        "the EU, E exempt) and tax_note_override"]
    with db.transaction(s) as conn:
        conn.execute("UPDATE openfaas_metering.tenants SET tax_category_override = 'E',"
                     " tax_note_override = 'Exempt, art. 135(1)(a)' WHERE namespace = 'acme'")
    [invoice] = close(s, period="2026-09")["periods"][0]["invoices"]
    assert invoice["tenant"] == "acme"
