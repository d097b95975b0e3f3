"""scripts/demo end to end: the real script, its own runtime, embedded PostgreSQL."""
import subprocess

from devstack.pg import EmbeddedPostgres, free_port, port_in_use

from .conftest import ROOT
from .test_stack import _env


def test_demo_sends_a_month_through_the_gateway_and_the_database_holds_it_once(tmp_path):
    env = _env(tmp_path, GATEWAY_PORT=str(free_port()), PG_PORT=str(free_port()),
               SMTP_PORT=str(free_port()))
    try:
        done = subprocess.run([str(ROOT / "scripts" / "demo")], env=env, capture_output=True,
                              text=True, timeout=300)
    finally:
        EmbeddedPostgres(tmp_path / "var" / "pg", 0).discard()
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "210,000 invocations of 15 functions in 5 tenants" in out
    assert "(100%)  accepted   210,000" in out
    # the demo compares what it reads back with what it sent, and fails otherwise
    assert "check: every tenant's invocations and exact GB-seconds equal the 210,000" in out
    for tenant in ("acme-shop", "globex-data", "initech-ci", "umbrella-ml", "hooli-api"):
        assert f"\n{tenant} " in out
    assert "721 ticks recorded, 0 already metered" in out
    capacity = out.split("== capacity:", 1)[1]
    assert "\nhelix-ai       1,440     0  138,240" in capacity
    assert "11,520 NVIDIA-H100-80GB-HBM3" in capacity
    invoices = out.split("== invoices:", 1)[1]
    assert "closed 2026-09: 9 invoices finalized, 0 drafts" in invoices
    # spot capacity discounted, a mid-month price change split, tax, in the plan's currency
    assert "Dedicated nodes g5.12xlarge (spot)" in invoices and "(-565.92 spot)" in invoices
    assert "Load balancers, 2026-09-16 00:00 to 2026-10-01 00:00 UTC" in invoices
    assert "tax 19 %" in invoices and "2,687.13 EUR" in invoices
    assert "Minimum commitment 100.00 USD: top-up" in invoices
    october = invoices.split("closed 2026-10:", 1)[1]
    assert "initech-ci  2026-10" in october
    assert "Late usage of 2026-09: Function compute" in october and "21,600 GB-s" in october
    assert "0.36 USD" in october
    email = out.split("== email:", 1)[1]
    assert "9 of 10 invoices sent, 1 undeliverable" in email
    assert "INV-2026-000004  hooli-api  undeliverable: tenant hooli-api has no billing" in email
    mail_dir = tmp_path / "var" / "demo" / "mail"
    assert len(list(mail_dir.glob("*.eml"))) == 9 + 3  # the invoices, then 3 budget alerts
    assert (mail_dir / "invoice-INV-2026-000007.pdf").read_bytes().startswith(b"%PDF")
    assert f"  {mail_dir / 'invoice-INV-2026-000010.pdf'}" in email
    # the October invoice with the late September usage, as the customer reads it
    text = email.split("--- the plain-text part of INV-2026-000010", 1)[1]
    assert "Bill to: Initech, Inc." in text and "adjustment for September 2026" in text
    assert "Total (USD)" in text and "$0.36" in text
    # a budget crossed by one delivery: 50, 80 and 100 % once each, by mail and webhook
    budgets = out.split("== budgets and webhooks:", 1)[1]
    assert '"crossed": 3' in budgets and "nothing more: crossed 0" in budgets
    assert "Budgetwarnung: ACME Shop GmbH hat 100" in budgets
    assert "3 budget.threshold_crossed, 10 invoice.finalized, 9 invoice.sent" in budgets
    assert "signature checked by the sink with standardwebhooks: valid" in budgets
    assert not port_in_use(int(env["GATEWAY_PORT"])) and not port_in_use(int(env["PG_PORT"]))
    assert not port_in_use(int(env["SMTP_PORT"]))
