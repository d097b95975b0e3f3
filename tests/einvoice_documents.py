"""The documents every e-invoice syntax is checked over: one of each kind the close and
the operator make (invoice, supplementary invoice, credit note, reissue) and each 0 %
rate's category, from one German supplier."""
from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal as D

from chargeback.billing.invoicing import Line
from chargeback.documents.model import Issuer

from .documents_helpers import INVOICE

SUPPLIER = Issuer("Nordwind Cloud GmbH", ("Kaiserweg 1", "10115 Berlin", "Germany"),
                  "DE811111111", payment_details=("IBAN DE02 1203 0000 0000 2020 51",
                                                  "BIC BYLADEM1001"),
                  postal={"street": ["Kaiserweg 1"], "postcode": "10115", "city": "Berlin",
                          "country": "DE"})
PARIS = {"street": ["12 Rue de Rivoli"], "postcode": "75001", "city": "Paris", "country": "FR"}
# 720 node-hours at 1.31 = 943.20, less 60 % spot = 565.92 off: 377.28;
# a graduated line: 500,000 GB-s, 400,000 free, 100,000 x 0.00049 = 49.00;
# base fee 1 month 25.00. Subtotal 451.28; at 19 %: 85.74, total 537.02
LINES = (
    Line("capacity", "Dedicated nodes g5.12xlarge (spot)", D("720"), "node-hours",
         D("377.28"), meter="node_hours", sku="g5.12xlarge", spot=True,
         unit_price=D("1.31"), discount_percent=D(60), discount=D("565.92"), line_no=1),
    INVOICE.lines[1],
    Line("base_fee", "Base fee, plan spot", D(1), "month", D("25.00"),
         unit_price=D("25.00"), line_no=3),
)
BASE = dataclasses.replace(
    INVOICE, lines=LINES, subtotal=D("451.28"), tax=D("85.74"), total=D("537.02"),
    bill_to_address=("12 Rue de Rivoli", "75001 Paris", "FR"), bill_to_postal=PARIS,
    bill_to_tax_id="FR40303265045", due_date=date(2026, 10, 15), tax_category="S")
ZERO = {"tax_rate": D(0), "tax": D("0.00"), "total": D("451.28")}
DOCUMENTS = {
    "invoice": BASE,
    "supplementary": dataclasses.replace(BASE, document_kind="supplementary",
                                         corrects="INV-2026-000041",
                                         corrects_issued=date(2026, 10, 1)),
    # a credit note is stored negative: the 381 states it positive
    "credit note": dataclasses.replace(
        BASE, document_kind="credit_note", number="CN-2026-000001",
        corrects="INV-2026-000041", corrects_issued=date(2026, 10, 1),
        lines=tuple(dataclasses.replace(line, quantity=-line.quantity, amount=-line.amount,
                                        discount=-line.discount) for line in LINES),
        subtotal=D("-451.28"), tax=D("-85.74"), total=D("-537.02")),
    "reissue": dataclasses.replace(BASE, replaces="INV-2026-000041",
                                   replaces_issued=date(2026, 10, 1)),
    "reverse charge": dataclasses.replace(BASE, **ZERO, tax_category="AE",
                                          tax_note="Reverse charge, art. 196"),
    "outside the EU": dataclasses.replace(
        BASE, **ZERO, tax_category="O", tax_note="Not subject to EU VAT, art. 44",
        bill_to_postal={"street": ["1-1 Marunouchi"], "postcode": "100-0005",
                        "city": "Tokyo", "country": "JP"},
        bill_to_tax_id="T1234567890123"),            # a Japanese registration number
    "exempt": dataclasses.replace(BASE, **ZERO, tax_category="E",
                                  tax_note="Exempt, art. 135(1)(d) Directive 2006/112/EC"),
    "Greek customer": dataclasses.replace(
        BASE, bill_to_postal={"street": ["Ermou 10"], "postcode": "105 63", "city": "Athens",
                              "country": "GR"}, bill_to_tax_id="EL094259216"),
}
