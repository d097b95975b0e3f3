"""The legal fields of an invoice, frozen on it when it is finalized.

An EU VAT invoice names the customer's postal address and VAT ID, the
supplier's name, address and VAT ID, says when payment is due and how to
pay, and why a 0% invoice carries no tax (Directive 2006/112/EC art. 226);
EN 16931 adds the VAT category and both parties' countries; the e-invoice format the
tenant chose (<prefix>einvoice) and what it needs are frozen too. `assess` finds them
for the documents a close is about to finalize and, with LEGAL_CHECKS=en16931
(the default), keeps a document that misses any in draft with reasons naming
the annotation or override that gives it, like a missing price. `freeze` stores them on each invoice inside the finalizing transaction
(before the database seals it, sql/050), so re-rendering later never reads
the environment or the tenant again. `refuse_example_issuer` keeps a function from
starting with the shipped example supplier (mail.sender: the sender).
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb

from chargeback.billing import postal, vat
from chargeback.billing.pricebook import Plan, PriceBook
from chargeback.core.settings import ConfigError, Settings

# The supplier stack.yml ships, and the code's default.
EXAMPLE_ISSUERS = ("Example Functions Ltd", "chargeback")
# The e-invoices a tenant may choose with <prefix>einvoice (documents.rendered makes them)
FORMATS = ("facturx", "ubl", "xrechnung")

_TENANTS = """
SELECT namespace, address_override, address, postal_address,
       coalesce(tax_id_override, tax_id) AS tax_id, tax_category_override, tax_note_override,
       coalesce(einvoice_override, einvoice) AS einvoice,
       coalesce(buyer_reference_override, buyer_reference) AS buyer_reference
  FROM openfaas_metering.tenants WHERE namespace = ANY(%s)"""

_FREEZE = """
UPDATE openfaas_metering.invoices AS i
   SET bill_to_address = v.address, bill_to_postal = v.postal, bill_to_tax_id = v.tax_id,
       tax_category = v.category, tax_note = v.note,
       einvoice_format = v.einvoice, buyer_reference = v.buyer_reference,
       issuer_contact = %(contact)s, issuer_name = %(name)s, issuer_address = %(address)s,
       issuer_tax_id = %(tax_id)s,
       issuer_postal = %(postal)s, issuer_payment_details = %(payment)s,
       payment_terms_days = coalesce((%(terms)s::jsonb ->> i.plan)::integer, 14),
       due_date = (i.issued_at AT TIME ZONE i.billing_timezone)::date
                  + coalesce((%(terms)s::jsonb ->> i.plan)::integer, 14)
  FROM jsonb_to_recordset(%(documents)s::jsonb)
       AS v(invoice_id uuid, address text, postal jsonb, tax_id text, category text,
            note text, einvoice text, buyer_reference text)
 WHERE i.invoice_id = v.invoice_id AND i.status <> 'draft' AND i.issuer_name IS NULL"""


@dataclass(frozen=True)
class Legal:
    """What one document states about its customer and its tax, as frozen on it."""

    address: str | None            # as given, lines separated by newlines
    postal: postal.Address | None  # parsed; None: none given, or it does not parse
    tax_id: str | None
    category: str                  # UNCL 5305; "" when a 0 % rate has none
    note: str | None
    einvoice: str = "facturx"      # the e-invoice format (FORMATS), or a value given wrong
    buyer_reference: str | None = None   # BT-10


def of_tenant(row, plan: Plan | None, tax_rate: Decimal | None) -> Legal:
    """The customer's address (the override's free text; else the structured annotations;
    else the annotation's free text) and tax terms (the tenant's overrides; else its
    plan's when the rate is the plan's) from a _TENANTS row."""
    if row.address_override:
        text, address = row.address_override, postal.parse(row.address_override)
    elif row.postal_address:
        address = postal.from_parts(row.postal_address)
        text = "\n".join(address.lines()) if address else None
    else:
        text, address = row.address, postal.parse(row.address)
    rate = tax_rate or Decimal(0)
    category = row.tax_category_override or (
        plan.tax_category if plan and plan.tax_rate == rate else "S" if rate else "")
    note = (row.tax_note_override or (plan.tax_note if plan else None)) if not rate else None
    return Legal(text, address, row.tax_id, category, note,
                 (row.einvoice or "facturx").strip().lower(), row.buyer_reference)


def supplier_address(settings: Settings) -> postal.Address | None:
    """ISSUER_ADDRESS parsed (street lines, postcode and city, country); None when it
    does not parse."""
    return postal.parse("\n".join(settings.issuer_address))


def gaps(legal: Legal, tax_rate: Decimal | None, issuer: Settings, prefix: str) -> list[str]:
    """Why a document with `legal` terms would break a fatal EN 16931 rule or art. 226 of
    Directive 2006/112/EC, each reason naming what to set; [] when nothing is missing."""
    reasons = []
    seller = supplier_address(issuer)
    if seller is None:
        reasons.append("supplier address: ISSUER_ADDRESS needs the street, then postcode and "
                       "city, then the country on its last line (EN 16931 BR-08, BR-09)")
    category, rate = legal.category, tax_rate or Decimal(0)
    if category in ("S", "AE", "E", "K", "G", "Z") and not issuer.issuer_tax_id:
        reasons.append(f"supplier VAT ID: ISSUER_TAX_ID is required on a category {category} "
                       f"invoice (EN 16931 BR-{category}-02; art. 226(3))")
    how = (f"annotate the namespace {prefix}address-street, {prefix}address-postcode, "
           f"{prefix}address-city and {prefix}address-country (or {prefix}address with "
           "the country on its last line), or set tenants.address_override")
    if legal.postal is None:
        given = f" {legal.address!r} does not parse (no country on its last line)" \
            if legal.address else ": none given"
        reasons.append(f"customer address{given}: {how} (EN 16931 BR-10, BR-11; art. 226(5))")
    elif not legal.postal.city:
        reasons.append(f"customer address: no city: {how} (art. 226(5))")
    if not category:
        reasons.append("tax rate 0 without a tax category: give the plan tax_category and "
                       "tax_note in the price book, or set tenants.tax_category_override "
                       "(AE reverse charge, O outside the EU, E exempt) and tax_note_override")
    elif (category == "S") != bool(rate):
        reasons.append(f"tax category {category} does not fit the tax rate {rate}: set "
                       "tenants.tax_category_override (S for a positive rate)")
    elif not rate and category != "Z" and not legal.note:
        reasons.append(f"tax rate 0 (category {category}) without its legal basis: set the "
                       "plan's tax_note or tenants.tax_note_override "
                       f"(EN 16931 BR-{category}-10)")
    if category in ("AE", "K") and not postal.vat_country(legal.tax_id):
        what = "reverse charge" if category == "AE" else "an intra-community supply"
        given = f" ({legal.tax_id!r} is not an EU VAT ID)" if legal.tax_id else ""
        reasons.append(f"{what} (tax category {category}) needs the customer's VAT ID"
                       f"{given}: annotate the namespace {prefix}tax-id or set "
                       f"tenants.tax_id_override (EN 16931 BR-{category}-02; art. 226(4))")
    return reasons


def format_gaps(legal: Legal, issuer: Settings, prefix: str) -> list[str]:
    """Why the tenant's e-invoice format cannot be made: a value that names none, a Peppol
    UBL without either party's electronic address, an XRechnung, or a Peppol UBL between
    two German parties (Peppol's German rules DE-R-*), without the buyer reference
    (BR-DE-15) or the supplier's contact (BR-DE-5, -6, -7); [] when nothing is missing.
    Checked whatever LEGAL_CHECKS says: the tenant asked for this format, and a document
    in another, or an invalid one, is of no use to it."""
    if legal.einvoice not in FORMATS:
        return [f"e-invoice format {legal.einvoice!r}: annotate the namespace "
                f"{prefix}einvoice with one of {', '.join(FORMATS)} (or remove it for "
                "facturx), or set tenants.einvoice_override"]
    reasons = []
    if legal.einvoice == "ubl":     # Peppol's electronic addresses, from the registrations
        if not postal.endpoint(legal.tax_id):
            reasons.append(f"Peppol without the customer's electronic address (BT-49), which "
                           f"comes from their EU VAT ID or Japanese registration number: "
                           f"annotate the namespace {prefix}tax-id or set "
                           "tenants.tax_id_override (PEPPOL-EN16931-R010)")
        if not postal.endpoint(issuer.issuer_tax_id):
            reasons.append("Peppol without the supplier's electronic address (BT-34), which "
                           "comes from ISSUER_TAX_ID: set your EU VAT ID there "
                           "(PEPPOL-EN16931-R020)")
    if legal.einvoice == "xrechnung":
        rules = ("XRechnung", "BR-DE-15", "BR-DE-5, BR-DE-6, BR-DE-7")
    elif legal.einvoice == "ubl" and _both_german(legal, issuer):
        rules = ("Peppol between two German parties", "DE-R-015",
                 "DE-R-002, DE-R-005, DE-R-006, DE-R-007")
    else:
        return reasons
    what, reference_rule, contact_rules = rules
    if not (legal.buyer_reference or "").strip():
        reasons.append(f"{what} without the buyer reference (BT-10): annotate the namespace "
                       f"{prefix}buyer-reference with the customer's Leitweg-ID (German public "
                       "buyers) or the reference they gave you, or set "
                       f"tenants.buyer_reference_override ({reference_rule})")
    missing = [name for name, value in (
        ("ISSUER_CONTACT_NAME", issuer.issuer_contact_name),
        ("ISSUER_CONTACT_PHONE", issuer.issuer_contact_phone),
        ("ISSUER_CONTACT_EMAIL", issuer.issuer_contact_email)) if not value]
    if missing:
        reasons.append(f"{what} without the supplier's contact: set {', '.join(missing)} "
                       f"on aggregate-month ({contact_rules})")
    return reasons


def _both_german(legal: Legal, issuer: Settings) -> bool:
    """Supplier and customer in Germany: where Peppol applies its German rules (DE-R-*)."""
    supplier = supplier_address(issuer)
    return bool(supplier and supplier.country == "DE" and legal.postal
                and legal.postal.country == "DE")


def contact(settings: Settings) -> dict | None:
    """The supplier's contact (BG-6) from ISSUER_CONTACT_*: {"name", "telephone", "email"}
    with those given; None when none is."""
    given = {key: value for key, value in (("name", settings.issuer_contact_name),
                                           ("telephone", settings.issuer_contact_phone),
                                           ("email", settings.issuer_contact_email)) if value}
    return given or None


def assess(conn: psycopg.Connection, settings: Settings, book: PriceBook,
           drafts: list) -> dict[str, Legal]:
    """The legal terms of each of `drafts` (billing.invoicing.Draft) by namespace; with
    LEGAL_CHECKS=en16931 a draft that misses any gets the reasons and stays a draft, as
    one whose e-invoice format cannot be made does whatever LEGAL_CHECKS says."""
    rows = {row.namespace: row for row in conn.cursor(row_factory=namedtuple_row).execute(
        _TENANTS, ([d.namespace for d in drafts],))}
    out = {}
    for draft in drafts:
        plan = book.plans.get(draft.plan) if draft.plan else None
        legal = out[draft.namespace] = of_tenant(rows[draft.namespace], plan, draft.tax_rate)
        prefix = settings.tenant_annotation_prefix
        found = gaps(legal, draft.tax_rate, settings, prefix) \
            if settings.legal_checks == "en16931" else []
        draft.reasons += [r for r in found + format_gaps(legal, settings, prefix)
                          if r not in draft.reasons]
    return out


def freeze(conn: psycopg.Connection, settings: Settings, book: PriceBook,
           documents: dict[uuid.UUID, Legal]) -> None:
    """Store the legal fields on the invoices just finalized in this transaction (the
    customer's from `documents`, as `assess` found them; the supplier's from ISSUER_*;
    terms from their plan in `book`)."""
    if not documents:
        return
    seller = supplier_address(settings)
    conn.execute(_FREEZE, {
        "documents": Jsonb([{"invoice_id": str(invoice_id), "address": legal.address,
                             "postal": legal.postal and legal.postal.as_json(),
                             "tax_id": legal.tax_id, "category": legal.category or None,
                             "note": legal.note, "einvoice": legal.einvoice,
                             "buyer_reference": legal.buyer_reference}
                            for invoice_id, legal in documents.items()]),
        "name": settings.issuer_name,
        "address": "\n".join(settings.issuer_address) or None,
        "postal": Jsonb(seller.as_json()) if seller else None,
        "tax_id": settings.issuer_tax_id,
        "payment": "\n".join(settings.issuer_payment_details) or None,
        "contact": Jsonb(given) if (given := contact(settings)) else None,
        "terms": Jsonb({name: plan.payment_terms_days for name, plan in book.plans.items()})})
    vat.freeze(conn, settings, list(documents))  # VAT in ISSUER_VAT_CURRENCY, when set


def refuse_example_issuer(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """ConfigError with one line while the supplier frozen on every invoice is still the
    shipped example or the default and ALLOW_EXAMPLE_ISSUER is not set: checked when the
    function that finalizes starts (chargeback.core.startup)."""
    if not settings.allow_example_issuer and settings.issuer_name in EXAMPLE_ISSUERS:
        raise ConfigError(f"ISSUER_NAME is the shipped example {settings.issuer_name!r}: set "
                          "your company's name, address and tax ID in stack.yml "
                          "(ALLOW_EXAMPLE_ISSUER=true only for a demo)")


def lines(text: str | None) -> tuple[str, ...]:
    """Stored multi-line text (an address) as its non-empty lines."""
    return tuple(line.strip() for line in (text or "").splitlines() if line.strip())
