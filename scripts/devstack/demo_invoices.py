"""Demo section: close September 2026 into invoices through the gateway, print them, then
send a few late September events and close October: September is re-priced as a whole
and the difference is a supplementary invoice referencing September's invoice."""
from __future__ import annotations

import psycopg
import requests

from .usage_sim import WebhookSender

CLOSE = "/function/aggregate-month.openfaas-system"
LATE_TENANT = "initech-ci"
# three hour-long September runs of a 2 GiB function that the event-worker delivers only
# after September was closed
LATE_EVENTS = [{"event": "function_usage", "namespace": LATE_TENANT,
                "function_name": "unit-tests",
                "started": f"2026-09-30T23:59:{second:02d}.123456789Z",
                "duration": 3_600_000_000_000, "memory_bytes": 2 * 2**30}
               for second in (57, 58, 59)]


class DemoError(RuntimeError):
    pass


def close(gateway_url: str, period: str, admin_token: str) -> dict:
    r = requests.post(f"{gateway_url}{CLOSE}", json={"period": period}, timeout=120,
                      headers={"Authorization": f"Bearer {admin_token}"})  # the operator
    if r.status_code != 200:
        raise DemoError(f"aggregate-month {period}: {r.status_code} {r.text.strip()[:300]}")
    return r.json()


def _money(amount, currency: str) -> str:
    return f"{amount:>14,} {currency}"


def _quantity(value) -> str:
    text = f"{value:,.6f}".rstrip("0").rstrip(".")
    return text if len(text) <= 18 else f"{value:.6e}"


KINDS = {"invoice": "", "supplementary": "supplementary invoice ",
         "credit_note": "credit note "}


def print_invoices(database_url: str, period: str, only: set[str] | None = None,
                   corrections_only: bool = False) -> None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """SELECT i.invoice_id, i.number, i.namespace, i.plan, i.currency, i.subtotal,
                      i.tax_rate, i.tax, i.total, i.status, i.draft_reasons, i.document_kind,
                      c.number
                 FROM openfaas_metering.invoices i
                 LEFT JOIN openfaas_metering.invoices c
                        ON c.invoice_id = i.corrects_invoice_id
                WHERE i.period = %s ORDER BY i.namespace, i.issued_at""",
            (period,)).fetchall()
        for (invoice_id, number, ns, plan, currency, subtotal, tax_rate, tax, total, status,
             reasons, kind, corrects) in rows:
            if (only and ns not in only) or (corrections_only and kind == "invoice"):
                continue
            print(f"\n{KINDS[kind]}{number or 'DRAFT'}  {ns}  {period}  plan {plan}  ({status})"
                  + (f"  corrects {corrects}" if corrects else ""))
            if reasons:
                print(f"  draft: {'; '.join(reasons)}")
                continue
            for desc, quantity, unit, discount, amount in conn.execute(
                    """SELECT description, quantity, unit, discount, amount
                         FROM openfaas_metering.invoice_lines WHERE invoice_id = %s
                        ORDER BY line_no""", (invoice_id,)):
                off = f"  (-{discount} spot)" if discount else ""
                print(f"  {desc[:58]:<58} {_quantity(quantity):>18} {unit:<11}"
                      f"{_money(amount, currency)}{off}")
            print(f"  {'subtotal':<89}{_money(subtotal, currency)}")
            print(f"  {f'tax {(tax_rate * 100).normalize():f} %':<89}{_money(tax, currency)}")
            print(f"  {'total':<89}{_money(total, currency)}")


HELD_ADDRESS = "Vision Lab BV\nStationsplein 45\n3013 AK Rotterdam\nNederland"
HELD_VAT_ID = "NL004495445B01"


def _give_address(database_url: str, tenants: list[str]) -> None:
    """The operator reads why an invoice was held and gives the tenant its address (on a
    cluster: the namespace annotations; here the override, as an operator would in SQL)."""
    with psycopg.connect(database_url) as conn:
        conn.execute("""UPDATE openfaas_metering.tenants
                           SET address_override = %s, tax_id_override = %s
                         WHERE namespace = ANY(%s)""",
                     (HELD_ADDRESS.split("\n", 1)[1], HELD_VAT_ID, tenants))
    print(f"\nthe operator gives {', '.join(tenants)} its postal address and VAT ID "
          "(tenants.address_override, tax_id_override) and closes 2026-09 again")


def run(gateway_url: str, database_url: str, webhook_secret: str, admin_token: str) -> None:
    september = close(gateway_url, "2026-09", admin_token)["periods"][0]
    print(f"closed 2026-09: {len(september['invoices'])} invoices finalized, "
          f"{len(september['drafts'])} drafts")
    print_invoices(database_url, "2026-09")
    if september["drafts"]:  # held: what EN 16931 needs is missing (the reasons say what)
        _give_address(database_url, [d["tenant"] for d in september["drafts"]])
        again = close(gateway_url, "2026-09", admin_token)["periods"][0]
        print(f"closed 2026-09 again: {len(again['invoices'])} invoice(s) finalized, "
              f"{len(again['drafts'])} drafts")
        print_invoices(database_url, "2026-09", only={d["tenant"] for d in september["drafts"]})
    sender = WebhookSender(f"{gateway_url}/function/receive-usage.openfaas-system",
                           webhook_secret)
    answer = sender.post(LATE_EVENTS)
    # a second demo against the same runtime (scripts/up) finds them stored already
    if answer.status_code != 200 or (answer.json()["accepted"] + answer.json()["duplicates"]
                                     != len(LATE_EVENTS)):
        raise DemoError(f"late events: {answer.status_code} {answer.text[:200]}")
    print(f"\n{len(LATE_EVENTS)} late September events for {LATE_TENANT} arrive after the close")
    periods = {p["period"]: p for p in close(gateway_url, "2026-10", admin_token)["periods"]}
    corrections = periods.get("2026-09", {"invoices": []})["invoices"]
    print(f"closed 2026-10: {len(periods['2026-10']['invoices'])} invoice(s) finalized; "
          f"2026-09 re-priced: {len(corrections)} correction(s)")
    print_invoices(database_url, "2026-09", corrections_only=True)
    print_invoices(database_url, "2026-10")
