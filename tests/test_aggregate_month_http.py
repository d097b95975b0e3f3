"""aggregate-month over HTTP behind the local gateway: the hand-off to email-invoice."""
import requests

from chargeback.core import db

from .conftest import ADMIN
from .invoices import recorded as _recorded


def test_each_unsent_invoice_is_queued_to_email_invoice_exactly_once(close_via_gateway):
    url, settings, record, _ = close_via_gateway
    first = requests.post(url, json={"period": "2026-09"}, headers=ADMIN, timeout=60)
    assert first.status_code == 200, first.text
    body = first.json()
    assert [i["tenant"] for i in body["periods"][0]["invoices"]] == [
        f"tenant-{i}" for i in range(4)]
    # a second call (cron, an operator) within REQUEUE_MINUTES queues nothing again
    again = requests.post(url, data=b"", timeout=60).json()
    assert again["queued"] == 0  # the cron call (no token) answers counts
    ids = _recorded(record, 4)
    assert ids == sorted(i["invoice_id"] for i in body["periods"][0]["invoices"])
    # tenant-2's was never picked up (email-invoice down long enough) and tenant-3's is
    # undeliverable; both were queued 2 hours ago, past REQUEUE_MINUTES: the next run
    # re-queues tenant-2's only
    with db.transaction(settings) as conn:
        conn.execute("UPDATE openfaas_metering.invoices SET queued_at = now() - interval"
                     " '2 hours' WHERE namespace IN ('tenant-2', 'tenant-3')")
        conn.execute("UPDATE openfaas_metering.invoices SET status = 'undeliverable',"
                     " undeliverable_reason = 'no e-mail address' WHERE namespace = 'tenant-3'")
    later = requests.post(url, data=b"", headers=ADMIN, timeout=60).json()  # the operator sees which
    by_tenant = {i["tenant"]: i for i in body["periods"][0]["invoices"]}
    assert later["queued"] == [by_tenant["tenant-2"]["number"]]
    ids = _recorded(record, 5)
    assert len(ids) == 5 and ids.count(by_tenant["tenant-2"]["invoice_id"]) == 2
    bad = requests.post(url, json={"period": "September"}, headers=ADMIN, timeout=60)
    assert bad.status_code == 400 and bad.json()["error"].startswith("period:")


def test_without_the_operators_token_every_option_is_refused_and_the_cron_call_says_only_counts(
        close_via_gateway):
    url, _, record, _ = close_via_gateway
    for body in ({"dry_run": True}, {"verify": "INV-2026-000001"},
                 {"export": "INV-2026-000001"}, {"tenant": "tenant-1"}, {"period": "2026-09"}):
        for headers in ({}, {"Authorization": "Bearer not-the-token"},
                        {"Authorization": "Basic dGVzdC1hZG1pbi10b2tlbg=="}):
            r = requests.post(url, json=body, headers=headers, timeout=60)
            option = next(iter(body))
            assert r.status_code == 401, (body, headers, r.text)
            assert r.text.count("\n") <= 1 and r.json()["error"].startswith(
                f"{option} needs the operator's token")
    assert list(record.iterdir()) == []  # nothing was closed or queued by those
    # the hourly cron call (no credential): September closes and its four invoices are
    # queued, but the answer names no tenant, number or amount
    cron = requests.post(url, data=b"", timeout=60)
    assert cron.status_code == 200, cron.text
    assert cron.json()["periods"][0] == {"period": "2026-09", "closed": True, "invoices": 4,
                                         "drafts": 0}
    assert cron.json()["queued"] == 4
    assert "tenant-" not in cron.text and "INV-" not in cron.text
    assert len(_recorded(record, 4)) == 4
    # the operator sees what was closed
    verify = requests.post(url, json={"verify": "INV-2026-000001"}, headers=ADMIN, timeout=60)
    assert verify.status_code == 200 and verify.json()["match"] is True
    export = requests.post(url, json={"export": "INV-2026-000001"}, headers=ADMIN, timeout=60)
    assert export.status_code == 200 and export.text.startswith("line_no,kind,meter")
