"""Payment reminders: at REMINDER_DAYS after the due date, one mail per document and
step in the tenant's language with what is open and the invoice attached again, sent
by the one exactly-once mail outbox, never for a document settled before it goes out
(real PostgreSQL, a real SMTP server)."""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from chargeback.billing import adjustments, payment_requests, payment_store
from chargeback.core import db
from chargeback.core.responses import RequestError
from chargeback.core.settings import ConfigError, load
from chargeback.documents import reminder
from chargeback.portal import month, page
from chargeback.portal import store as portal_store

from .billing_helpers import NS, Recorder, close, event, on_plan, send, settings_for
from .corrections_helpers import BOOK, OCT_2
from .invoices import mail_row


@pytest.mark.parametrize("raw, days", [("7,21", (7, 21)), (" 3 , 10 ,30", (3, 10, 30)),
                                       ("", ())])
def test_reminder_days_are_whole_days_after_the_due_date_strictly_increasing(raw, days):
    assert load({"REMINDER_DAYS": raw}).reminder_days == days
    assert load({}).reminder_days == (7, 21)


@pytest.mark.parametrize("raw", ["21,7", "7,7", "0,7", "-7", "7d", "7.5", "٣"])
def test_a_bad_reminder_days_setting_names_the_variable(raw):
    with pytest.raises(ConfigError, match=r"^REMINDER_DAYS=.*expected increasing whole days"):
        load({"REMINDER_DAYS": raw}).reminder_days


def _month(database_url, tmp_path, smtp, locale="de_DE", email="ap@acme.example"):
    """September closed for acme (11.90 EUR, the euro plan), its billing contact set;
    (settings, number, due date)."""
    s = settings_for(database_url, tmp_path, book=BOOK, GATEWAY_URL="http://127.0.0.1:9",
                     SMTP_URL=smtp.url, MAIL_FROM="Billing <billing@example.com>",
                     SMTP_TIMEOUT_SECONDS="5")
    on_plan(s, "acme", "euro")
    with db.transaction(s) as conn:
        conn.execute("""UPDATE openfaas_metering.tenants
                           SET email_override = %s, locale_override = %s,
                               display_name_override = 'Acme'
                         WHERE namespace = 'acme'""", (email, locale))
    send(s, [event("acme", "2026-09-10T10:00:00Z", 10_000 * NS)])
    [invoice] = close(s, OCT_2)["periods"][0]["invoices"]
    with db.transaction(s) as conn:
        due = conn.execute("SELECT due_date FROM openfaas_metering.invoices WHERE number = %s",
                           (invoice["number"],)).fetchone()[0]
    return s, invoice["number"], due


def _day(due, days_after: int, hour: int = 12) -> datetime:
    """An instant `days_after` days after the due date (UTC is the billing time zone)."""
    return datetime(due.year, due.month, due.day, hour, tzinfo=timezone.utc) + timedelta(
        days=days_after)


def _pay(s, number, amount, reference, now):
    body = json.dumps({"payment": {"invoice": number, "amount": amount,
                                   "date": now.date().isoformat(), "reference": reference}})
    return payment_requests.apply(s, *payment_requests.parse(body.encode()), now)


def _reminders(s):
    with db.transaction(s) as conn:
        return conn.execute("""SELECT days_after_due, status, open_amount, reason
                                 FROM openfaas_metering.payment_reminders
                                ORDER BY days_after_due""").fetchall()


def _events(s):
    with db.transaction(s) as conn:
        return [data for (data,) in conn.execute(
            """SELECT data FROM openfaas_metering.webhook_events
                WHERE type = 'invoice.reminder_sent' ORDER BY created_at""")]


def test_a_reminder_goes_out_once_per_step_with_what_is_open_in_the_tenants_language(
        database_url, tmp_path, smtp):
    s, number, due = _month(database_url, tmp_path, smtp)
    _pay(s, number, "5.00", "TX-1", _day(due, 1))      # 11.90 - 5.00 = 6.90 open
    assert close(s, _day(due, 6))["reminders"] == 0     # 6 days late: no step yet
    assert close(s, _day(due, 7))["reminders"] == 1     # the 7-day step
    assert close(s, _day(due, 8))["reminders"] == 0     # a re-run writes it once
    assert reminder.send_due(s).body["sent"] == 1
    assert reminder.send_due(s).body["sent"] == 0       # sent once
    [mail] = smtp.received
    msg = mail.message
    assert mail.rcpt_tos == ["ap@acme.example"]
    # German: "Zahlungserinnerung: Rechnung <number>, 6,90 € offen"
    assert msg["Subject"] == f"Zahlungserinnerung: Rechnung {number}, 6,90\xa0€ offen"
    text = msg.get_body(("plain",)).get_content()
    assert f"{due.day}. " in text and "6,90\xa0€" in text and "Guten Tag Acme," in text
    assert "11,90\xa0€" in text and "5,00\xa0€" in text   # total, and what was settled
    [pdf] = [p for p in msg.iter_attachments()]
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_content().startswith(b"%PDF") and number in pdf.get_filename()
    assert msg["Message-ID"].startswith("<reminder-")
    # 22 days late: the 21-day step, once
    assert close(s, _day(due, 22))["reminders"] == 1
    assert close(s, _day(due, 23))["reminders"] == 0
    assert reminder.send_due(s).body["sent"] == 1
    assert len(smtp.received) == 2
    assert smtp.received[0].message["Message-ID"] != smtp.received[1].message["Message-ID"]
    assert _reminders(s) == [(7, "sent", Decimal("6.90"), None),
                             (21, "sent", Decimal("6.90"), None)]
    sent = _events(s)
    assert [(e["number"], e["days_after_due"], e["open"]) for e in sent] == [
        (number, 7, "6.90"), (number, 21, "6.90")]


def test_the_portal_shows_when_an_invoice_was_reminded(database_url, tmp_path, smtp):
    s, number, due = _month(database_url, tmp_path, smtp, locale="en")
    close(s, _day(due, 7))

    def shown():
        with db.transaction(s) as conn:
            [doc] = [d for d in portal_store.documents(conn, "acme") if d.number == number]
        view = month.document_view(doc, "/invoices")
        return view, page.render_invoice_page("Acme", "en", [view])
    view, html = shown()
    assert view["reminded_at"] is None and "reminded" not in html   # decided, not sent
    reminder.send_due(s)
    view, html = shown()
    with db.transaction(s) as conn:
        sent_at = conn.execute("SELECT sent_at FROM openfaas_metering.payment_reminders"
                               ).fetchone()[0]
    assert view["reminded_at"] == sent_at
    assert f"reminded {sent_at:%b} {sent_at.day}, {sent_at.year}" in html   # "medium", en


def test_a_late_run_sends_only_the_latest_step_reached(database_url, tmp_path, smtp):
    s, number, due = _month(database_url, tmp_path, smtp, locale="en")
    assert close(s, _day(due, 30))["reminders"] == 1    # 30 days late: 21, not 7 and 21
    assert close(s, _day(due, 31))["reminders"] == 0
    assert [r[0] for r in _reminders(s)] == [21]
    reminder.send_due(s)
    [mail] = smtp.received
    # English, the source language: 11.90 open, nothing settled
    assert mail.message["Subject"] == f"Payment reminder: invoice {number}, €11.90 open"
    assert "settled" not in mail.message.get_body(("plain",)).get_content()


def test_a_payment_recorded_a_second_before_the_run_stops_the_reminder(
        database_url, tmp_path, smtp):
    s, number, due = _month(database_url, tmp_path, smtp)
    run_at = _day(due, 7)
    _pay(s, number, "11.90", "TX-1", run_at - timedelta(seconds=1))
    assert close(s, run_at)["reminders"] == 0
    # the operator's run for this tenant derives its standings whatever they are
    assert close(s, run_at, tenant="acme")["reminders"] == 0
    assert _reminders(s) == [] and reminder.send_due(s).body["sent"] == 0
    assert smtp.received == []


def _payment_held_open(s, number, when, started: threading.Event, release: threading.Event):
    """Record a full payment in a transaction that stays open until `release`."""
    def run():
        with db.transaction(s) as conn:
            payment_store.record(conn, payment_store.PaymentRequest(
                number, Decimal("11.90"), when.date(), "TX-race"), "operator", when)
            started.set()
            release.wait(10)
    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(10)
    return thread


def test_a_payment_being_recorded_while_the_run_decides_stops_the_reminder(
        database_url, tmp_path, smtp):
    s, number, due = _month(database_url, tmp_path, smtp)
    run_at = _day(due, 7)
    started, release = threading.Event(), threading.Event()
    paying = _payment_held_open(s, number, run_at, started, release)
    answers = []
    closing = threading.Thread(target=lambda: answers.append(close(s, run_at)))
    closing.start()
    time.sleep(0.5)
    assert closing.is_alive()              # the run waits for the tenant's payment lock
    release.set()
    paying.join(10)
    closing.join(20)
    assert answers[0]["reminders"] == 0 and _reminders(s) == []
    assert reminder.send_due(s).body["sent"] == 0 and smtp.received == []


def test_a_payment_recorded_between_enqueue_and_send_withdraws_the_mail(
        database_url, tmp_path, smtp):
    s, number, due = _month(database_url, tmp_path, smtp)
    assert close(s, _day(due, 7))["reminders"] == 1
    _pay(s, number, "11.90", "TX-1", _day(due, 7, hour=13))
    assert reminder.send_due(s).body == {"status": "reminders", "sent": 0,
                                         "undeliverable": 0, "retrying": 0, "withdrawn": 1}
    assert smtp.received == []
    [(days, status, _, reason)] = _reminders(s)
    assert (days, status) == (7, "withdrawn") and f"{number} is paid" in reason
    row = mail_row(database_url, f"{_invoice_id(s, number)}/7", "reminder")
    assert row["status"] == "withdrawn"
    assert close(s, _day(due, 8))["reminders"] == 0 and _events(s) == []


def test_a_payment_in_flight_when_the_mail_is_claimed_withdraws_it(
        database_url, tmp_path, smtp):
    s, number, due = _month(database_url, tmp_path, smtp)
    assert close(s, _day(due, 7))["reminders"] == 1
    started, release = threading.Event(), threading.Event()
    paying = _payment_held_open(s, number, _day(due, 7, hour=13), started, release)
    outcomes = []
    sending = threading.Thread(target=lambda: outcomes.append(reminder.send_due(s)))
    sending.start()
    time.sleep(0.5)
    assert sending.is_alive()              # the claim waits for the tenant's payment lock
    release.set()
    paying.join(10)
    sending.join(20)
    assert outcomes[0].body["withdrawn"] == 1 and smtp.received == []


def test_no_reminder_for_a_voided_or_fully_credited_invoice(database_url, tmp_path, smtp):
    s, number, due = _month(database_url, tmp_path, smtp)
    adjustments.apply(s, adjustments.parse(json.dumps(
        {"void": number, "reason": "order_change"}).encode()), Recorder())
    assert close(s, _day(due, 7))["reminders"] == 0
    assert close(s, _day(due, 7), tenant="acme")["reminders"] == 0 and _reminders(s) == []


def test_a_credit_note_leaves_the_reminder_only_what_is_still_open(
        database_url, tmp_path, smtp):
    s, number, due = _month(database_url, tmp_path, smtp, locale="en")
    # line 1 credited 5.00: 5.00 + 19 % = 5.95; 11.90 - 5.95 = 5.95 open
    adjustments.apply(s, adjustments.parse(json.dumps(
        {"credit": number, "lines": [{"line": 1, "amount": "5.00"}],
         "reason": "product_unsatisfactory"}).encode()), Recorder())
    assert close(s, _day(due, 7))["reminders"] == 1
    reminder.send_due(s)
    [mail] = smtp.received
    assert mail.message["Subject"] == f"Payment reminder: invoice {number}, €5.95 open"


def _invoice_id(s, number):
    with db.transaction(s) as conn:
        return conn.execute("SELECT invoice_id FROM openfaas_metering.invoices "
                            "WHERE number = %s", (number,)).fetchone()[0]


@pytest.mark.parametrize("body, asked", [
    (b'{"reminders": "due"}', True), (b'{"invoice_id": "x"}', False), (b"", False)])
def test_email_invoice_sends_reminders_only_when_asked_for_the_due_ones(body, asked):
    assert reminder.asked(body) is asked


@pytest.mark.parametrize("body", [b'{"reminders": "all"}',
                                  b'{"reminders": "due", "invoice_id": "x"}'])
def test_a_request_naming_reminders_otherwise_is_refused_naming_the_field(body):
    with pytest.raises(RequestError, match=r"^reminders: expected"):
        reminder.asked(body)


def test_a_reminder_to_a_tenant_without_an_address_is_undeliverable_once(
        database_url, tmp_path, smtp):
    s, number, due = _month(database_url, tmp_path, smtp, locale="en", email=None)
    close(s, _day(due, 7))
    assert reminder.send_due(s).body["undeliverable"] == 1
    assert reminder.send_due(s).body["undeliverable"] == 0
    [(days, status, _, reason)] = _reminders(s)
    assert (days, status) == (7, "undeliverable") and "no billing e-mail address" in reason
    assert smtp.received == [] and _events(s) == []
