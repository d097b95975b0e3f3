"""Invoice lines as the database holds them (invoice_lines), read into and written from
the one line model, billing.invoicing.Line: the close, corrections, the audit and
every rendering of a document read them here."""
from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from chargeback.billing.invoicing import Line

COPY_LINES = """
COPY openfaas_metering.invoice_lines
    (invoice_id, line_no, kind, meter, sku, spot, description, quantity, unit, unit_price,
     tiers, tier_mode, allowance, discount_percent, discount, amount, price_from, price_to,
     adjustment_period, gross, billed_days, period_days) FROM STDIN"""

_STORED_LINES = """
SELECT line_no, kind, description, quantity, unit, amount, meter, sku, spot, unit_price,
       tiers, tier_mode, allowance, discount_percent, discount, price_from, price_to,
       adjustment_period, gross, billed_days, period_days
  FROM openfaas_metering.invoice_lines WHERE invoice_id = %s ORDER BY line_no"""


def line_of(row: dict[str, Any]) -> Line:
    """The Line of an invoice_lines row read with dict_row (other columns are ignored)."""
    tiers = row["tiers"]
    return Line(row["kind"], row["description"], row["quantity"], row["unit"], row["amount"],
                row["meter"], row["sku"], row["spot"], row["unit_price"],
                tuple(tiers) if tiers is not None else None, row["tier_mode"],
                row["allowance"], row["discount_percent"], row["discount"],
                row["price_from"], row["price_to"], row["adjustment_period"], row["gross"],
                row["billed_days"], row["period_days"], line_no=row["line_no"])


def stored_lines(conn: psycopg.Connection, invoice_id) -> list[Line]:
    """The lines stored for document `invoice_id`, in order."""
    with conn.cursor(row_factory=dict_row) as cur:
        return [line_of(row) for row in cur.execute(_STORED_LINES, (invoice_id,))]


def copy_row(invoice_id, line_no: int, line: Line) -> tuple:
    """The COPY_LINES row of `line` as line `line_no` of document `invoice_id`."""
    return (invoice_id, line_no, line.kind, line.meter, line.sku, line.spot, line.description,
            line.quantity, line.unit, line.unit_price,
            Jsonb(list(line.tiers)) if line.tiers is not None else None, line.tier_mode,
            line.allowance, line.discount_percent, line.discount, line.amount,
            line.price_from, line.price_to, line.adjustment_period, line.gross,
            line.billed_days, line.period_days)
