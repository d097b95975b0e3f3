"""aggregate-month over HTTP behind the local gateway: the hand-off to email-invoice."""
import requests

from chargeback.core import db

from .invoices import recorded as _recorded


def test_each_unsent_invoice_is_queued_to_email_invoice_exactly_once(close_via_gateway):
    url, settings, record, _ = close_via_gateway
    first = requests.post(url, json={"period": "2026-09"}, timeout=60)
    assert first.status_code == 200, first.text
    body = first.json()
    assert [i["tenant"] for i in body["periods"][0]["invoices"]] == [
        f"tenant-{i}" for i in range(4)]
    # a second call (cron, an operator) within REQUEUE_MINUTES queues nothing again
    again = requests.post(url, data=b"", timeout=60).json()
    assert again["queued"] == []
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
    later = requests.post(url, data=b"", timeout=60).json()
    by_tenant = {i["tenant"]: i for i in body["periods"][0]["invoices"]}
    assert later["queued"] == [by_tenant["tenant-2"]["number"]]
    ids = _recorded(record, 5)
    assert len(ids) == 5 and ids.count(by_tenant["tenant-2"]["invoice_id"]) == 2
    bad = requests.post(url, json={"period": "September"}, timeout=60)
    assert bad.status_code == 400 and bad.json()["error"].startswith("period:")
