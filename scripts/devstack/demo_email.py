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
# billing contacts in the database (tenants.*_override). hooli-api is left without
# an address, so one invoice shows what "undeliverable" looks like.
CONTACTS = [
    ("acme-shop", "ACME Shop GmbH", "rechnung@acme-shop.example", "de_DE"),
    ("globex-data", "Globex Données SAS", "factures@globex.example", "fr_FR"),
    ("initech-ci", "Initech, Inc.", "ap@initech.example", "en_US"),
    ("umbrella-ml", "Umbrella ML Łódź sp. z o.o. <R&D>", "faktury@umbrella.example", "en"),
]

_CONTACT = """
INSERT INTO openfaas_metering.tenants
       (namespace, display_name_override, email_override, locale_override)
VALUES (%s, %s, %s, %s)
ON CONFLICT (namespace) DO UPDATE
   SET display_name_override = excluded.display_name_override,
       email_override = excluded.email_override, locale_override = excluded.locale_override
"""


class DemoError(RuntimeError):
    pass


def set_contacts(database_url: str) -> None:
    """Before the month is closed: billing contacts for the usage-only tenants."""
    with psycopg.connect(database_url) as conn:
        for namespace, name, address, locale in CONTACTS:
            conn.execute(_CONTACT, (namespace, name, address, locale))
            print(f"{namespace:<12} {name} <{address}>, locale {locale}")
    print("hooli-api    (no address: its invoice will be undeliverable)")


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
            if part.get_content_type() == "application/pdf":
                pdf = mail_dir / part.get_filename()
                pdf.write_bytes(part.get_content())
                print(f"  {pdf}")
        if shown is None or adjusted:
            shown = (number, msg)
    if shown is not None:
        number, msg = shown
        print(f"\n--- the plain-text part of {number}, as the customer reads it ---")
        print(f"Subject: {str(msg['Subject']).strip()}\n")
        print(msg.get_body(("plain",)).get_content().rstrip())
