"""The campaign's fault and concurrency cases for meter-capacity, aggregate-month and
email-invoice (issue 15): the Kubernetes API failing, hanging or cutting a page short; a
function process killed mid-request and restarted; two closes of one month at once through
the local gateway; SMTP down for several retries with every invoice queued twice. (More of
email-invoice's cases are in tests/test_email_invoice.py.)

Each test prints its measured outcome (`scripts/test -s tests/test_reliability_bundle.py`);
docs/reliability.md records them.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import timedelta

import psycopg
import pytest
import requests

from devstack.pg import free_port

from .conftest import ADMIN
from .invoices import (MAIL_ENV, RecordingSmtp, email_invoice_behind_gateway,
                       finalized_invoice, invoice_row, mail_row, start_smtp)
from .invoices import recorded as _recorded
from .capacity_helpers import FIXTURE_HOLDINGS, H100, T0, rows, tick, unit_seconds
from .waiting import until


def _wait_for_lock_wait(database_url, timeout_s: float = 20) -> None:
    """Until a session of this database waits on a lock (the function, blocked mid-write)."""
    until(lambda: rows(database_url, "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                                     " current_database() AND wait_event_type = 'Lock'")[0][0],
          "the function to reach the locked table", timeout_s)


def _holding_lock(database_url, table: str):
    """A transaction holding `table` in EXCLUSIVE mode (reads pass, writes wait)."""
    conn = psycopg.connect(database_url)
    conn.execute(f"LOCK TABLE openfaas_metering.{table} IN EXCLUSIVE MODE")
    return conn


# meter-capacity: Kubernetes API faults --------------------------------------------------

FAULTS = {
    "5xx": {"fail_status": 500},
    "hang past the timeout": {"delay_s": 1.5},
    "page cut, connection closed": {"truncate_pages": 1, "skip_pages": 1,
                                    "truncate_mode": "connection"},
    "page cut, JSON ends early": {"truncate_pages": 1, "skip_pages": 2,
                                  "truncate_mode": "json"},
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_kubernetes_api_fault_records_nothing_for_that_slot_and_the_next_tick_recovers(
        start_meter, kube_api, database_url, fault):
    fn = start_meter(KUBE_TIMEOUT_SECONDS="1", KUBE_PAGE_SIZE="2")
    assert tick(fn, T0).status_code == 200
    for knob, value in FAULTS[fault].items():
        setattr(kube_api, knob, value)
    r = tick(fn, T0 + timedelta(minutes=1))
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] and "nothing recorded" in r.json()["error"]
    assert "\n" not in r.json()["error"]
    assert rows(database_url, "SELECT count(*) FROM openfaas_metering.capacity_ticks") == [(1,)]
    assert rows(database_url, "SELECT count(*) FROM openfaas_metering.capacity_holdings"
                ) == [(FIXTURE_HOLDINGS,)]  # the baseline's, untouched
    kube_api.fail_status, kube_api.delay_s, kube_api.truncate_pages = None, 0.0, 0
    # A tick refused while the stalled answers drain records nothing: the same minute again
    deadline = time.monotonic() + 10
    while (r := tick(fn, T0 + timedelta(minutes=2))).status_code == 503 \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert r.status_code == 200 and r.json()["billed_seconds"] == 120, r.text
    assert unit_seconds(database_url, "helix-ai", "gpu_hours", H100) == 16 * 120
    print(f"\nkubernetes API {fault}: 503, 0 rows written for that slot; the next tick "
          "billed the 120 s since the baseline")


# Processes killed mid-request -----------------------------------------------------------

def test_meter_capacity_killed_mid_write_leaves_no_partial_tick_and_the_retry_records_once(
        start_meter, database_url):
    fn = start_meter(DB_LOCK_TIMEOUT="30")
    assert tick(fn, T0).status_code == 200
    blocker = _holding_lock(database_url, "capacity_ticks")
    outcome: list = []
    caller = threading.Thread(target=lambda: outcome.append(_tick_or_error(fn, T0 + timedelta(minutes=1))))
    caller.start()
    _wait_for_lock_wait(database_url)  # cluster read, slot locked, blocked writing the tick
    fn.proc.kill()
    fn.proc.wait()
    caller.join()
    blocker.rollback()
    blocker.close()
    assert outcome == ["connection error"]
    fn.start().wait_healthy()
    at = T0 + timedelta(minutes=1)
    answer = _tick_until_done(fn, at)
    assert answer["recorded"] is True and answer["billed_seconds"] == 60, answer
    assert rows(database_url, "SELECT count(*) FROM openfaas_metering.capacity_ticks") == [(2,)]
    assert unit_seconds(database_url, "helix-ai", "gpu_hours", H100) == 16 * 60
    assert _tick_until_done(fn, at) == {"slot": "2026-10-01T00:01:00Z", "recorded": False,
                                        "reason": "already metered"}
    print("\nmeter-capacity killed while writing its tick: 0 partial rows; the retry "
          "recorded the minute once (2 ticks, 60 s billed)")


def _tick_or_error(fn, at):
    try:
        return tick(fn, at).json()
    except requests.ConnectionError:
        return "connection error"


def _tick_until_done(fn, at, attempts: int = 50) -> dict:
    """Tick `at` until no dead caller's session holds its minute any more."""
    for _ in range(attempts):
        answer = tick(fn, at).json()
        if answer.get("reason", "").startswith("in progress"):
            time.sleep(0.2)
            continue
        return answer
    raise AssertionError("the minute stayed locked")


def _handed_off(record, runtime) -> list[str]:
    """Invoice ids handed to email-invoice, once every asynchronous call the gateway took
    has finished: a duplicate hand-off would be among them."""
    until(runtime.gateway.idle, "the gateway's asynchronous calls to finish")
    return _recorded(record, 0, timeout_s=0)


def _invoice_state(database_url) -> tuple:
    return (rows(database_url, "SELECT invoice_id::text, namespace, number, status, total"
                               "  FROM openfaas_metering.invoices ORDER BY number"),
            rows(database_url, "SELECT count(*) FROM openfaas_metering.invoice_lines")[0][0],
            rows(database_url, "SELECT period, invoices FROM openfaas_metering.closed_periods"))


def test_aggregate_month_killed_mid_close_leaves_no_invoice_and_the_retry_closes_once(
        close_via_gateway, database_url):
    url, settings, record, runtime = close_via_gateway
    blocker = _holding_lock(database_url, "closed_periods")  # the close's last write
    outcome: list = []
    caller = threading.Thread(target=lambda: outcome.append(
        requests.post(url, json={"period": "2026-09"}, headers=ADMIN, timeout=60).status_code))
    caller.start()
    _wait_for_lock_wait(database_url)  # invoices numbered, lines copied, not committed
    runtime.processes["aggregate-month"].proc.kill()
    caller.join()
    blocker.rollback()
    blocker.close()
    assert outcome == [502]  # the gateway: the function died
    assert _invoice_state(database_url) == ([], 0, [])
    assert runtime.restart_dead() == ["aggregate-month"]
    runtime.processes["aggregate-month"].wait_healthy()
    r = requests.post(url, json={"period": "2026-09"}, headers=ADMIN, timeout=60)
    assert r.status_code == 200, r.text
    invoices, lines, closed = _invoice_state(database_url)
    assert [n for _, _, n, _, _ in invoices] == [f"INV-2026-{n:06d}" for n in range(1, 5)]
    assert closed == [("2026-09", 4)] and lines >= 4
    assert _handed_off(record, runtime) == sorted(i for i, *_ in invoices)  # each once
    print("\naggregate-month killed before its commit: 0 invoices, 0 lines left; the retry "
          "made 4 invoices numbered 1-4 without a gap, each handed to email-invoice once")


def test_two_closes_of_one_month_at_once_make_one_set_of_invoices_queued_once(
        close_via_gateway, database_url):
    url, _, record, runtime = close_via_gateway
    barrier = threading.Barrier(2)

    def close():
        barrier.wait()
        return requests.post(url, json={"period": "2026-09"}, headers=ADMIN, timeout=60)

    answers: list = []
    callers = [threading.Thread(target=lambda: answers.append(close())) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    invoices, _, closed = _invoice_state(database_url)
    assert [n for _, _, n, _, _ in invoices] == [f"INV-2026-{n:06d}" for n in range(1, 5)]
    assert {i["number"] for a in answers for i in a.json()["periods"][0]["invoices"]} == {
        n for _, _, n, _, _ in invoices}  # both answers name the same four
    assert sorted(n for a in answers for n in a.json()["queued"]) == [
        n for _, _, n, _, _ in invoices]  # queued by one caller or the other, once
    assert _handed_off(record, runtime) == sorted(i for i, *_ in invoices)
    assert closed == [("2026-09", 4)]
    print("\ntwo closes of 2026-09 at once through the gateway: 4 invoices (not 8), "
          "numbered 1-4, 4 hand-offs to email-invoice")


# email-invoice: SMTP down for several retries, every invoice queued twice ---------------

def test_smtp_down_for_several_retries_then_up_each_invoice_arrives_once(
        local_runtime, product_stack, database_url, callbacks):
    """Three invoices, each handed to email-invoice twice at once through /async-function/
    (a re-queue racing the first hand-off) while the SMTP server is down; the queue retries
    until it is up: every invoice arrives exactly once."""
    port = free_port()  # nothing listens here yet
    rt = email_invoice_behind_gateway(local_runtime, product_stack, database_url,
                                      f"smtp://127.0.0.1:{port}", attempts=40, max_wait_s=0.4)
    ids = [finalized_invoice(database_url, namespace=f"tenant-{i}",
                             email=f"billing@tenant-{i}.example") for i in range(3)]
    for invoice_id in ids + ids:
        r = requests.post(f"{rt.gateway_url}/async-function/email-invoice.openfaas-system",
                          json={"invoice_id": invoice_id},
                          headers={"X-Callback-Url": callbacks.url})
        assert r.status_code == 202
    deadline = time.monotonic() + 30
    while min(refused := [(mail_row(database_url, i) or {"attempts": 0})["attempts"]
                          for i in ids]) < 3:
        assert time.monotonic() < deadline, f"send attempts after 30 s: {refused}"
        time.sleep(0.1)  # each invoice refused by the dead server at least three times
    handler = RecordingSmtp()
    controller = start_smtp(handler, port)
    try:
        results = [callbacks.received.get(timeout=60) for _ in range(6)]
    finally:
        controller.stop()
    assert sorted(h["X-Function-Status"] for h, _ in results) == ["200"] * 6
    assert sorted(json.loads(b)["status"] for _, b in results) == ["already-sent"] * 3 + [
        "sent"] * 3
    assert sorted(m.rcpt_tos[0] for m in handler.received) == [
        f"billing@tenant-{i}.example" for i in range(3)]  # one mail each
    attempts = [mail_row(database_url, i)["attempts"] for i in ids]
    assert all(invoice_row(database_url, i)["status"] == "sent" for i in ids)
    # at least three attempts each while SMTP was down (counted when claimed, so the
    # third may be the one that was claimed just before the server came up and sent)
    assert all(a >= 3 for a in attempts), attempts
    print(f"\nSMTP down, then up: 3 invoices queued twice each (6 calls), {attempts} send "
          f"attempts, {len(handler.received)} mails: each invoice once")


def test_email_invoice_killed_before_the_server_took_the_mail_sends_it_once(
        serve_function, database_url):
    """Killed while the SMTP server answers RCPT (claim committed, nothing accepted yet):
    retries are held off while the claim is fresh, then the invoice goes out once."""
    handler = RecordingSmtp()
    controller = start_smtp(handler, free_port())
    try:
        fn = serve_function("email-invoice", env={
            "DATABASE_URL": database_url, **MAIL_ENV,
            "SMTP_URL": f"smtp://127.0.0.1:{controller.port}"})
        invoice_id = finalized_invoice(database_url)
        handler.on_rcpt = lambda address: os.kill(fn.proc.pid, signal.SIGKILL)
        with pytest.raises(requests.ConnectionError):
            requests.post(fn.url, json={"invoice_id": invoice_id}, timeout=30)
        fn.proc.wait()
        handler.on_rcpt = None
        fn.start().wait_healthy()
        held = requests.post(fn.url, json={"invoice_id": invoice_id}, timeout=30)
        assert held.status_code == 503 and handler.received == []
        with psycopg.connect(database_url) as conn:  # SEND_CLAIM_TIMEOUT_SECONDS passes
            conn.execute("UPDATE openfaas_metering.mail_outbox SET next_attempt_at ="
                         " next_attempt_at - interval '1 hour' WHERE subject_id = %s",
                         (invoice_id,))
        r = requests.post(fn.url, json={"invoice_id": invoice_id}, timeout=30)
        assert r.status_code == 200 and r.json()["status"] == "sent", r.text
        again = requests.post(fn.url, json={"invoice_id": invoice_id}, timeout=30)
        assert again.json()["status"] == "already-sent"
        assert len(handler.received) == 1
        assert mail_row(database_url, invoice_id)["attempts"] == 2
    finally:
        controller.stop()
    print("\nemail-invoice killed at RCPT: 503 while its claim was fresh, then 1 mail "
          "(2 attempts), then already-sent")
