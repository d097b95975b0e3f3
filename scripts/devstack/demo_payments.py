"""Demo section: after the invoice. The operator imports the bank's camt.053 statement
through aggregate-month: one September invoice is paid in full, one in part, and a
transfer without an invoice number is listed, not guessed; a third invoice is left
unpaid and is overdue the day after its due date; a week after it, the hourly run's
reminder step decides the payment reminders and email-invoice sends them (the mail is
shown); the EPC QR code of a mailed EUR invoice is decoded from its PDF; and the
operator grants a tenant a credit that the next close applies before tax."""
from __future__ import annotations

import email
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from email.policy import default as default_policy
from pathlib import Path

import psycopg
import pypdfium2
import requests
import zxingcpp

from chargeback.billing import payment_store, reminders

from .demo_adjustments import DemoError, _post

REMINDER_DAYS = (7, 21)   # stack.yml's REMINDER_DAYS


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


def run(gateway_url: str, database_url: str, admin_token: str,
        mail_dir: Path | None = None) -> None:
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
    _reminders(gateway_url, database_url, mail_dir, [part_ns, unpaid_ns], due, [part, unpaid])
    _epc_qr(database_url, mail_dir)
    grant = _post(gateway_url, admin_token, {"grant": {
        "tenant": unpaid_ns, "amount": "25.00", "currency": unpaid_cur,
        "reason": "launch promotion", "expires_at": "2027-06-30T23:59:59Z"}})
    print(f"the operator grants {unpaid_ns} 25.00 {unpaid_cur} (launch promotion, until "
          f"30 June 2027): balance {grant['balance']}; the next close applies it before "
          "tax as a line \"Credit applied\"")


def _reminders(gateway_url: str, database_url: str, mail_dir: Path | None,
               namespaces: list[str], due, shown: list[str]) -> None:
    """What the hourly run does 7 days after the due date (the demo's month is ahead of
    the real clock the deployed run keeps): derive the standings, decide the reminders;
    then email-invoice sends them, as the run's wake-up asks it to. The mails about
    `shown` (the partly paid and the unpaid invoice) are printed."""
    at = datetime.combine(due + timedelta(days=REMINDER_DAYS[0]), time(12), tzinfo=timezone.utc)
    with psycopg.connect(database_url) as conn:
        ledgers, _ = payment_store.refresh(conn, namespaces, at)
        decided = reminders.enqueue_due(conn, list(ledgers), at, REMINDER_DAYS)
    r = requests.post(f"{gateway_url}/function/email-invoice.openfaas-system",
                      json={"reminders": "due"}, timeout=120)
    if r.status_code != 200:
        raise DemoError(f"email-invoice reminders: {r.status_code} {r.text.strip()[:300]}")
    sent = r.json()
    print(f"on {at.date()} the hourly run decides {decided} payment reminder(s) "
          f"(REMINDER_DAYS {','.join(map(str, REMINDER_DAYS))}); email-invoice: "
          f"{sent['sent']} sent, {sent['undeliverable']} undeliverable")
    if mail_dir is None:
        return
    for path in sorted(mail_dir.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=default_policy)
        if not str(msg["Message-ID"]).startswith("<reminder-") or not any(
                number in str(msg["Subject"]) for number in shown):
            continue
        said = msg.get_body(("plain",)).get_content().replace("\r\n", "\n").split("\n\n")
        pdf = [p.get_filename() for p in msg.iter_attachments()]
        print(f"  reminder to {msg['To']}: {msg['Subject']}\n    {' '.join(said[1].split())}"
              f"\n    attached again: {', '.join(pdf)}  ({path.name})")


def _epc_qr(database_url: str, mail_dir: Path | None) -> None:
    """The EPC QR code of the first mailed EUR invoice, decoded from its PDF."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            """SELECT number, total FROM openfaas_metering.invoices
                WHERE currency = 'EUR' AND document_kind = 'invoice' AND status = 'sent'
                  AND total > 0 ORDER BY number LIMIT 1""").fetchone()
    pdf = next(mail_dir.glob(f"*-{row[0]}.pdf"), None) if row and mail_dir else None
    if pdf is None:
        print("no mailed EUR invoice PDF to decode an EPC QR code from")
        return
    codes = [b.text.split("\n") for page in pypdfium2.PdfDocument(pdf.read_bytes())
             for b in zxingcpp.read_barcodes(page.render(scale=4).to_pil())
             if b.format == zxingcpp.BarcodeFormat.QRCode]   # below the payment details
    if not codes:
        raise DemoError(f"{pdf.name}: no QR code found on any page")
    f = codes[0]
    print(f"the EPC QR code on {pdf.name} ({row[0]}, {row[1]} EUR) decodes to: {f[0]} {f[1]} "
          f"{f[3]}, creditor {f[5]}, IBAN {f[6]}, BIC {f[4]}, amount {f[7]}, remittance {f[10]}")
