"""Outbound webhooks end to end: facts made by the real code, deliver-webhooks behind the
local gateway (or served twice at once), a real receiving HTTP server, and the
standardwebhooks library's own verifier on the receiving side."""
from __future__ import annotations

import json
import random
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import requests
from devstack.webhook_sink import WebhookSink
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from chargeback.billing import month_close
from chargeback.core import db
from chargeback.core.settings import ConfigError
from chargeback.usage import webhook as usage_webhook
from chargeback.webhooks import delivery, events, outbox, policy, signing

from .billing_helpers import NS, event, send, settings_for
from .conftest import ADMIN, WEBHOOK_SECRET
from .invoices import MAIL_ENV
from .webhook_receiver import SIGNING_SECRET, runtime_with, write_signing_secret

FAST_RETRIES = {"WEBHOOK_RETRY_BASE_SECONDS": "0.05", "WEBHOOK_TIMEOUT_SECONDS": "2"}


@pytest.fixture
def signed_secrets(secrets_dir):
    write_signing_secret(secrets_dir)
    return secrets_dir


def _function_env(database_url, secrets_dir, receiver_url, **extra):
    return {"DATABASE_URL": database_url, "SECRETS_DIR": str(secrets_dir),
            "WEBHOOK_URLS": receiver_url, **FAST_RETRIES, **extra}


def _drain(url: str, **kwargs) -> requests.Response:
    return requests.post(url, data=b"", timeout=60, **kwargs)


def _emit(settings, *typed_data) -> list[str]:
    with db.transaction(settings) as conn:
        return [outbox.emit(conn, t, d) for t, d in typed_data]


def test_every_billing_event_arrives_signed_and_the_standard_verifier_accepts_it(
        local_runtime, product_stack, database_url, signed_secrets, tmp_path, receiver, smtp):
    hook = receiver()
    settings = settings_for(database_url, tmp_path, SECRETS_DIR=str(signed_secrets))
    runtime = runtime_with(local_runtime, product_stack,
                           ["deliver-webhooks", "email-invoice", "receive-usage"],
                           _function_env(database_url, signed_secrets, hook.url,
                                         PRICEBOOK_FILE=settings.pricebook_file,
                                         SMTP_URL=smtp.url,
                                         **MAIL_ENV))
    # September's usage for two tenants; one has a billing address, the other none
    send(settings, [event("acme", "2026-09-10T10:00:00Z", 1000 * NS),
                    event("no-contact", "2026-09-11T10:00:00Z", 2000 * NS)])
    with db.transaction(settings) as conn:
        conn.execute("INSERT INTO openfaas_metering.tenants (namespace, email_override)"
                     " VALUES ('acme', 'billing@acme.example')")
    # the close finalizes both (invoice.finalized x2), wakes deliver-webhooks and hands
    # both invoices to email-invoice: acme's is sent, no-contact's undeliverable
    closing = settings_for(database_url, tmp_path, SECRETS_DIR=str(signed_secrets),
                           GATEWAY_URL=runtime.gateway_url)
    month_close.run(closing, month_close.Options(period="2026-09"),
                    datetime(2026, 10, 2, tzinfo=timezone.utc))
    # a signed metering delivery with one invalid event: usage.rejected (count, reasons)
    body = json.dumps([event("acme", "2026-10-01T10:00:00Z", 5 * NS),
                       {**event("acme", "2026-10-01T10:00:00Z", 5 * NS),
                        "duration": -1}]).encode()
    r = requests.post(f"{runtime.gateway_url}/function/receive-usage.openfaas-system",
                      data=body, timeout=30, headers={
                          usage_webhook.SIGNATURE_HEADER: usage_webhook.sign(
                              body, WEBHOOK_SECRET),
                          usage_webhook.DELIVERY_HEADER: "with-a-bad-event"})
    assert r.status_code == 200 and len(r.json()["rejected"]) == 1, r.text
    # a signed delivery whose body is unusable: kept in quarantine, and reported too
    garbage = b'{"not": "an array"'
    r = requests.post(f"{runtime.gateway_url}/function/receive-usage.openfaas-system",
                      data=garbage, timeout=30, headers={
                          usage_webhook.SIGNATURE_HEADER: usage_webhook.sign(
                              garbage, WEBHOOK_SECRET),
                          usage_webhook.DELIVERY_HEADER: "unusable"})
    assert r.status_code == 400, r.text
    # the documents branch's facts: their emit calls, as they will make them
    _emit(settings,
          ("credit_note.finalized", {"credit_note_id": str(uuid.uuid4()),
                                     "number": "CN-2026-000001", "tenant": "acme",
                                     "invoice_number": "INV-2026-000001",
                                     "total": "-1.00", "currency": "USD"}),
          ("invoice.voided", {"invoice_id": str(uuid.uuid4()), "tenant": "acme",
                              "number": "INV-2026-000002"}))
    wanted = {"invoice.finalized": 2, "invoice.sent": 1, "invoice.undeliverable": 1,
              "usage.rejected": 2, "credit_note.finalized": 1, "invoice.voided": 1}
    drain_url = f"{runtime.gateway_url}/function/deliver-webhooks.openfaas-system"

    def complete(hits):
        got = {}
        for h in hits:
            got[h.event["type"]] = got.get(h.event["type"], 0) + 1
        return got == wanted
    # the wake-ups deliver most of it; a drain as cron would call it, the rest
    hits = hook.wait_for(complete, poke=lambda: _drain(drain_url))
    verifier = Webhook(SIGNING_SECRET)
    for hit in hits:
        assert hit.headers["webhook-signature"].startswith("v1,")
        assert verifier.verify(hit.body, hit.headers) == hit.event  # raises if not
        assert set(hit.event) == {"type", "timestamp", "sequence", "data"}
    assert len({h.id for h in hits}) == len(hits)
    # order is not guaranteed; the sequence orders each tenant's events: a fresh
    # database numbers every tenant's (and the tenantless usage.rejected) 1, 2, 3, ...
    by_tenant: dict[str, list[int]] = {}
    for h in hits:
        by_tenant.setdefault(h.event["data"].get("tenant", ""), []).append(h.event["sequence"])
    assert {t: sorted(q) for t, q in by_tenant.items()} == {
        t: list(range(1, len(q) + 1)) for t, q in by_tenant.items()}
    by_type = {h.event["type"]: h.event["data"] for h in hits}
    sent = by_type["invoice.sent"]
    assert sent["tenant"] == "acme" and sent["currency"] == "USD"
    # 1000 GB-s at 0.001 USD + one invocation within the free allowance: 1.00
    assert sent["total"] == "1.00"
    assert by_type["invoice.undeliverable"]["tenant"] == "no-contact"
    assert "e-mail" in by_type["invoice.undeliverable"]["reason"]
    rejected = {h.event["data"]["delivery"]: h.event["data"] for h in hits
                if h.event["type"] == "usage.rejected"}
    bad_event = rejected["with-a-bad-event"]
    assert bad_event["count"] == 1 and bad_event["first"][0]["index"] == 1
    assert "duration" in bad_event["first"][0]["reason"]
    assert rejected["unusable"]["count"] is None and rejected["unusable"]["first"][0]["reason"]
    for secret in (WEBHOOK_SECRET, SIGNING_SECRET, database_url):  # no secret travels
        assert not any(secret in h.body.decode() for h in hits)


def test_a_tampered_body_or_an_old_timestamp_is_rejected_by_the_verifier():
    signer = signing.signer(SIGNING_SECRET)
    body = events.body("invoice.finalized", datetime(2026, 10, 1, tzinfo=timezone.utc), 1,
                       {"number": "INV-2026-000001", "total": "1.00"})
    now = datetime.now(timezone.utc)
    headers = signing.headers(signer, "evt_" + "0" * 32, now, body)
    verifier = Webhook(SIGNING_SECRET)
    verifier.verify(body, headers)
    with pytest.raises(WebhookVerificationError, match="signature"):
        verifier.verify(body.replace("1.00", "0.01"), headers)
    old = signing.headers(signer, "evt_" + "0" * 32, now - timedelta(minutes=10), body)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verifier.verify(body, old)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(body, headers)  # another key


def test_receiver_down_for_several_attempts_then_up_gets_each_event_once_with_one_id(
        local_runtime, product_stack, database_url, signed_secrets, tmp_path, receiver):
    hook = receiver(fail_first=5)  # 503 to the first five attempts, whichever event
    settings = settings_for(database_url, tmp_path, SECRETS_DIR=str(signed_secrets))
    runtime = runtime_with(local_runtime, product_stack, ["deliver-webhooks"],
                           _function_env(database_url, signed_secrets, hook.url))
    ids = _emit(settings, ("invoice.voided", {"number": "INV-1"}),
                ("invoice.voided", {"number": "INV-2"}))
    url = f"{runtime.gateway_url}/function/deliver-webhooks.openfaas-system"
    hook.wait_for(lambda hits: len(hits) >= 2, poke=lambda: _drain(url))
    for _ in range(3):  # more drains after delivery send nothing more
        assert _drain(url).json()["delivered"] == 0
    accepted = hook.accepted()
    assert sorted(h.id for h in accepted) == sorted(ids)  # each once
    attempts = {i: [h for h in hook.hits if h.id == i] for i in ids}
    assert sum(len(a) for a in attempts.values()) == 7  # 5 refused + 2 accepted
    for event_id, tries in attempts.items():  # every attempt: same id, same body
        assert {h.body for h in tries} == {tries[0].body}
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT status, attempts, last_status_code FROM "
                            "openfaas_metering.webhook_deliveries ORDER BY event_id").fetchall()
    assert [r[0] for r in rows] == ["delivered", "delivered"]
    assert sum(r[1] for r in rows) == 7 and {r[2] for r in rows} == {200}


def test_two_drainers_at_once_never_send_an_event_twice(
        serve_function, database_url, signed_secrets, tmp_path, receiver):
    hook = receiver(delay_s=0.05)
    settings = settings_for(database_url, tmp_path, SECRETS_DIR=str(signed_secrets))
    ids = _emit(settings, *[("invoice.voided", {"n": i}) for i in range(40)])
    env = _function_env(database_url, signed_secrets, hook.url)
    drainers = [serve_function("deliver-webhooks", env=env) for _ in range(2)]
    answers = []
    threads = [threading.Thread(target=lambda d=d: answers.append(_drain(d.url).json()))
               for d in drainers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(h.id for h in hook.hits) == sorted(ids)  # every one, none twice
    assert sum(a["delivered"] for a in answers) == 40
    assert all(a["delivered"] > 0 for a in answers), answers  # both took part


def test_a_slow_endpoint_times_out_without_holding_the_others(
        serve_function, database_url, signed_secrets, tmp_path, receiver):
    slow, quick = receiver(delay_s=3), receiver()
    settings = settings_for(database_url, tmp_path, SECRETS_DIR=str(signed_secrets))
    ids = _emit(settings, *[("invoice.voided", {"n": i}) for i in range(6)])
    fn = serve_function("deliver-webhooks", env=_function_env(
        database_url, signed_secrets, f"{slow.url},{quick.url}",
        WEBHOOK_TIMEOUT_SECONDS="0.3", WEBHOOK_CONCURRENCY="2",
        WEBHOOK_RETRY_BASE_SECONDS="600"))  # one attempt each in this drain
    answer = _drain(fn.url).json()
    assert sorted(h.id for h in quick.accepted()) == sorted(ids)
    assert answer["delivered"] == 6 and answer["retrying"] == 6
    with psycopg.connect(database_url) as conn:
        errors = {e for (e,) in conn.execute(
            "SELECT last_error FROM openfaas_metering.webhook_deliveries WHERE endpoint = %s",
            (slow.url,))}
    assert errors == {"no answer within 0.3 s (the whole attempt)"}


def test_the_local_sink_writes_each_webhook_with_its_headers_and_checks_the_signature(
        serve_function, database_url, signed_secrets, tmp_path):
    sink = WebhookSink(tmp_path / "webhooks", 0, SIGNING_SECRET).start()
    try:
        settings = settings_for(database_url, tmp_path, SECRETS_DIR=str(signed_secrets))
        [event_id] = _emit(settings, ("invoice.voided", {"number": "INV-7"}))
        fn = serve_function("deliver-webhooks", env=_function_env(
            database_url, signed_secrets, sink.url))
        assert _drain(fn.url).json()["delivered"] == 1
    finally:
        sink.stop()
    [path] = (tmp_path / "webhooks").glob("*.json")
    record = json.loads(path.read_text())
    assert event_id in path.name and record["signature"] == "valid"
    headers = {k.lower(): v for k, v in record["headers"].items()}
    assert headers["webhook-id"] == event_id and headers["webhook-signature"].startswith("v1,")
    assert json.loads(record["body"])["data"] == {"number": "INV-7"}


def test_after_the_retry_window_a_delivery_is_failed_listed_and_replayed_by_the_operator(
        serve_function, database_url, signed_secrets, tmp_path, receiver):
    hook = receiver(status=500)
    settings = settings_for(database_url, tmp_path, SECRETS_DIR=str(signed_secrets))
    [event_id] = _emit(settings, ("invoice.voided", {"number": "INV-9"}))
    fn = serve_function("deliver-webhooks", env=_function_env(
        database_url, signed_secrets, hook.url, WEBHOOK_RETRY_WINDOW_SECONDS="0.5"))
    for _ in range(200):  # retried every ~0.05-0.1 s until the 0.5 s window is over
        if _drain(fn.url).json()["failed"]:
            break
        time.sleep(0.05)
    assert requests.post(fn.url, json={"list": "failed"}, timeout=10).status_code == 401
    listed = requests.post(fn.url, json={"list": "failed"}, headers=ADMIN, timeout=10).json()
    [row] = listed["deliveries"]
    assert row["event_id"] == event_id and row["type"] == "invoice.voided"
    assert row["last_status_code"] == 500 and row["attempts"] >= 2
    assert _drain(fn.url).json()["delivered"] == 0  # failed stays failed
    hook.status = 200
    replayed = requests.post(fn.url, json={"replay": "failed"}, headers=ADMIN, timeout=30)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["drained"]["delivered"] == 1
    assert [h.id for h in hook.accepted()] == [event_id]  # the same webhook-id
    assert requests.post(fn.url, json={"replay": "evt_" + "f" * 32}, headers=ADMIN,
                         timeout=10).status_code == 404


def test_a_plain_http_endpoint_off_this_machine_is_refused_at_start(
        serve_function, database_url, signed_secrets, tmp_path):
    fn = serve_function("deliver-webhooks", env={
        "DATABASE_URL": database_url, "SECRETS_DIR": str(signed_secrets),
        "WEBHOOK_URLS": "https://hooks.example.com/in,http://crm.example.com/hook"},
        healthy=False)
    reason = ("misconfigured: WEBHOOK_URLS: 'http://crm.example.com/hook': plain http is "
              "allowed to the loopback interface only (127.0.0.1, ::1, localhost); use https://")
    assert requests.get(f"{fn.url}/_/health", timeout=10).status_code == 503
    r = _drain(fn.url)
    assert (r.status_code, r.json()) == (503, {"error": reason})
    log = (tmp_path / "deliver-webhooks.log").read_text()
    assert log.count(f"{reason} (/_/health and every call answer 503") == 1


def test_without_a_signing_secret_it_says_so_at_start_and_sends_nothing(
        serve_function, database_url, secrets_dir, tmp_path, receiver):
    hook = receiver()
    (secrets_dir / "webhook-signing-secret").unlink()
    fn = serve_function("deliver-webhooks", env=_function_env(
        database_url, secrets_dir, hook.url), healthy=False)
    reason = ("misconfigured: no webhook signing secret: create the webhook-signing-secret "
              "secret (whsec_ followed by base64 of at least 24 random bytes)")
    health = requests.get(f"{fn.url}/_/health", timeout=10)
    assert (health.status_code, health.json()) == (503, {"error": reason})
    r = _drain(fn.url)
    assert (r.status_code, r.json()) == (503, {"error": reason})
    assert hook.accepted() == []
    assert reason in (tmp_path / "deliver-webhooks.log").read_text()


def test_endpoints_allow_https_and_loopback_only():
    assert policy.endpoints(("https://a.example/x", "http://127.0.0.1:9/x", "http://[::1]/",
                             "http://localhost:8/", "https://a.example/x")) == (
        "https://a.example/x", "http://127.0.0.1:9/x", "http://[::1]/", "http://localhost:8/")
    for bad in ("http://10.0.0.1/x", "ftp://a.example/", "https://u:p@a.example/",
                "https://a.example:x/"):
        with pytest.raises(ConfigError, match="WEBHOOK_URLS"):
            policy.endpoints((bad,))


def test_retries_back_off_exponentially_with_jitter_and_stop_after_the_window():
    rng = random.Random(7)
    # base 5 s: the n-th wait lies in [5 * 2^(n-1) / 2, 5 * 2^(n-1)), capped at 3 h
    for n, ceiling in ((1, 5), (2, 10), (5, 80), (20, 3 * 3600)):
        waits = [policy.retry_delay_s(n, 5.0, rng) for _ in range(50)]
        assert all(ceiling / 2 <= w < ceiling for w in waits) and len(set(waits)) == 50
    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    assert policy.next_attempt(start, 1, start, 5.0, 86400, rng) is not None
    assert policy.next_attempt(start + timedelta(hours=24), 9, start, 5.0, 86400, rng) is None


def test_a_signing_secret_not_in_the_standard_format_is_refused():
    for bad, reason in ((None, "no webhook signing secret"), ("abc", "expected whsec_"),
                        ("whsec_!!", "not base64"), ("whsec_QUJD", "at least 24")):
        with pytest.raises(ConfigError, match=reason):
            signing.signer(bad)


def test_deliver_webhooks_and_evaluate_budgets_run_every_minute(product_stack):
    for name in ("deliver-webhooks", "evaluate-budgets"):
        fn = product_stack.functions[name]
        assert fn.schedule == "* * * * *" and fn.namespace == "openfaas-system", name
    assert product_stack.functions["deliver-webhooks"].environment["WEBHOOK_URLS"] == ""
    assert "webhook-signing-secret" in product_stack.functions["deliver-webhooks"].secrets


@pytest.fixture
def silent_gateway():
    """A socket that accepts connections (the kernel's backlog) and never answers."""
    import socket
    listener = socket.create_server(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_a_gateway_that_never_answers_does_not_hold_receive_usage_and_the_event_waits(
        serve_function, database_url, secrets_dir, silent_gateway):
    # (a name that does not resolve fails at once on this machine's resolver, so it
    # proves nothing here; a socket that never answers holds any synchronous call)
    fn = serve_function("receive-usage", env={"DATABASE_URL": database_url,
                                              "SECRETS_DIR": str(secrets_dir),
                                              "GATEWAY_URL": silent_gateway})

    def deliver(delivery_id, events):
        body = json.dumps(events).encode()
        started = time.monotonic()
        r = requests.post(fn.url, data=body, timeout=30, headers={
            usage_webhook.SIGNATURE_HEADER: usage_webhook.sign(body, WEBHOOK_SECRET),
            usage_webhook.DELIVERY_HEADER: delivery_id})
        assert r.status_code == 200, r.text
        return time.monotonic() - started, r.json()

    good = event("acme", "2026-10-01T10:00:00Z", 5 * NS)
    deliver("warm-up", [good])  # the pool's first connection is not what is measured
    # two deliveries with a rejected event each: each wakes deliver-webhooks through a
    # gateway that cannot answer (the waking call waits 2 s), yet answers at once
    for n in range(2):
        elapsed_s, answer = deliver(f"bad-{n}", [good, {**good, "duration": -1}])
        assert len(answer["rejected"]) == 1
        assert elapsed_s < 1, f"receive-usage answered after {elapsed_s:.2f} s"
    # the facts wait in the outbox for the minute's drain
    with psycopg.connect(database_url) as conn:
        waiting = conn.execute("""SELECT data->>'delivery' FROM openfaas_metering.webhook_events
                                   WHERE type = 'usage.rejected' AND fanned_out_at IS NULL
                                   ORDER BY 1""").fetchall()
    assert waiting == [("bad-0",), ("bad-1",)]


def test_events_past_their_retention_are_pruned_once_none_of_theirs_is_pending(
        serve_function, database_url, signed_secrets, tmp_path, receiver):
    hook = receiver()
    settings = settings_for(database_url, tmp_path, SECRETS_DIR=str(signed_secrets))
    delivered, pending, never_fanned, recent = _emit(
        settings, *[("invoice.voided", {"n": i}) for i in range(4)])
    with db.transaction(settings) as conn:
        conn.execute("""UPDATE openfaas_metering.webhook_events SET fanned_out_at = now()
                         WHERE event_id = ANY(%s)""", ([delivered, pending, recent],))
        conn.execute(
            """INSERT INTO openfaas_metering.webhook_deliveries
                   (event_id, endpoint, status, next_attempt_at, delivered_at)
               VALUES (%(d)s, %(url)s, 'delivered', now(), now()),
                      (%(p)s, %(url)s, 'pending', now() + interval '1 day', NULL),
                      (%(r)s, %(url)s, 'delivered', now(), now())""",
            {"d": delivered, "p": pending, "r": recent, "url": hook.url})
        # 31 days old, past the 30 days kept by default
        conn.execute("""UPDATE openfaas_metering.webhook_events
                           SET created_at = created_at - interval '31 days'
                         WHERE event_id = ANY(%s)""", ([delivered, pending, never_fanned],))
    fn = serve_function("deliver-webhooks", env=_function_env(
        database_url, signed_secrets, hook.url))
    answer = _drain(fn.url).json()
    # the one never fanned out is kept and delivered now that there is an endpoint
    assert answer["pruned"] == 1 and answer["delivered"] == 1, answer
    with db.transaction(settings) as conn:
        kept = {e for (e,) in conn.execute(
            "SELECT event_id FROM openfaas_metering.webhook_events WHERE event_id = ANY(%s)",
            ([delivered, pending, never_fanned, recent],))}
        deliveries = {e for (e,) in conn.execute(
            "SELECT event_id FROM openfaas_metering.webhook_deliveries")}
    assert kept == {pending, never_fanned, recent}
    assert deliveries == {pending, never_fanned, recent}
    assert [h.id for h in hook.hits] == [never_fanned]


def test_a_retry_more_than_five_minutes_after_the_event_is_signed_at_the_attempt_and_verifies(
        database_url, signed_secrets, tmp_path, receiver):
    # Standard Webhooks verifiers refuse a webhook-timestamp more than 5 minutes from
    # their clock. An event made 10 minutes ago whose first attempt failed is retried
    # now: signed with the attempt's time it verifies; signed with the event's
    # created_at it would be refused as too old by every receiver, on every retry.
    hook = receiver(fail_first=1)
    settings = settings_for(database_url, tmp_path, SECRETS_DIR=str(signed_secrets),
                            WEBHOOK_URLS=hook.url, **FAST_RETRIES)
    [event_id] = _emit(settings, ("invoice.voided", {"number": "INV-2026-000003"}))
    with db.transaction(settings) as conn:
        conn.execute("UPDATE openfaas_metering.webhook_events"
                     " SET created_at = created_at - interval '10 minutes'"
                     " WHERE event_id = %s", (event_id,))
    # drained as cron would: the first attempt is refused (503), a retry delivers it
    hook.wait_for(lambda accepted: accepted, poke=lambda: delivery.drain(settings))
    refused, retry = hook.hits
    assert refused.answered == 503 and retry.answered == 200 and retry.id == event_id
    assert Webhook(SIGNING_SECRET).verify(retry.body, retry.headers) == retry.event
    signed_at = int(retry.headers["webhook-timestamp"])
    happened_at = datetime.fromisoformat(retry.event["timestamp"]).timestamp()
    assert signed_at - happened_at > 5 * 60  # the body still says when it happened
    assert abs(signed_at - time.time()) < 60
