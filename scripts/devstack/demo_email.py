"""Demo section: aggregate-month has handed every finalized invoice to email-invoice
through the gateway's async queue; wait (bounded) until each is sent or undeliverable,
then show where the mail went: the .eml files, each PDF (extracted beside them) and
the plain-text body of one invoice."""
from __future__ import annotations

import email
import time
from email.policy import default as default_policy
from pathlib import Path

import psycopg

WAIT_S = 60

_INVOICES = """
SELECT number, namespace, status, coalesce(message_id, ''), coalesce(undeliverable_reason, ''),
       document_kind <> 'invoice'
  FROM openfaas_metering.invoices AS i
 WHERE status <> 'draft'
 ORDER BY number
"""


# The simulated usage tenants have no namespace annotations: the operator gives their
# billing contacts in the database (tenants.*_override): name, e-mail, locale, the postal
# address and VAT ID an EU invoice needs (their plan, standard, is a reverse charge; Initech
# is outside the EU: not subject to EU VAT). hooli-api is left without an e-mail address,
# so one invoice shows what "undeliverable" looks like.
CONTACTS = [
    ("acme-shop", "ACME Shop GmbH", "rechnung@acme-shop.example", "de_DE",
     "Mariahilfer Straße 1\n1060 Wien\nÖsterreich", "ATU12345675", None),
    ("globex-data", "Globex Données SAS", "factures@globex.example", "fr_FR",
     "12 Rue de Rivoli\n75001 Paris\nFrance", "FR40303265045", None),
    ("initech-ci", "Initech, Inc.", "ap@initech.example", "en_US",
     "4120 Freidrich Lane\nAustin, TX 78744\nUS", None, "O"),
    ("umbrella-ml", "Umbrella ML Łódź sp. z o.o. <R&D>", "faktury@umbrella.example", "en",
     "ul. Piotrkowska 100\n90-001 Łódź\nPolska", "PL7251010808", None),
    ("hooli-api", None, None, None, "Herengracht 100\n1015 BS Amsterdam\nNederland",
     "NL123456789B01", None),
]
OUTSIDE_EU = ("Not subject to EU VAT: place of supply outside the EU, "
              "art. 44 Directive 2006/112/EC")

_CONTACT = """
INSERT INTO openfaas_metering.tenants
       (namespace, display_name_override, email_override, locale_override, address_override,
        tax_id_override, tax_category_override, tax_note_override)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (namespace) DO UPDATE
   SET display_name_override = excluded.display_name_override,
       email_override = excluded.email_override, locale_override = excluded.locale_override,
       address_override = excluded.address_override,
       tax_id_override = excluded.tax_id_override,
       tax_category_override = excluded.tax_category_override,
       tax_note_override = excluded.tax_note_override
"""


class DemoError(RuntimeError):
    pass


def set_contacts(database_url: str) -> None:
    """Before the month is closed: billing contacts for the usage-only tenants."""
    with psycopg.connect(database_url) as conn:
        for namespace, name, address, locale, postal, tax_id, category in CONTACTS:
            conn.execute(_CONTACT, (namespace, name, address, locale, postal.replace("\\n", "\n"),
                                    tax_id, category, OUTSIDE_EU if category else None))
            where = postal.split("\\n")[-2:]
            if address:
                print(f"{namespace:<12} {name} <{address}>, locale {locale}, "
                      f"{', '.join(where)}, VAT ID {tax_id or '(none: outside the EU)'}")
    print("hooli-api    (no e-mail address: its invoice will be undeliverable)")
    print("vision-lab   (no postal address annotated: its invoice will be held as a draft)")


def _wait(database_url: str) -> list[tuple]:
    deadline = time.monotonic() + WAIT_S
    while True:
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(_INVOICES).fetchall()
        pending = [row for row in rows if row[2] == "finalized"]
        if not pending:
            return rows
        if time.monotonic() > deadline:
            raise DemoError(f"{len(pending)} invoice(s) still not sent after {WAIT_S} s "
                            f"(e.g. {pending[0][0]}); see the email-invoice log")
        time.sleep(0.25)


def _mails(mail_dir: Path) -> dict[str, tuple[Path, email.message.EmailMessage]]:
    """Message-ID -> (.eml path, parsed message), the latest file for each id."""
    found = {}
    for path in sorted(mail_dir.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=default_policy)
        found[str(msg["Message-ID"]).strip()] = (path, msg)
    return found


def run(database_url: str, mail_dir: Path | None) -> None:
    rows = _wait(database_url)
    if not rows:
        print("no finalized invoices in the demo database: nothing to e-mail")
        return
    mails = _mails(mail_dir) if mail_dir is not None and mail_dir.exists() else {}
    sent = [row for row in rows if row[2] == "sent"]
    print(f"{len(sent)} of {len(rows)} invoices sent, "
          f"{len(rows) - len(sent)} undeliverable")
    shown = None
    for number, namespace, status, message_id, reason, adjusted in rows:
        print(f"\n{number}  {namespace}  {status}{f': {reason}' if reason else ''}")
        if message_id not in mails:
            if status == "sent":
                print(f"  {message_id} (SMTP_URL is set: the mail went to that server)")
            continue
        path, msg = mails[message_id]
        print(f"  {path}")
        for part in msg.iter_attachments():
            name = part.get_filename()
            if part.get_content_type() == "application/pdf" or name.endswith("-ubl.xml"):
                kept = mail_dir / name     # the PDF; a Peppol tenant's UBL e-invoice beside it
                kept.write_bytes(part.get_content())
                print(f"  {kept}")
        if shown is None or adjusted:
            shown = (number, msg)
    if shown is not None:
        number, msg = shown
        print(f"\n--- the plain-text part of {number}, as the customer reads it ---")
        print(f"Subject: {str(msg['Subject']).strip()}\n")
        print(msg.get_body(("plain",)).get_content().rstrip())
