"""The hash chain of finalized documents (sql/050_document_immutability.sql).

Each finalized document stores the SHA-256 of its content and of the
document before it in its series (same number prefix and year). The
database seals a document when its finalizing transaction commits and its
triggers refuse any later change; this check finds what was changed or
removed behind them (triggers disabled by a superuser, a restored backup
with a row missing).
"""
from __future__ import annotations

import psycopg

from chargeback.core import db
from chargeback.core.settings import Settings

_SERIES = """
SELECT number, number_seq, previous_sha256, document_sha256,
       openfaas_metering.document_sha256(invoice_id, previous_sha256)
  FROM openfaas_metering.invoices
 WHERE openfaas_metering.document_series(number) = openfaas_metering.document_series(%s)
   AND status <> 'draft'
 ORDER BY number_seq"""


def problems(conn: psycopg.Connection, number: str) -> tuple[str, int, list[str]]:
    """(series, documents in it, what is wrong with the chain of `number`'s series)."""
    rows = conn.execute(_SERIES, (number,)).fetchall()
    series = conn.execute("SELECT openfaas_metering.document_series(%s)", (number,)
                          ).fetchone()[0]
    found: list[str] = []
    before = None  # (number, seq, document_sha256) of the previous row
    for doc_number, seq, previous, stored, recomputed in rows:
        expected_seq = before[1] + 1 if before else 1
        if seq != expected_seq:
            missing = [f"{series}{n:06d}" for n in range(expected_seq, seq)]
            found.append(f"{', '.join(missing)}: missing (the series goes from "
                         f"{before[0] if before else 'its start'} to {doc_number})")
        if stored is None:
            found.append(f"{doc_number}: not sealed (no document_sha256)")
        elif stored != recomputed:
            found.append(f"{doc_number}: altered (its content no longer matches its "
                         "document_sha256)")
        if before is not None and seq == before[1] + 1 and previous != before[2]:
            found.append(f"{doc_number}: does not follow {before[0]} (previous_sha256 is "
                         "not that document's SHA-256)")
        before = (doc_number, seq, stored)
    return series, len(rows), found


def verify(settings: Settings, number: str) -> dict:
    """The chain check of `number`'s series, for aggregate-month's verify answer."""
    with db.transaction(settings) as conn:
        series, count, found = problems(conn, number)
    return {"series": series, "documents": count, "intact": not found, "problems": found}
