"""VAT in the member state's currency when the invoice is in another (Directive
2006/112/EC art. 230): ISSUER_VAT_CURRENCY names it (unset: off).

The operator supplies one exchange rate per month and currency pair, with its
source (`scripts/vat-rate 2026-09 EUR PLN 4.2651 "NBP table 187/A/NBP/2026"`;
it writes through DATABASE_URL, so only who holds the database credentials can).
A document in another currency with tax on it needs its month's rate: without
one, month-close keeps it in draft with a reason naming the missing rate, and
the next close after the rate is recorded finalizes it. At finalization the
rate, its source and the tax converted (rounded half-even to the VAT currency's
minor unit) are frozen on the document; documents show them, the e-invoice
carries them (BT-6, BT-111). A rate changed later never changes a finalized
document.
"""
from __future__ import annotations

import argparse
import re
import sys
import uuid
from decimal import Decimal, InvalidOperation

import psycopg

# the VAT converted is rounded like every amount of money: to the minor unit
from chargeback.billing.pricing import round_money
from chargeback.core.settings import Settings

_RATES = """
SELECT from_currency, rate, source FROM openfaas_metering.vat_exchange_rates
 WHERE period = %s AND to_currency = %s"""

_TO_CONVERT = """
SELECT i.invoice_id, i.currency, i.tax, r.rate, r.source
  FROM openfaas_metering.invoices AS i
  JOIN openfaas_metering.vat_exchange_rates AS r
    ON r.period = i.period AND r.from_currency = i.currency AND r.to_currency = %(vat)s
 WHERE i.invoice_id = ANY(%(ids)s) AND i.status <> 'draft' AND i.tax <> 0
   AND i.vat_currency IS NULL"""

_FREEZE = """
UPDATE openfaas_metering.invoices
   SET vat_currency = %s, vat_exchange_rate = %s, vat_exchange_source = %s,
       vat_tax_converted = %s
 WHERE invoice_id = %s"""

_RECORD = """
INSERT INTO openfaas_metering.vat_exchange_rates
    (period, from_currency, to_currency, rate, source)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (period, from_currency, to_currency)
DO UPDATE SET rate = excluded.rate, source = excluded.source, recorded_at = now()"""

_PERIOD = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
_CURRENCY = re.compile(r"[A-Z]{3}")


def needs_rate(settings: Settings, currency: str | None, tax: Decimal | None) -> bool:
    """Whether a document in `currency` with `tax` shows its VAT converted."""
    vat = settings.issuer_vat_currency
    return bool(vat and currency and currency != vat and tax)


def hold_without_rate(conn: psycopg.Connection, settings: Settings, period: str,
                      drafts: list) -> None:
    """Add a reason to each of `drafts` (billing.invoicing.Draft) that needs `period`'s
    rate to ISSUER_VAT_CURRENCY and has none: it stays in draft, like any draft, and is
    priced again by the next close."""
    vat = settings.issuer_vat_currency
    waiting = [d for d in drafts if not d.reasons and needs_rate(settings, d.currency, d.tax)]
    if not waiting:
        return
    have = {row[0] for row in conn.execute(_RATES, (period, vat))}
    for draft in waiting:
        if draft.currency not in have:
            draft.reasons.append(
                f"no VAT exchange rate {draft.currency} to {vat} for {period} "
                f"(ISSUER_VAT_CURRENCY): record one with scripts/vat-rate {period} "
                f"{draft.currency} {vat} RATE SOURCE")


def freeze(conn: psycopg.Connection, settings: Settings, invoice_ids: list[uuid.UUID]) -> None:
    """Store the rate, its source and the converted tax on the documents `invoice_ids`
    just finalized in this transaction (those that need it; see the module docstring)."""
    vat = settings.issuer_vat_currency
    if not vat or not invoice_ids:
        return
    rows = conn.execute(_TO_CONVERT, {"vat": vat, "ids": invoice_ids}).fetchall()
    for invoice_id, currency, tax, rate, source in rows:
        if currency != vat:
            conn.execute(_FREEZE, (vat, rate, source, round_money(tax * rate, vat), invoice_id))


def record(conn: psycopg.Connection, period: str, from_currency: str, to_currency: str,
           rate: str, source: str) -> Decimal:
    """Store (or replace) the rate for `period`; ValueError naming the field otherwise."""
    from_currency, to_currency = from_currency.upper(), to_currency.upper()
    if not _PERIOD.fullmatch(period):
        raise ValueError(f"period: expected YYYY-MM, got {period!r}")
    for name, code in (("from", from_currency), ("to", to_currency)):
        if not _CURRENCY.fullmatch(code):
            raise ValueError(f"{name}: expected a three-letter currency code, got {code!r}")
    if from_currency == to_currency:
        raise ValueError(f"to: the same currency as from ({from_currency})")
    try:
        value = Decimal(rate)
    except InvalidOperation:
        value = Decimal(0)
    if not value.is_finite() or value <= 0:
        raise ValueError(f"rate: expected a positive decimal (e.g. 4.2651), got {rate!r}")
    if not source.strip():
        raise ValueError("source: say where the rate comes from (e.g. \"ECB 2026-09-30\")")
    conn.execute(_RECORD, (period, from_currency, to_currency, value, source.strip()))
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/vat-rate", description="Record the month's exchange rate for VAT in "
        "ISSUER_VAT_CURRENCY (1 FROM = RATE TO), with its source; DATABASE_URL names the "
        "database.")
    parser.add_argument("period", help="YYYY-MM")
    parser.add_argument("from_currency", metavar="FROM", help="the invoices' currency (EUR)")
    parser.add_argument("to_currency", metavar="TO", help="ISSUER_VAT_CURRENCY (PLN)")
    parser.add_argument("rate", help="1 FROM in TO (4.2651)")
    parser.add_argument("source", help='where the rate comes from ("ECB 2026-09-30")')
    args = parser.parse_args(argv)
    from chargeback.core import db
    from chargeback.core.settings import load
    settings = load()
    try:
        with db.transaction(settings) as conn:
            rate = record(conn, args.period, args.from_currency, args.to_currency, args.rate,
                          args.source)
    except ValueError as exc:
        print(f"vat-rate: {exc}", file=sys.stderr)
        return 2
    print(f"{args.period}: 1 {args.from_currency.upper()} = {rate} "
          f"{args.to_currency.upper()} ({args.source.strip()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
