"""The legal fields an accountant needs are frozen on the invoice at finalization:
the customer's address and tax ID, the supplier, the due date, the tax note."""
from __future__ import annotations

import dataclasses
from datetime import date

import psycopg
import pytest
import requests

from chargeback.capacity.holdings import Rules, tenants_from_namespaces
from chargeback.core.settings import load
from chargeback.documents import rendered as documents

from .billing_helpers import BOOK, NS, event, send, settings_for
from .billing_helpers import close

# the standard plan (tax 0) gets 30-day terms and a reverse-charge note; pro (20 %) keeps
# the default 14 days and its note is never printed (its rate is not 0)
LEGAL_BOOK = BOOK.replace(
    '''tax_rate: "0",
             tax_category: O, tax_note: "Not subject to VAT"}
  pro:''', '''tax_rate: "0", payment_terms_days: 30, tax_category: AE,
             tax_note: "Reverse charge: VAT to be accounted for by the recipient"}
  pro:''').replace(
    '''spot_discount_percent: 60, tax_rate: "0.20"}''',
    '''spot_discount_percent: 60, tax_rate: "0.20", tax_note: "never shown"}''')
SUPPLIER = {"ISSUER_NAME": "Nordwind Cloud GmbH", "ISSUER_ADDRESS": "Kaiserweg 1\\n10115 Berlin",
            "ISSUER_TAX_ID": "DE811111111",
            "ISSUER_PAYMENT_DETAILS": "IBAN DE02 1203 0000 0000 2020 51\\nBIC BYLADEM1001"}


@pytest.fixture
def finalized(database_url, tmp_path):
    s = settings_for(database_url, tmp_path, LEGAL_BOOK, **SUPPLIER)
    send(s, [event(ns, "2026-09-10T10:00:00Z", 1000 * NS) for ns in ("eu-co", "pro-co")])
    with psycopg.connect(database_url) as conn:
        conn.execute("""INSERT INTO openfaas_metering.tenants
                            (namespace, email, address, tax_id, address_override, plan_override)
                        VALUES ('eu-co', 'ap@eu.example', 'Old Street 1', 'FR00000000000',
                                'Rue de Rivoli 10' || E'\\n' || '75001 Paris', NULL),
                               ('pro-co', 'ap@pro.example', NULL, NULL, NULL, 'pro')""")
    out = close(s, period="2026-09")["periods"][0]["invoices"]
    return s, {i["tenant"]: i["invoice_id"] for i in out}


def _row(database_url, invoice_id):
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            """SELECT bill_to_address, bill_to_tax_id, issuer_name, issuer_address,
                      issuer_tax_id, issuer_payment_details, payment_terms_days, due_date,
                      tax_note, issued_at::date
                 FROM openfaas_metering.invoices WHERE invoice_id = %s""",
            (invoice_id,)).fetchone()


def test_finalization_freezes_customer_supplier_terms_and_tax_note(finalized, database_url):
    _, ids = finalized
    (address, tax_id, issuer, issuer_address, issuer_tax_id, payment, terms, due, note,
     issued) = _row(database_url, ids["eu-co"])
    # the override wins over the annotation's address; the annotation's tax ID stays
    assert (address, tax_id) == ("Rue de Rivoli 10\n75001 Paris", "FR00000000000")
    assert (issuer, issuer_address, issuer_tax_id) == (
        "Nordwind Cloud GmbH", "Kaiserweg 1\n10115 Berlin", "DE811111111")
    assert payment == "IBAN DE02 1203 0000 0000 2020 51\nBIC BYLADEM1001"
    # 30 days after the issue date in the billing time zone (UTC here)
    assert terms == 30 and due == date.fromordinal(issued.toordinal() + 30)
    assert note == "Reverse charge: VAT to be accounted for by the recipient"
    pro = _row(database_url, ids["pro-co"])
    assert pro[6] == 14 and pro[8] is None  # default terms; 20 % tax: no note


def test_every_part_shows_the_frozen_fields_and_a_rerender_ignores_later_changes(
        finalized, database_url):
    s, ids = finalized
    first = documents.rerender(s, ids["eu-co"])
    with psycopg.connect(database_url) as conn:  # the tenant moves, the supplier renames
        conn.execute("UPDATE openfaas_metering.tenants SET address_override = 'Elsewhere 9',"
                     " tax_id = 'FR99' WHERE namespace = 'eu-co'")
    renamed = dataclasses.replace(
        s, issuer_name="Renamed AG", issuer_address=("Other 2",), issuer_tax_id="DE000",
        issuer_payment_details=("IBAN XX",))
    again = documents.rerender(renamed, ids["eu-co"])
    assert (again.pdf, again.html, again.text) == (first.pdf, first.html, first.text)
    due = first.view["due"]
    for part in (first.text, first.html):
        for shown in ("Nordwind Cloud GmbH", "Kaiserweg 1", "USt-IdNr.: DE811111111",
                      "Rue de Rivoli 10", "75001 Paris", "VAT ID: FR00000000000",
                      f"Payment due {due} (30 days)", "IBAN DE02 1203 0000 0000 2020 51",
                      "Reverse charge: VAT to be accounted for by the recipient"):
            assert shown in part, shown
    assert "Renamed" not in first.text + again.text and "Elsewhere" not in again.text


def test_the_frozen_fields_cannot_change_once_sealed(finalized, database_url):
    _, ids = finalized
    for assignment in ("bill_to_address = 'x'", "issuer_name = 'x'", "due_date = due_date + 1",
                       "tax_note = NULL", "issuer_payment_details = 'IBAN of a fraudster'"):
        with psycopg.connect(database_url) as conn, pytest.raises(
                psycopg.errors.IntegrityConstraintViolation):
            conn.execute(f"UPDATE openfaas_metering.invoices SET {assignment}"
                         " WHERE invoice_id = %s", (ids["eu-co"],))


def test_address_and_tax_id_come_from_the_namespace_annotations():
    warnings: list[str] = []
    tenants = tenants_from_namespaces([{"metadata": {
        "name": "eu-co", "annotations": {
            "openfaas": "1", "chargeback/address": "Rue de Rivoli 10\\n75001 Paris",
            "chargeback/tax-id": " FR12345678901 "}}}], Rules(), warnings)
    assert (tenants[0].address, tenants[0].tax_id) == ("Rue de Rivoli 10\n75001 Paris",
                                                      "FR12345678901")
    assert warnings == []


@pytest.mark.parametrize("function, env, line", [
    ("aggregate-month", {}, "misconfigured: ISSUER_NAME is the shipped example"),
    ("email-invoice", {}, "misconfigured: MAIL_FROM is the shipped example"),
    ("email-invoice", {"MAIL_FROM": ""}, "misconfigured: MAIL_FROM is the shipped example"),
    ("evaluate-budgets", {}, "misconfigured: MAIL_FROM is the shipped example"),
])
def test_a_function_refuses_to_start_with_the_shipped_example_supplier_or_sender(
        serve_function, tmp_path, database_url, function, env, line):
    fn = serve_function(function, env={"ALLOW_EXAMPLE_ISSUER": "", "DATABASE_URL": database_url,
                                       "SMTP_URL": "smtp://127.0.0.1:9", **env}, healthy=False)
    health = requests.get(f"{fn.url}/_/health", timeout=10)
    assert health.status_code == 503 and health.json()["error"].startswith(line)
    call = requests.post(fn.url, data=b"", timeout=10)
    assert call.status_code == 503 and call.json() == health.json()
    log = (tmp_path / f"{function}.log").read_text()
    assert log.count(line) == 2 and "Traceback" not in log  # at start, and the refused call


def test_with_real_values_the_functions_start(serve_function, database_url):
    serve_function("aggregate-month", env={"ALLOW_EXAMPLE_ISSUER": "", **SUPPLIER,
                                           "DATABASE_URL": database_url})
    serve_function("email-invoice", env={"ALLOW_EXAMPLE_ISSUER": "",
                                         "MAIL_FROM": "Nordwind Billing <bill@nordwind.example>",
                                         "DATABASE_URL": database_url,
                                         "SMTP_URL": "smtp://127.0.0.1:9"})
    assert load({**SUPPLIER}).issuer_payment_details == (
        "IBAN DE02 1203 0000 0000 2020 51", "BIC BYLADEM1001")
