"""Demo section: after the invoice. The operator imports the bank's camt.053 statement
through aggregate-month: one September invoice is paid in full, one in part, and a
transfer without an invoice number is listed, not guessed; a third invoice is left
unpaid and is overdue the day after its due date; and the operator grants a tenant a
credit that the next close applies before tax."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from decimal import Decimal

import psycopg

from chargeback.billing import payment_store

from .demo_adjustments import DemoError, _post


def statement(lines: list[tuple[str, Decimal, str, str]]) -> str:
    """A camt.053.001.02 statement of booked credits (reference, amount, currency,
    remittance), as a bank sends it."""
    entries = "".join(f"""
   <Ntry><NtryRef>{ref}</NtryRef><Amt Ccy="{currency}">{amount}</Amt>
    <CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><BookgDt><Dt>2026-10-20</Dt></BookgDt>
    <ValDt><Dt>2026-10-20</Dt></ValDt><AcctSvcrRef>{ref}</AcctSvcrRef><BkTxCd/>
    <NtryDtls><TxDtls><RmtInf><Ustrd>{remittance}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>"""
                      for ref, amount, currency, remittance in lines)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>
 <GrpHdr><MsgId>DEMO-STMT</MsgId><CreDtTm>2026-10-21T06:00:00</CreDtTm></GrpHdr>
 <Stmt><Id>DEMO-2026-10-20</Id><CreDtTm>2026-10-21T06:00:00</CreDtTm>
  <Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>{entries}
 </Stmt></BkToCstmrStmt></Document>"""


def run(gateway_url: str, database_url: str, admin_token: str) -> None:
    with psycopg.connect(database_url) as conn:
        invoices = conn.execute(
            """SELECT number, namespace, total, currency, due_date
                 FROM openfaas_metering.invoices
                WHERE period = '2026-09' AND document_kind = 'invoice' AND total > 0
                  AND voided_by IS NULL AND status <> 'draft'
                ORDER BY number LIMIT 3""").fetchall()
    if len(invoices) < 3:
        raise DemoError("fewer than three September invoices to pay")
    (paid, paid_ns, paid_total, paid_cur, _), (part, part_ns, part_total, part_cur, _), \
        (unpaid, unpaid_ns, unpaid_total, unpaid_cur, due) = invoices
    half = (part_total / 2).quantize(Decimal("0.01"))
    xml = statement([("BANK-0001", paid_total, paid_cur, f"Invoice {paid}"),
                     ("BANK-0002", half, part_cur, f"{part} first half"),
                     ("BANK-0003", Decimal("99.00"), "EUR", "thank you for the coffee")])
    answer = _post(gateway_url, admin_token, {"camt053": xml})["camt053"]
    print(f"the bank statement of 20 October (camt.053, {answer['lines']} credit lines):")
    for m in answer["matched"]:
        print(f"  {m['reference']}  {m['amount']:>10} {m['currency']}  pays {m['invoice']}: "
              f"{m['status']}, {m['open']} open")
    for u in answer["unmatched"]:
        print(f"  {u['reference']}  {u['amount']:>10} {u['currency']}  not matched: "
              f"{u['reason']}")
    with psycopg.connect(database_url) as conn:
        today = dict(conn.execute(
            """SELECT i.number, s.status FROM openfaas_metering.document_payment_status s
                 JOIN openfaas_metering.invoices i USING (invoice_id)
                WHERE i.number = ANY(%s)""", ([paid, part, unpaid],)))
        # what the hourly run finds the day after the due date (it marks it overdue then)
        after_due = payment_store.ledgers(conn, [unpaid_ns], datetime.combine(
            due + timedelta(days=1), time(12), tzinfo=timezone.utc))
    later = next(s for s in after_due[unpaid_ns].standings.values() if s.number == unpaid)
    print(f"statuses: {paid} {today.get(paid)}, {part} {today.get(part)}, "
          f"{unpaid} {today.get(unpaid)} ({unpaid_total} {unpaid_cur} due {due})")
    print(f"  on {due + timedelta(days=1)} the hourly run marks {unpaid} {later.status}, "
          f"{later.open} {unpaid_cur} open (event invoice.payment_overdue)")
    grant = _post(gateway_url, admin_token, {"grant": {
        "tenant": unpaid_ns, "amount": "25.00", "currency": unpaid_cur,
        "reason": "launch promotion", "expires_at": "2027-06-30T23:59:59Z"}})
    print(f"the operator grants {unpaid_ns} 25.00 {unpaid_cur} (launch promotion, until "
          f"30 June 2027): balance {grant['balance']}; the next close applies it before "
          "tax as a line \"Credit applied\"")
