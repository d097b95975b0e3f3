"""Budgets: crossings priced by the month close's code, each fired once per tenant,
threshold and month (a mail in the tenant's locale and a webhook), through the local
gateway and across restarts."""
from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
import requests
from standardwebhooks import Webhook

from chargeback.budgets import evaluate
from chargeback.budgets.thresholds import FORECAST, THRESHOLD, Crossing, Fired, decide
from chargeback.capacity import holdings
from chargeback.capacity import store as capacity_store
from chargeback.core import db
from chargeback.usage import webhook as usage_webhook

from .billing_helpers import NS, event, send, settings_for
from .budgets_helpers import NOW
from .budgets_helpers import budget_tenant as _tenant
from .conftest import WEBHOOK_SECRET
from .invoices import MAIL_ENV
from .webhook_receiver import SIGNING_SECRET, Receiver, runtime_with, write_signing_secret

D = Decimal
T = (50, 80, 100)


# -- which crossings fire: pure ------------------------------------------------------

def test_one_jump_past_every_threshold_fires_each_once_and_no_forecast():
    fire, rearm = decide(D("10"), D("10.00"), D("300"), T, [])
    assert fire == [Crossing(THRESHOLD, t, D("10.00")) for t in T] and rearm == []
    fired = [Fired(THRESHOLD, t, D("10")) for t in T]
    assert decide(D("10"), D("12.00"), D("400"), T, fired) == ([], [])


def test_the_forecast_fires_once_while_the_month_is_still_under_budget():
    fire, _ = decide(D("100"), D("20"), D("100"), T, [])  # projected exactly the budget
    assert fire == [Crossing(FORECAST, 100, D("100"))]
    assert decide(D("100"), D("30"), D("150"), T, [Fired(FORECAST, 100, D("100"))]) == ([], [])
    assert decide(D("100"), D("20"), D("99.99"), T, []) == ([], [])


def test_a_raised_budget_never_rearms_the_months_forecast():
    # the forecast fired at a budget of 100 (projected 120 while 40 was spent); the
    # budget is raised to 200 and the projection grows to 250: still the month's one
    # forecast, which is never re-armed (only thresholds are)
    fired = [Fired(FORECAST, 100, D("100"))]
    assert decide(D("200"), D("40"), D("250"), T, fired) == ([], [])


def test_a_raised_budget_rearms_the_thresholds_above_the_new_level_only():
    fired = [Fired(THRESHOLD, 50, D("100")), Fired(THRESHOLD, 80, D("100"))]
    # spent 85; raised to 150: 50 % of 150 = 75 still reached, 80 % = 120 no longer
    fire, rearm = decide(D("150"), D("85"), None, T, fired)
    assert fire == [] and rearm == [Fired(THRESHOLD, 80, D("100"))]


def test_a_lowered_budget_fires_what_it_now_crosses_once():
    fired = [Fired(THRESHOLD, 50, D("100"))]
    # spent 60; lowered to 70: 80 % = 56 crossed now, 100 % = 70 not; 50 % already fired
    fire, rearm = decide(D("70"), D("60"), None, T, fired)
    assert fire == [Crossing(THRESHOLD, 80, D("60"))] and rearm == []


# -- the annotation and the override ------------------------------------------------

def test_the_budget_annotation_is_read_with_the_other_tenant_details(database_url, tmp_path):
    warnings: list[str] = []
    namespaces = [{"metadata": {"name": n, "annotations": {"openfaas": "1", **a}}}
                  for n, a in (("acme", {"chargeback/budget": "500.00"}),
                               ("zero", {"chargeback/budget": "0"}),
                               ("bad", {"chargeback/budget": "lots"}))]
    tenants = {t.namespace: t for t in holdings.tenants_from_namespaces(
        namespaces, holdings.Rules(), warnings)}
    assert tenants["acme"].budget == D("500.00")
    assert tenants["zero"].budget is None and tenants["bad"].budget is None
    assert warnings == ["namespace bad: annotation chargeback/budget='lots' is not an amount "
                        "such as 500.00: ignored"]
    s = settings_for(database_url, tmp_path)
    reading = holdings.Reading(tuple(tenants.values()), (), 0, 0, ())
    with db.transaction(s) as conn:
        capacity_store.record_tick(conn, datetime(2026, 9, 1, tzinfo=timezone.utc), reading, 60)
        conn.execute("UPDATE openfaas_metering.tenants SET budget_override = 20 "
                     "WHERE namespace = 'bad'")
        got = dict(conn.execute(evaluate._BUDGETS).fetchall())
    assert got == {"acme": D("500.00"), "bad": D("20")}


# -- end to end -----------------------------------------------------------------------

@pytest.fixture
def hook():
    receiver = Receiver()
    yield receiver
    receiver.stop()


def _usage_body(namespace: str, gb_seconds: int, now: datetime) -> bytes:
    """One event of `gb_seconds` (1 GiB for that many seconds) started a minute ago."""
    started = (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps([{"event": "function_usage", "namespace": namespace,
                        "function_name": "fn", "started": started,
                        "duration": gb_seconds * NS, "memory_bytes": 2**30}]).encode()


# the in-process evaluations run at NOW, two days in: the forecast needs two days here
FORECAST_ENV = {"BUDGET_FORECAST_MIN_DAYS": "2"}


def _spend(settings, gb_seconds: int):
    """`gb_seconds` on 2 September: at 0.001 USD per GB-s, gb_seconds / 1000 USD."""
    send(settings, [event("acme", "2026-09-02T10:00:00Z", gb_seconds * NS,
                          function_name=f"fn-{uuid.uuid4().hex[:8]}")])


def test_a_budget_crossed_by_one_delivery_fires_one_mail_and_one_webhook_per_threshold(
        local_runtime, product_stack, database_url, secrets_dir, tmp_path, smtp, hook):
    write_signing_secret(secrets_dir)
    s = settings_for(database_url, tmp_path, SECRETS_DIR=str(secrets_dir))
    _tenant(s, "acme", "10.00", locale="de")
    env = {"DATABASE_URL": database_url, "SECRETS_DIR": str(secrets_dir),
           "PRICEBOOK_FILE": s.pricebook_file, "SMTP_URL": smtp.url, "WEBHOOK_URLS": hook.url,
           **MAIL_ENV}
    names = ["receive-usage", "evaluate-budgets", "deliver-webhooks"]
    runtime = runtime_with(local_runtime, product_stack, names, env)
    now = datetime.now(timezone.utc)
    # 10,000 GB-s at 0.001 USD (the test price book's standard plan) = 10.00 USD, one
    # invocation within the free allowance: exactly the budget, so 50, 80 and 100 % at once
    body = _usage_body("acme", 10_000, now)
    r = requests.post(f"{runtime.gateway_url}/function/receive-usage.openfaas-system",
                      data=body, timeout=30, headers={
                          usage_webhook.SIGNATURE_HEADER: usage_webhook.sign(body,
                                                                             WEBHOOK_SECRET)})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    evaluate_url = f"{runtime.gateway_url}/function/evaluate-budgets.openfaas-system"
    first = requests.post(evaluate_url, data=b"", timeout=60).json()  # as cron calls it
    assert first["crossed"] == 3 and first["mails"] == {"sent": 3, "undeliverable": 0,
                                                        "retrying": 0}, first
    assert "acme" not in json.dumps(first)  # a cron answer names no tenant
    hits = hook.wait_for(lambda h: len(h) == 3)  # the wake-up delivered them
    verifier = Webhook(SIGNING_SECRET)
    crossed = sorted((verifier.verify(h.body, h.headers) for h in hits),
                     key=lambda e: e["data"]["threshold_percent"])
    assert [e["type"] for e in crossed] == ["budget.threshold_crossed"] * 3
    assert [e["data"]["threshold_percent"] for e in crossed] == [50, 80, 100]
    assert {(e["data"]["tenant"], e["data"]["budget"], e["data"]["month_to_date"],
             e["data"]["currency"]) for e in crossed} == {("acme", "10.00", "10.00", "USD")}
    mails = [m.message for m in smtp.received]
    assert [m["To"] for m in mails] == ["ACME GmbH <billing@acme.example>"] * 3
    # German, as the tenant's locale says; amounts formatted for it
    assert sorted(m["Subject"].split(" hat ")[1].split(" des")[0] for m in mails) == [
        "100\xa0%", "50\xa0%", "80\xa0%"]  # babel's German percent: a no-break space
    assert all("10,00" in m.get_content() for m in mails)
    assert len({m["Message-ID"] for m in mails}) == 3

    # a restart of everything, then the next minutes' evaluations: nothing more
    runtime.stop()
    runtime = runtime_with(local_runtime, product_stack, names, env)
    evaluate_url = f"{runtime.gateway_url}/function/evaluate-budgets.openfaas-system"
    for _ in range(2):
        again = requests.post(evaluate_url, data=b"", timeout=60).json()
        assert again["crossed"] == 0 and again["mails"]["sent"] == 0, again
    requests.post(f"{runtime.gateway_url}/function/deliver-webhooks.openfaas-system",
                  data=b"", timeout=60)
    assert len(hook.hits) == 3 and len(smtp.received) == 3


def test_concurrent_evaluations_fire_each_crossing_once(database_url, tmp_path, smtp):
    s = settings_for(database_url, tmp_path, SMTP_URL=smtp.url, **MAIL_ENV, **FORECAST_ENV)
    _tenant(s, "acme", "10.00")
    _spend(s, 8_000)  # 8.00 USD: 80 %, projected 120.00
    outs, barrier = [], threading.Barrier(4)

    def run():
        barrier.wait()
        outs.append(evaluate.evaluate(s, NOW))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(o.get("crossed", 0) for o in outs) == 3  # 50 %, 80 % and the forecast
    assert evaluate.evaluate(s, NOW)["crossed"] == 0
    assert len(smtp.received) == 3


def test_a_raised_budget_rearms_and_a_lowered_one_fires_what_it_now_crosses(
        database_url, tmp_path, smtp):
    s = settings_for(database_url, tmp_path, SMTP_URL=smtp.url, **MAIL_ENV, **FORECAST_ENV)
    _tenant(s, "acme", "10.00")
    _spend(s, 6_000)  # 6.00 USD: 50 % of 10 crossed, projected 90.00

    def crossings():
        with psycopg.connect(database_url) as conn:
            return conn.execute("""SELECT threshold_percent, arming, budget, rearmed_at IS NULL
                                     FROM openfaas_metering.budget_crossings
                                    WHERE kind = 'threshold'
                                    ORDER BY threshold_percent, arming""").fetchall()

    def budget(amount):
        with psycopg.connect(database_url) as conn:
            conn.execute("UPDATE openfaas_metering.tenants SET budget_override = %s", (amount,))

    assert evaluate.evaluate(s, NOW)["crossed"] == 2  # and the forecast, which never re-arms
    budget("20.00")  # 6.00 is 30 % of 20: the 50 % crossing is re-armed
    out = evaluate.evaluate(s, NOW)
    assert (out["crossed"], out["rearmed"]) == (0, 1)
    _spend(s, 5_000)  # 11.00 USD: 55 % of 20
    assert evaluate.evaluate(s, NOW)["crossed"] == 1
    budget("12.00")  # 11.00 is 91.7 % of 12: 80 % fires; 50 % stays fired
    assert evaluate.evaluate(s, NOW)["crossed"] == 1
    assert evaluate.evaluate(s, NOW)["crossed"] == 0
    assert crossings() == [(50, 1, D("10.00"), False), (50, 2, D("20.00"), True),
                           (80, 1, D("12.00"), True)]
    assert len(smtp.received) == 4
