"""The legal fields of an invoice, frozen on it when it is finalized.

An EU VAT invoice names the customer's postal address and VAT ID, the
supplier's name, address and VAT ID, says when payment is due and how to
pay, and why a 0% invoice carries no tax (Directive 2006/112/EC art. 226).
`freeze` stores them on each invoice inside the finalizing transaction
(before the database seals it, sql/050), so re-rendering later never reads
the environment or the tenant again. `refuse_examples` keeps a function from
starting with the shipped example supplier or sender.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping

import psycopg
from psycopg.types.json import Jsonb

from chargeback.billing import vat
from chargeback.billing.pricebook import PriceBook
from chargeback.core.settings import Settings

# The supplier and sender stack.yml ships, and the code's defaults.
EXAMPLE_ISSUERS = ("Example Functions Ltd", "chargeback")
EXAMPLE_SENDERS = ("Example Functions Billing <billing@example.com>",
                   "Billing <billing@chargeback.invalid>")

_FREEZE = """
UPDATE openfaas_metering.invoices AS i
   SET bill_to_address = coalesce(t.address_override, t.address),
       bill_to_tax_id = coalesce(t.tax_id_override, t.tax_id),
       issuer_name = %(name)s, issuer_address = %(address)s, issuer_tax_id = %(tax_id)s,
       issuer_payment_details = %(payment)s,
       payment_terms_days = coalesce((%(terms)s::jsonb ->> i.plan)::integer, 14),
       due_date = (i.issued_at AT TIME ZONE i.billing_timezone)::date
                  + coalesce((%(terms)s::jsonb ->> i.plan)::integer, 14),
       tax_note = CASE WHEN i.tax_rate = 0
                       THEN coalesce(t.tax_note_override, %(notes)s::jsonb ->> i.plan) END
  FROM openfaas_metering.tenants AS t
 WHERE t.namespace = i.namespace AND i.invoice_id = ANY(%(ids)s)
   AND i.status <> 'draft' AND i.issuer_name IS NULL"""


def freeze(conn: psycopg.Connection, settings: Settings, book: PriceBook,
           invoice_ids: list[uuid.UUID]) -> None:
    """Store the legal fields on the invoices `invoice_ids` just finalized in this
    transaction (the customer's from the tenant row, the supplier's from ISSUER_*,
    terms and tax note from their plan in `book`)."""
    if not invoice_ids:
        return
    conn.execute(_FREEZE, {
        "ids": invoice_ids, "name": settings.issuer_name,
        "address": "\n".join(settings.issuer_address) or None,
        "tax_id": settings.issuer_tax_id,
        "payment": "\n".join(settings.issuer_payment_details) or None,
        "terms": Jsonb({name: plan.payment_terms_days for name, plan in book.plans.items()}),
        "notes": Jsonb({name: plan.tax_note for name, plan in book.plans.items()
                        if plan.tax_note})})
    vat.freeze(conn, settings, invoice_ids)  # VAT in ISSUER_VAT_CURRENCY, when set


def refuse_examples(function: str, environ: Mapping[str, str], *, issuer: bool,
                    sender: bool) -> None:
    """SystemExit with one line when the supplier (for the function that freezes it) or
    the sender (for the one that mails) is still the shipped example or the default, and
    ALLOW_EXAMPLE_ISSUER is not set. Reads only those three variables, so any other
    setting's mistake is still answered per request."""
    if (environ.get("ALLOW_EXAMPLE_ISSUER") or "").strip().lower() in ("1", "true", "yes", "on"):
        return
    name = environ.get("ISSUER_NAME") or Settings.issuer_name
    if issuer and name in EXAMPLE_ISSUERS:
        raise SystemExit(f"{function}: ISSUER_NAME is the shipped example {name!r}: set your "
                         "company's name, address and tax ID in stack.yml "
                         "(ALLOW_EXAMPLE_ISSUER=true only for a demo)")
    mail_from = environ.get("MAIL_FROM") or Settings.mail_from
    if sender and mail_from in EXAMPLE_SENDERS:
        raise SystemExit(f"{function}: MAIL_FROM is the shipped example {mail_from!r}: set "
                         "your billing sender in stack.yml (ALLOW_EXAMPLE_ISSUER=true only "
                         "for a demo)")


def lines(text: str | None) -> tuple[str, ...]:
    """Stored multi-line text (an address) as its non-empty lines."""
    return tuple(line.strip() for line in (text or "").splitlines() if line.strip())
