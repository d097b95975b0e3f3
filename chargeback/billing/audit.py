"""The operator's audit of a finalized document: verify it (hashes, lines rebuilt from
its inputs, its month re-derived from the raw rows) and export its usage CSV. Changes
nothing."""
from __future__ import annotations

import hashlib
from decimal import Decimal

import psycopg

from chargeback.billing import credits, invoicing, pricebook_store
from chargeback.billing import export as invoice_export
from chargeback.billing import store as billing_store
from chargeback.billing.corrections import counted, month_documents
from chargeback.billing.invoicing import quantities_rows, sha256_json
from chargeback.billing.lines import stored_lines
from chargeback.core import db
from chargeback.core.responses import RequestError
from chargeback.core.settings import Settings


def _invoice_by_number(conn: psycopg.Connection, number: str, field_name: str) -> tuple:
    row = conn.execute(
        f"""SELECT invoice_id, namespace, period, status, inputs, inputs_sha256, lines_sha256,
                   subtotal, tax, total, document_kind, issued_at, {invoice_export.STORED_CSV},
                   usage_csv_sha256
              FROM openfaas_metering.invoices i WHERE number = %s""", (number,)).fetchone()
    if row is None:
        raise RequestError(404, f"{field_name}: no invoice numbered {number!r}")
    return row


def verify(settings: Settings, number: str) -> dict:
    """Check a finalized document (invoice, supplementary invoice, credit note) and its
    month; changes nothing. The document: its stored inputs, lines and usage CSV
    against their hashes, and its lines rebuilt from its inputs (a correction: from
    its month re-priced less the documents before it). The month: re-derived from
    the raw events and capacity intervals (not the rollups) at the month's terms and
    compared with everything billed for it, both ways: rows now below what was
    billed is a mismatch; rows above it is late usage the next close corrects."""
    with db.transaction(settings) as conn:
        (invoice_id, ns, period_name, status, inputs, inputs_sha256, lines_sha256,
         subtotal, tax, total, kind, issued_at, usage, usage_sha256) = _invoice_by_number(
            conn, number, "verify")
        if inputs is None:
            raise RequestError(409, f"verify: {number} is a draft; nothing to verify")
        docs = month_documents(conn, period_name, [ns])[ns]
        live, counted_docs = counted(docs)
        if live is None:  # voided without a reissue: what was billed before the void
            counted_docs = [d for d in docs if not d.operator]
        def strip(doc_inputs: dict) -> dict:
            return {k: v for k, v in doc_inputs.items() if k not in ("corrects", "late")}
        # the month the document was priced from (None: an operator's credit note), and
        # the month compared with the raw rows: the document's own while it counts as
        # billed, else (voided, superseded, an operator's credit) the live invoice's
        own = strip(inputs) if "action" not in inputs else None
        if own is not None and (live is None or invoice_id in {d.invoice_id
                                                               for d in counted_docs}):
            month_inputs = own
        else:
            month_inputs = strip((live or counted_docs[0]).inputs)
        books = {v: pricebook_store.version(conn, v) for v in {
            month_inputs["price_book_version"], (own or month_inputs)["price_book_version"]}}
        lines_of = {d.invoice_id: stored_lines(conn, d.invoice_id) for d in docs}
        raw = quantities_rows(billing_store.quantities_raw(
            conn, invoicing.windows_of(month_inputs), [ns],
            books[month_inputs["price_book_version"]].meters).get(ns, {}))
    differences = []
    if sha256_json(inputs) != inputs_sha256:
        differences.append("stored inputs do not match inputs_sha256")
    stored = lines_of.get(invoice_id, [])
    if sha256_json([line.canonical() for line in stored]) != lines_sha256:
        differences.append("stored lines do not match lines_sha256")
    if usage is not None and hashlib.sha256(usage.encode()).hexdigest() != usage_sha256:
        differences.append("stored usage CSV does not match usage_csv_sha256")
    this = next(d for d in docs if d.invoice_id == invoice_id)
    if own is None:  # an operator's credit note: rebuilt from what it credited
        rebuilt = credits.build(inputs)
    else:
        rebuilt = invoicing.build(own, books)
    if own is not None and kind != "invoice":
        # the invoice it corrects and the corrections of that invoice before it
        before = [d for d in docs if d.invoice_id == this.corrects or (
            d.corrects == this.corrects and not d.operator
            and d.correction_no < this.correction_no)]
        rebuilt = invoicing.correction(
            rebuilt, [line for d in before for line in lines_of[d.invoice_id]],
            sum((d.subtotal for d in before), Decimal(0)),
            sum((d.tax for d in before), Decimal(0)))
    if rebuilt.lines_sha256 != lines_sha256 or (rebuilt.subtotal, rebuilt.tax,
                                                rebuilt.total) != (subtotal, tax, total):
        differences.append("lines recomputed from the inputs differ from the stored lines")
    # the month as the raw rows price it now, against every document billed for it
    from_raw = invoicing.build({**month_inputs, "quantities": raw}, books)
    # what counts as billed for the month (counted(): no operator credit, no voided invoice)
    billed_ids = {d.invoice_id for d in counted_docs}
    billed_total = sum((d.total for d in docs if d.invoice_id in billed_ids), Decimal(0))
    stored_rows = {tuple(r[:4]): r[4] for r in month_inputs["quantities"]}
    raw_rows = {tuple(r[:4]): r[4] for r in raw}
    keys = sorted(set(stored_rows) | set(raw_rows), key=str)
    below = [k for k in keys if Decimal(raw_rows.get(k, "0")) < Decimal(stored_rows.get(k, "0"))]
    if below or (from_raw.total is not None and from_raw.total < billed_total):
        differences.append(f"raw usage of {period_name} is below what was billed for it "
                           f"(billed {billed_total}, the raw rows price at {from_raw.total})")
    late = [{"meter": k[0], "sku": k[1], "spot": k[2], "window": k[3],
             "invoiced": stored_rows.get(k, "0"), "now": raw_rows.get(k, "0")}
            for k in keys if stored_rows.get(k) != raw_rows.get(k)]
    return {"verify": number, "kind": kind, "status": status, "match": not differences,
            "differences": differences, "inputs_sha256": inputs_sha256,
            "lines_sha256": lines_sha256, "usage_csv_sha256": usage_sha256,
            "month": {"period": period_name, "documents": [d.number for d in docs],
                      "billed_total": str(billed_total),
                      "from_raw_total": None if from_raw.total is None
                      else str(from_raw.total)},
            # usage stored after this document was made: a later close corrects it
            "late_usage": late}


def export(settings: Settings, number: str) -> str:
    """The usage CSV behind invoice `number` (see invoice_export)."""
    with db.transaction(settings) as conn:
        invoice_id = _invoice_by_number(conn, number, "export")[0]
        return invoice_export.usage_csv(conn, invoice_id)
