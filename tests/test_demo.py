"""scripts/demo end to end: the real script, its own runtime, embedded PostgreSQL."""
import email
import email.policy
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import facturx

from devstack.pg import EmbeddedPostgres, free_port, port_in_use

from .conftest import ROOT
from .einvoice_rules import PEPPOL_RULES, UBL_RULES, assert_en16931, broken_rules_of
from .stack_helpers import _env


def test_demo_sends_a_month_through_the_gateway_and_the_database_holds_it_once(var_home):
    env = _env(var_home, GATEWAY_PORT=str(free_port()), PG_PORT=str(free_port()),
               SMTP_PORT=str(free_port()))
    try:
        done = subprocess.run([str(ROOT / "scripts" / "demo")], env=env, capture_output=True,
                              text=True, timeout=300)
    finally:
        EmbeddedPostgres(var_home / "var" / "pg", 0).discard()
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "210,000 invocations of 15 functions in 5 tenants" in out
    assert "(100%)  accepted   210,000" in out
    # the demo compares what it reads back with what it sent, and fails otherwise
    assert "check: every tenant's invocations and exact GB-seconds equal the 210,000" in out
    for tenant in ("acme-shop", "globex-data", "initech-ci", "umbrella-ml", "hooli-api"):
        assert f"\n{tenant} " in out
    # hourly from 2026-09-01 00:00 to 2026-10-01 00:00 inclusive: 30 x 24 + 1 ticks
    assert "721 ticks recorded, 0 already metered" in out
    capacity = out.split("== capacity:", 1)[1]
    # the fixture cluster holds still all month (720 billed hours): helix-ai's 2 Ready
    # 8x H100 nodes of 96 cores: 2 x 720 = 1,440 node-h, none spot, 192 x 720 = 138,240
    # core-h, 16 x 720 = 11,520 H100 hours
    assert "\nhelix-ai       1,440     0  138,240" in capacity
    assert "11,520 NVIDIA-H100-80GB-HBM3" in capacity
    invoices = out.split("== invoices:", 1)[1]
    # 5 usage tenants (listed above) + the cluster's 4 (helix-ai, render-farm, webshop,
    # vision-lab), every meter priced; vision-lab has no postal address annotated: its
    # invoice is held as a draft naming the annotations, until the operator gives one
    assert "closed 2026-09: 8 invoices finalized, 1 drafts" in invoices
    held = invoices.split("DRAFT  vision-lab  2026-09", 1)[1].split("\n")[1]
    assert "customer address: none given: annotate the namespace chargeback/address-street" \
        in held and "BR-10, BR-11" in held
    assert "closed 2026-09 again: 1 invoice(s) finalized, 0 drafts" in invoices
    assert "INV-2026-000009  vision-lab  2026-09" in invoices
    # spot capacity discounted, a mid-month price change split, tax, in the plan's currency.
    # render-farm (plan spot, EUR price list, 60 % spot discount, 19 % tax), 720 h each,
    # lines rounded to cents: g5.12xlarge 720 x 1.31 = 943.20, less 60 % = 565.92 -> 377.28;
    # c6i.8xlarge 720 x 1.25 = 900.00 -> 360.00; cores 80 x 720 x 0.0092 = 529.92 -> 211.97;
    # memory (195,784,208 + 64,890,464) KiB = 248.5987... GiB x 720 x 0.0012 = 214.79
    # -> 85.92; a10g 4 x 720 x 0.93 = 2,678.40 -> 1,071.36; gp3 1,524 GiB (1 Ti + 500 Gi,
    # the pending PVC bills nothing) x 720 x 0.000101 = 110.83; one load balancer 360 h x
    # 0.023 = 8.28 then 360 h x 0.0207 = 7.45; base fee 25.00: subtotal 2,258.09 (above the
    # 500.00 commitment), tax 429.04, total 2,687.13
    assert "Dedicated nodes g5.12xlarge (spot)" in invoices and "(-565.92 spot)" in invoices
    assert "Load balancers, 2026-09-16 00:00 to 2026-10-01 00:00 UTC" in invoices
    assert "tax 19 %" in invoices and "2,687.13 EUR" in invoices
    assert "Minimum commitment 100.00 USD: top-up" in invoices
    october = invoices.split("closed 2026-10:", 1)[1]
    # the late September usage re-prices September: a supplementary invoice referencing
    # September's invoice, not a line on October's (3 runs x 3,600 s x 2 GiB = 21,600 GB-s)
    assert "2026-09 re-priced: 1 correction(s)" in october
    assert ("supplementary invoice INV-2026-000010  initech-ci  2026-09  plan standard"
            "  (finalized)  corrects INV-2026-000005") in october
    assert "21,600 GB-s" in october and "0.36 USD" in october
    assert "initech-ci  2026-10" not in october
    # a tenant meter-capacity still lists owes October's base fee and commitment
    assert "helix-ai  2026-10" in october and "Base fee, plan gpu-dedicated" in october
    email = out.split("== email:", 1)[1]
    assert "12 of 13 invoices sent, 1 undeliverable" in email
    assert "INV-2026-000004  hooli-api  undeliverable: tenant hooli-api has no billing" in email
    mail_dir = var_home / "var" / "demo" / "mail"
    # the documents, 3 budget alerts, then the void's credit note, the reissue and a credit
    # note, then the payment reminders
    reminders = int(re.search(r"email-invoice: (\d+) sent", out)[1])
    assert len(list(mail_dir.glob("*.eml"))) == 12 + 3 + 3 + reminders
    pdf = mail_dir / "examplefunctions-2026-09-INV-2026-000007.pdf"  # <supplier>-<period>-<number>
    assert pdf.read_bytes().startswith(b"%PDF")
    assert f"  {mail_dir / 'examplefunctions-2026-09-INV-2026-000010.pdf'}" in email
    # render-farm (chargeback/einvoice: ubl) gets its Peppol UBL beside the PDF
    assert f"  {mail_dir / 'examplefunctions-2026-09-INV-2026-000006-ubl.xml'}" in email
    # the supplementary invoice for the late September usage, as the customer reads it
    text = email.split("--- the plain-text part of INV-2026-000010", 1)[1]
    assert "Subject: Supplementary invoice INV-2026-000010" in text
    assert "SUPPLEMENTARY INVOICE INV-2026-000010" in text
    # the corrected invoice's number and its issue date (a long English date)
    assert re.search(r"Corrects invoice INV-2026-000005 of [A-Z][a-z]+ \d{1,2}, 2026 "
                     r"\(September 2026\)", text)
    assert "Bill to: Initech, Inc." in text and "Total (USD)" in text and "$0.36" in text
    # usage/current asked before the close equals every invoice; then one tenant's link
    portal = out.split("== portal: what each tenant saw", 1)[1]
    assert portal.count("  equal") == 9 and "DIFFERENT" not in portal
    # on the portal's own origin (the local Ingress stand-in), not the gateway's; the
    # token in the fragment, which no server sees (the period, no secret, in the query)
    assert re.search(r"\n  http://localhost:\d+/\?period=2026-09#token=[\w.-]+\n", portal)
    # a budget crossed by one delivery: 50, 80 and 100 % once each, by mail and webhook
    budgets = out.split("== budgets and webhooks:", 1)[1]
    assert '"crossed": 3' in budgets and "nothing more: crossed 0" in budgets
    assert "Budgetwarnung: ACME Shop GmbH hat 100" in budgets
    # (acme-shop's and hooli-api's September invoices are 0.00: nothing to pay, paid)
    assert ("3 budget.threshold_crossed, 13 invoice.finalized, 1 invoice.held, "
            "2 invoice.paid, 12 invoice.sent") in budgets
    assert "signature checked by the sink with standardwebhooks: valid" in budgets
    # globex-data's September invoice voided and reissued; part of acme-shop's credited
    adjusted = out.split("== void and credit:", 1)[1]
    assert re.search(r"voids (INV-2026-\d{6}): credit note CN-2026-000001  -(\d+\.\d\d) USD"
                     r"\n  reissues it: INV-2026-000014  \2 USD  \(replaces \1,", adjusted)
    assert "credit note CN-2026-000002" in adjusted
    assert adjusted.count(": sent") == 3
    # after the invoice: a statement pays one invoice in full and one in part, a transfer
    # without a number is listed; an unpaid invoice is overdue after its due date; a grant
    paid = out.split("== payments and credits:", 1)[1]
    assert "camt.053, 3 credit lines" in paid
    assert re.search(r"BANK-0001 +[\d.]+ \w+  pays INV-2026-\d{6}: paid, 0\.00 open", paid)
    assert re.search(r"BANK-0002 +[\d.]+ \w+  pays INV-2026-\d{6}: partially_paid", paid)
    assert "BANK-0003       99.00 EUR  not matched: no document number" in paid
    assert re.search(r"the hourly run marks INV-2026-\d{6} overdue", paid)
    # a week after the due date: the reminders of the partly paid and the unpaid invoice,
    # each mail with what is open and the PDF again; the EPC QR of a EUR invoice's PDF
    assert re.search(r"decides [1-9]\d* payment reminder\(s\) \(REMINDER_DAYS 7,21\); "
                     r"email-invoice: [1-9]\d* sent", paid)
    assert re.search(r"\n  reminder to [^\n]+: [^\n]+ INV-2026-\d{6}", paid)
    assert re.search(r"attached again: \S+-INV-2026-\d{6}\.pdf", paid)
    epc = re.search(r"the EPC QR code on \S+ \((INV-2026-\d{6}), ([\d.]+) EUR\) decodes "
                    r"to: BCD 002 SCT, .* IBAN DE89370400440532013000, .* amount EUR([\d.]+), "
                    r"remittance (INV-2026-\d{6})", paid)
    assert epc and epc[1] == epc[4] and Decimal(epc[2]) == Decimal(epc[3])
    assert "launch promotion" in paid and "Credit applied" in paid
    # meters from anywhere: 12 token events (one sent twice), priced per model with
    # graduated tiers: gpt-4o 12,000,000 = 10,000,000 x 0.0000025 + 2,000,000 x 0.0000020
    # = 25.00 + 4.00; gpt-4o-mini 2,000,000 x 0.00000015 = 0.30
    meters = out.split("== meters from anywhere:", 1)[1]
    assert "CloudEvents batch of 13: accepted 12, duplicates 1, rejected 0" in meters
    assert re.search(r"llm_tokens +gpt-4o +12000000 tokens +29\.00\n", meters)
    assert re.search(r"llm_tokens +gpt-4o-mini +2000000 tokens +0\.30\n", meters)
    if shutil.which("prometheus") is None:
        assert "prometheus is not installed (apt-get install prometheus)" in meters
    else:
        # egress: 12 steps of 20 GiB = 240 GiB, 100 included, 140 x 0.09 = 12.60; GPU:
        # two H100s at 75 % and 50 % for an hour = 1.25 GPU-hours x 2.40 = 3.00; the
        # gateway counted 12 x 50 = 600 calls of chat, the webhook delivered 550
        assert re.search(r"egress_gib +240 GiB +12\.60\n", meters)
        assert re.search(r"gpu_utilisation_hours +NVIDIA-H100-80GB-HBM3 +1\.25 GPU-hours"
                         r" +3\.00\n", meters)
        assert re.search(r"reconciliation: ai-inference/chat hour \S+ billed 550, gateway "
                         r"counted 600: 50 missing \(usage.drift_detected sent\)", meters)
    assert not port_in_use(int(env["GATEWAY_PORT"])) and not port_in_use(int(env["PG_PORT"]))
    assert not port_in_use(int(env["SMTP_PORT"]))
    _every_e_invoice_mailed_breaks_no_fatal_rule(mail_dir)


def _every_e_invoice_mailed_breaks_no_fatal_rule(mail_dir: Path) -> None:
    """Each mailed document's e-invoice through its format's official rule sets: the
    Factur-X CII inside a PDF (XSD + EN 16931 CII), a Peppol tenant's UBL beside it
    (EN 16931 UBL + Peppol BIS 3). A reminder attaches the same PDF again: checked once."""
    cii, ubl = {}, {}
    for eml in sorted(mail_dir.glob("*.eml")):
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        for part in message.iter_attachments():
            name, data = part.get_filename(), part.get_content()
            if name.endswith(".pdf"):
                embedded, xml = facturx.get_xml_from_pdf(data, check_xsd=False)
                if embedded:
                    cii[name] = xml
            elif name.endswith("-ubl.xml"):
                ubl[name] = data
    # render-farm (chargeback/einvoice: ubl) gets its invoice as UBL, the others Factur-X
    assert [n for n in ubl if "INV-" in n] and len(cii) >= 12, (sorted(cii), sorted(ubl))
    assert not {n.rsplit(".", 1)[0] for n in cii} & {n[:-len("-ubl.xml")] for n in ubl}
    for name, xml in cii.items():
        assert_en16931(xml)
    for name, xml in ubl.items():
        assert (broken_rules_of(xml, UBL_RULES), broken_rules_of(xml, PEPPOL_RULES)) == \
            ([], []), name
