"""email-invoice end to end: the template's server, real PostgreSQL, a real aiosmtpd
server that receives and parses the mail; the async fan-out through the local gateway."""
from __future__ import annotations

import dataclasses
import email
import io
import os
import re
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from email.header import decode_header, make_header

import psycopg
import pytest
import requests
from devstack.pg import free_port
from pypdf import PdfReader

from chargeback.core.settings import load
from chargeback.documents.rendered import rerender

from .invoices import (
    HOSTILE_NAME,
    MAIL_ENV,
    RecordingSmtp,
    email_invoice_behind_gateway,
    finalized_invoice,
    invoice_row,
    mail_row,
    start_smtp,
)

# attachment names: <supplier>-<period>-<number> (the sample invoices' supplier and month)
STEM = "examplefunctions-2026-09-"


@pytest.fixture
def emailer(serve_function, database_url, smtp):
    def start(**env):
        return serve_function("email-invoice", env={
            "DATABASE_URL": database_url, "SMTP_URL": smtp.url, **MAIL_ENV, **env})
    return start


def send(fn, invoice_id):
    return requests.post(fn.url, json={"invoice_id": invoice_id}, timeout=30)


def parts(message):
    """{content type or file name: bytes} of a received invoice mail."""
    found = {}
    for part in message.walk():
        if part.is_multipart():
            continue
        key = part.get_filename() or part.get_content_type()
        found[key] = part.get_payload(decode=True)
    return found


def test_the_invoice_arrives_once_with_both_alternatives_and_every_attachment(
        emailer, smtp, database_url):
    invoice_id = finalized_invoice(database_url)
    r = send(emailer(), invoice_id)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "sent"
    [mail] = smtp.received
    assert mail.rcpt_tos == ["billing@acme.example"] and mail.mail_from == "billing@example.com"
    msg = mail.message
    number = invoice_row(database_url, invoice_id)["number"]
    # RFC 2047 decoding as mail clients do it (the stdlib's new parser adds a space
    # between adjacent encoded words of different encodings)
    raw_to = email.message_from_bytes(mail.data).get("To")
    assert str(make_header(decode_header(raw_to))) == f"{HOSTILE_NAME} <billing@acme.example>"
    assert msg["Reply-To"] == "accounts@example.com"
    assert number in msg["Subject"] and "€279.83" in msg["Subject"]
    row = invoice_row(database_url, invoice_id)
    assert (row["status"], row["message_id"], mail_row(database_url, invoice_id)["claim_token"]
            ) == ("sent", msg["Message-ID"].strip(), None)
    assert msg["Message-ID"].strip() == f"<invoice-{invoice_id}@example.com>"
    found = parts(msg)
    assert set(found) == {"text/plain", "text/html", f"{STEM}{number}.pdf",
                          f"{STEM}{number}-lines.csv", f"{STEM}{number}-factur-x.xml",
                          f"{STEM}{number}-usage.csv"}
    # aggregate-month's export: the adjustment's quantity, billed for August
    assert found[f"{STEM}{number}-usage.csv"].decode().splitlines()[0].startswith(
        "line_no,kind,meter")
    assert [p.get_content_type() for p in msg.iter_parts()][0] == "multipart/alternative"


# What the customer should read for finalized_invoice()'s lines, worked out by hand from
# each line's quantity and price (lines are rounded to cents, then added):
BY_HAND = [
    ("Platform fee, plan pro", "49.00"),         # 1 month x 49.00
    ("Function usage", "12.35"),                 # (1,234,567.89 - 400,000 included) GB-s
                                                 #   x 0.0000148 = 12.3516
    ("Invocations", "0.50"),                     # 2,500,000 x 0.0000002
    ("GPU hours, NVIDIA-A10G (spot)", "172.80"),  # 720 h x 0.60 = 432.00, less 60 % = 259.20
    ("Late usage: function resize-images", "0.50"),  # 30,000 GB-s x 0.0000166667 = 0.500001
]
SUBTOTAL_BY_HAND = Decimal("235.15")             # 49.00 + 12.35 + 0.50 + 172.80 + 0.50
TAX_BY_HAND = Decimal("44.68")                   # 19 % of 235.15 = 44.6785
TOTAL_BY_HAND = Decimal("279.83")                # 235.15 + 44.68


def test_the_mail_shows_each_line_and_the_totals_its_prices_give(emailer, smtp, database_url):
    invoice_id = finalized_invoice(database_url)
    assert send(emailer(), invoice_id).status_code == 200
    found = parts(smtp.received[0].message)
    number = invoice_row(database_url, invoice_id)["number"]
    text = found["text/plain"].decode().replace("\r\n", "\n")
    # the plain-text table: one block per line, in order, its amount at the right; then
    # the totals
    *blocks, totals = text.split("-" * 72)
    assert len(blocks) == len(BY_HAND)
    for block, (description, amount) in zip(blocks, BY_HAND):
        assert description in block, block
        assert re.search(rf"€{re.escape(amount)}$", block, re.MULTILINE), (amount, block)
    assert "discount 60%: −€259.20" in blocks[3]
    pdf_text = "".join(page.extract_text() for page in
                       PdfReader(io.BytesIO(found[f"{STEM}{number}.pdf"])).pages)
    for shown in (text, found["text/html"].decode(), pdf_text):
        for figure in (SUBTOTAL_BY_HAND, TAX_BY_HAND, TOTAL_BY_HAND):
            assert f"€{figure:,}" in shown
        assert "Tax 19%" in shown and "adjustment for August 2026" in shown
    csv_rows = found[f"{STEM}{number}-lines.csv"].decode().splitlines()[1:]
    amounts = [line.rsplit(",", 3)[1] for line in csv_rows]
    # the five lines, then the closing subtotal, tax and total rows
    assert amounts == [amount for _, amount in BY_HAND] + [
        str(SUBTOTAL_BY_HAND), str(TAX_BY_HAND), str(TOTAL_BY_HAND)]


def test_a_tenants_script_is_escaped_and_a_rerender_gives_the_bytes_that_were_sent(
        emailer, smtp, database_url):
    invoice_id = finalized_invoice(database_url)
    assert send(emailer(), invoice_id).status_code == 200
    found = parts(smtp.received[0].message)
    html = found["text/html"].decode()
    assert "<script>" not in html
    assert "Zoë &amp; Søn &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Łódź" in html
    # Re-render from the database (as an auditor would) and compare with the mail.
    settings = dataclasses.replace(load({**os.environ, **MAIL_ENV}), database_url=database_url)
    again = rerender(settings, invoice_id)
    number = invoice_row(database_url, invoice_id)["number"]
    assert again.pdf == found[f"{STEM}{number}.pdf"]
    assert again.html.encode() == found["text/html"].replace(b"\r\n", b"\n")
    assert [a.data for a in again.attachments] == [
        found[f"{STEM}{number}{suffix}"] for suffix in (".pdf", "-lines.csv", "-factur-x.xml", "-usage.csv")]


def test_a_repeated_request_answers_already_sent_and_sends_nothing(emailer, smtp, database_url):
    fn = emailer()
    invoice_id = finalized_invoice(database_url)
    first = send(fn, invoice_id).json()
    again = send(fn, invoice_id)
    assert again.status_code == 200
    assert again.json()["status"] == "already-sent"
    assert again.json()["message_id"] == first["message_id"]
    assert len(smtp.received) == 1


def test_concurrent_requests_send_one_mail(emailer, smtp, database_url):
    fn = emailer()
    invoice_id = finalized_invoice(database_url)
    in_data, release = threading.Event(), threading.Event()

    def hold(_record):  # keep the first sender inside DATA while the others ask
        in_data.set()
        release.wait(30)
    smtp.on_data = hold
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(send, fn, invoice_id)
        assert in_data.wait(30)
        others = [pool.submit(send, fn, invoice_id) for _ in range(3)]
        others = [f.result() for f in others]
        release.set()
        first = first.result()
    assert first.status_code == 200 and first.json()["status"] == "sent"
    assert [r.status_code for r in others] == [503, 503, 503]
    assert all("being sent by another request" in r.json()["error"] for r in others)
    assert others[0].headers["Retry-After"]
    assert len(smtp.received) == 1
    assert send(fn, invoice_id).json()["status"] == "already-sent"


def test_smtp_down_then_up_is_a_503_then_one_mail_through_the_async_queue(
        local_runtime, product_stack, database_url, callbacks):
    port = free_port()  # nothing listens here yet
    rt = email_invoice_behind_gateway(local_runtime, product_stack, database_url,
                                      f"smtp://127.0.0.1:{port}", attempts=30, max_wait_s=0.5)
    invoice_id = finalized_invoice(database_url)
    direct = requests.post(f"{rt.gateway_url}/function/email-invoice.openfaas-system",
                           json={"invoice_id": invoice_id}, timeout=30)
    assert direct.status_code == 503 and "SMTP unavailable" in direct.json()["error"]
    mail = mail_row(database_url, invoice_id)
    assert invoice_row(database_url, invoice_id)["status"] == "finalized"
    assert mail["claim_token"] is None  # claim released, for its own backoff
    assert "Connection refused" in mail["last_error"]
    queued = requests.post(f"{rt.gateway_url}/async-function/email-invoice.openfaas-system",
                           json={"invoice_id": invoice_id},
                           headers={"X-Callback-Url": callbacks.url})
    assert queued.status_code == 202
    handler = RecordingSmtp()
    controller = start_smtp(handler, port)
    try:
        headers, body = callbacks.received.get(timeout=60)
    finally:
        controller.stop()
    assert headers["X-Function-Status"] == "200", body
    assert len(handler.received) == 1
    assert invoice_row(database_url, invoice_id)["status"] == "sent"
    assert mail_row(database_url, invoice_id)["attempts"] >= 2


def test_a_permanently_refused_recipient_makes_the_invoice_undeliverable_without_retry(
        emailer, smtp, database_url):
    smtp.refuse["gone@acme.example"] = "550 5.1.1 mailbox unavailable"
    fn = emailer()
    invoice_id = finalized_invoice(database_url, email="gone@acme.example")
    r = send(fn, invoice_id)
    assert r.status_code == 200
    assert r.json()["status"] == "undeliverable"
    assert "550 5.1.1 mailbox unavailable" in r.json()["reason"]
    again = send(fn, invoice_id)
    assert (again.status_code, again.json()["status"]) == (200, "undeliverable")
    assert smtp.rcpt_attempts == 1 and smtp.received == []
    row = invoice_row(database_url, invoice_id)
    assert row["status"] == "undeliverable" and "550" in row["undeliverable_reason"]


def test_a_temporarily_refused_recipient_is_retried_later(emailer, smtp, database_url):
    smtp.refuse["busy@acme.example"] = "451 4.2.1 mailbox busy, try later"
    invoice_id = finalized_invoice(database_url, email="busy@acme.example")
    r = send(emailer(), invoice_id)
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert invoice_row(database_url, invoice_id)["status"] == "finalized"


def test_without_an_address_the_invoice_is_undeliverable(emailer, smtp, database_url):
    invoice_id = finalized_invoice(database_url, email=None, tenant_email=None)
    r = send(emailer(), invoice_id)
    assert r.status_code == 200 and r.json()["status"] == "undeliverable"
    assert "has no billing e-mail address" in r.json()["reason"]
    assert smtp.rcpt_attempts == 0


def test_the_tenants_current_address_is_used_when_the_invoice_froze_none(
        emailer, smtp, database_url):
    invoice_id = finalized_invoice(database_url, email=None, tenant_email="new@acme.example")
    assert send(emailer(), invoice_id).json()["status"] == "sent"
    assert smtp.received[0].rcpt_tos == ["new@acme.example"]


def test_a_line_break_in_the_display_name_is_refused_and_nothing_is_sent(
        emailer, smtp, database_url):
    invoice_id = finalized_invoice(database_url, name="Mallory\r\nBcc: victim@example.net")
    r = send(emailer(), invoice_id)
    assert r.status_code == 200 and r.json()["status"] == "undeliverable"
    assert "line break" in r.json()["reason"]
    assert smtp.rcpt_attempts == 0 and smtp.received == []


def test_the_archive_bcc_gets_a_copy_the_customer_does_not_see(emailer, smtp, database_url):
    invoice_id = finalized_invoice(database_url)
    assert send(emailer(MAIL_BCC="archive@example.com"), invoice_id).status_code == 200
    [mail] = smtp.received
    assert mail.rcpt_tos == ["billing@acme.example", "archive@example.com"]
    assert "archive@example.com" not in mail.data.decode()


@pytest.mark.parametrize("body, reason", [
    (b"", "body: expected JSON"), (b"[1]", "invoice_id: expected a UUID"),
    (b'{"invoice_id": "42"}', "invoice_id: expected a UUID"),
    (b'{"invoice": "x"}', "invoice_id: expected a UUID")])
def test_a_body_without_a_valid_invoice_id_is_400(emailer, body, reason):
    r = requests.post(emailer().url, data=body, timeout=30)
    assert r.status_code == 400 and reason in r.json()["error"]


def test_an_unknown_invoice_is_404_and_a_draft_is_409(emailer, smtp, database_url):
    fn = emailer()
    r = send(fn, "6f1c2a8e-0000-4000-8000-000000000000")
    assert r.status_code == 404 and "no invoice" in r.json()["error"]
    draft = finalized_invoice(database_url, status="draft")
    r = send(fn, draft)
    assert r.status_code == 409 and "draft" in r.json()["error"]
    assert smtp.received == []


def test_a_crash_after_the_server_accepted_resends_with_the_same_message_id(
        emailer, smtp, database_url):
    """The process dies after the SMTP server took the mail, before sent was recorded.
    The claim stays until it is stale; then the retry sends the same message again,
    with the same Message-ID, so the receiver can drop the duplicate."""
    fn = emailer()
    invoice_id = finalized_invoice(database_url)
    smtp.on_data = lambda record: os.kill(fn.proc.pid, signal.SIGKILL)
    with pytest.raises(requests.ConnectionError):
        send(fn, invoice_id)
    fn.proc.wait()
    smtp.on_data = None
    assert len(smtp.received) == 1
    assert mail_row(database_url, invoice_id)["claim_token"] is not None
    fn.start().wait_healthy()
    held = send(fn, invoice_id)  # the claim is fresh: nobody may send yet
    assert held.status_code == 503 and len(smtp.received) == 1
    with psycopg.connect(database_url) as conn:  # the claim timeout passes
        conn.execute("UPDATE openfaas_metering.mail_outbox"
                     "   SET next_attempt_at = next_attempt_at - interval '1 hour'"
                     " WHERE subject_id = %s", (invoice_id,))
    r = send(fn, invoice_id)
    assert r.status_code == 200 and r.json()["status"] == "sent"
    first, second = (mail.message for mail in smtp.received)
    assert first["Message-ID"] == second["Message-ID"]
    assert first["Message-ID"].strip() == r.json()["message_id"]
    row = invoice_row(database_url, invoice_id)
    assert row["message_id"] == r.json()["message_id"]
    assert mail_row(database_url, invoice_id)["attempts"] == 2


def _refused_with(fn, database_url, reason: str) -> str:
    """/_/health and a hand-off of a finalized invoice both answer 503 with `reason` (the
    queue retries the hand-off); the invoice's id."""
    health = requests.get(f"{fn.url}/_/health", timeout=10)
    assert (health.status_code, health.json()) == (503, {"error": reason})
    invoice_id = finalized_invoice(database_url)
    r = send(fn, invoice_id)
    assert (r.status_code, r.json()) == (503, {"error": reason})
    return invoice_id


def test_without_an_smtp_server_configured_it_says_so_at_start_and_nothing_is_claimed(
        serve_function, database_url, tmp_path):
    fn = serve_function("email-invoice", env={"DATABASE_URL": database_url,
                                              "SECRETS_DIR": str(tmp_path)}, healthy=False)
    invoice_id = _refused_with(fn, database_url, "misconfigured: no SMTP server configured: "
                               "create the smtp-url secret or set SMTP_URL")
    assert invoice_row(database_url, invoice_id)["status"] == "finalized"
    assert mail_row(database_url, invoice_id) is None  # not even asked for


def test_with_portal_url_and_no_signing_key_it_says_so_at_start_in_its_log_and_health(
        serve_function, database_url, smtp, tmp_path):
    """PORTAL_URL puts a signed hosted link in every mail: without portal-signing-key
    email-invoice cannot sign one, so it refuses at start (it used to answer 500 to every
    retry with an empty log)."""
    fn = serve_function("email-invoice", env={
        "DATABASE_URL": database_url, "SMTP_URL": smtp.url, **MAIL_ENV,
        "SECRETS_DIR": str(tmp_path), "PORTAL_URL": "https://billing.example.com/portal"},
        healthy=False)
    reason = ("misconfigured: secret portal-signing-key is missing: portal tokens can be "
              "neither issued nor checked")
    _refused_with(fn, database_url, reason)
    assert smtp.received == []
    log = (tmp_path / "email-invoice.log").read_text()
    assert log.count(f"{reason} (/_/health and every call answer 503") == 1  # once, at start
    assert f"503 POST /: {reason}" in log  # and the refused call, with its path
