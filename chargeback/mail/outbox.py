"""Exactly-once mail for every kind of mail (invoices, budget alerts, and what comes
next): one row of mail_outbox per mail, claimed, sent and recorded here.

A kind (MailKind) says how to read the row its mail is about, how to write
the message, and what that row learns when the mail is sent or bounces; the
machinery is the same for all:

1. Enqueue: `enqueue` writes the mail's row (kind, subject_id) in the
   transaction of the fact (a crossing), or when it is first asked for (an
   invoice handed to email-invoice). ON CONFLICT DO NOTHING: once per subject.
2. Claim: one committed UPDATE takes a due pending row, counts the attempt,
   writes a fresh claim_token and moves next_attempt_at to the end of the
   lease (SEND_CLAIM_TIMEOUT_SECONDS). The subject is read in the same
   transaction. Concurrent senders take different rows (SKIP LOCKED), and a
   row whose holder died is due again when its lease ends. A kind whose
   `load` answers Withdrawn (the mail is no longer wanted: a reminder of a
   document paid since) has the row withdrawn in that same transaction, and
   nothing is sent.
3. Send, with a Message-ID derived from the subject: the same on every attempt.
4. Record, with the kind's own change in the same transaction:
   - the server answered 250 to the message: sent, whoever holds the claim
     now (a fact, not a decision; whatever the server says after that, QUIT
     included, changes nothing);
   - a 5xx, or a message that cannot be written (no address, a line break in
     a header): undeliverable with the reason;
   - a 4xx, a refused or dropped connection before the message was sent: this
     mail only is tried again after its own backoff (MAIL_RETRY_BASE_SECONDS,
     doubling, jitter); the MAIL_MAX_ATTEMPTS-th such failure makes it
     undeliverable with the last reason;
   - the connection failed after the message was transmitted, before its
     answer (SmtpUncertain), or the database failed after sending began: the
     claim is kept until its lease ends, so the server that may have the mail
     does not get it again within seconds; after the lease the same message
     (same Message-ID) goes again, and receivers can drop the duplicate. That
     window, at most one lease per such failure, is what SMTP cannot close.
   The three decisions (undeliverable, retry, keep) require the claim_token;
   a sender whose lease ran out changes nothing but a sent.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message
from typing import Any, Callable

import psycopg
from psycopg.rows import class_row

from chargeback.core import backoff, db
from chargeback.core.settings import ConfigError, Settings
from chargeback.mail import smtp as mailer
from chargeback.mail import enqueue as enqueuing
from chargeback.mail.mime import Undeliverable


MAX_RETRY_DELAY_S = 4 * 3600.0

# the next due mail of a kind (oldest due first), or exactly the one asked for
_CLAIM = """
UPDATE openfaas_metering.mail_outbox AS m
   SET attempts = m.attempts + 1, claim_token = gen_random_uuid(),
       claimed_at = clock_timestamp(),
       next_attempt_at = clock_timestamp() + make_interval(secs => %(lease_s)s)
 WHERE (m.kind, m.subject_id) = (
       SELECT kind, subject_id FROM openfaas_metering.mail_outbox
        WHERE kind = %(kind)s AND status = 'pending' AND next_attempt_at <= clock_timestamp()
          AND (%(subject_id)s::text IS NULL OR subject_id = %(subject_id)s)
        ORDER BY next_attempt_at LIMIT 1
          FOR UPDATE SKIP LOCKED)
RETURNING m.subject_id, m.claim_token, m.attempts"""

_WITHDRAW = """
UPDATE openfaas_metering.mail_outbox
   SET status = 'withdrawn', last_error = %(reason)s, claim_token = NULL
 WHERE kind = %(kind)s AND subject_id = %(subject_id)s AND status = 'pending'"""

_STATE = """
SELECT status, attempts, next_attempt_at, claim_token IS NOT NULL AS claimed, claimed_at,
       sent_at, message_id, last_error, undeliverable_reason
  FROM openfaas_metering.mail_outbox WHERE kind = %s AND subject_id = %s"""

_SENT = """
UPDATE openfaas_metering.mail_outbox
   SET status = 'sent', sent_at = now(), message_id = %(message_id)s, claim_token = NULL,
       last_error = %(note)s
 WHERE kind = %(kind)s AND subject_id = %(subject_id)s AND status = 'pending'"""

_UNDELIVERABLE = """
UPDATE openfaas_metering.mail_outbox
   SET status = 'undeliverable', undeliverable_reason = %(reason)s, last_error = %(reason)s,
       claim_token = NULL
 WHERE kind = %(kind)s AND subject_id = %(subject_id)s AND status = 'pending'
   AND claim_token = %(token)s"""

_RETRY = """
UPDATE openfaas_metering.mail_outbox
   SET claim_token = NULL, last_error = %(reason)s,
       next_attempt_at = now() + make_interval(secs => %(delay_s)s),
       attempts = attempts - %(uncounted)s
 WHERE kind = %(kind)s AND subject_id = %(subject_id)s AND status = 'pending'
   AND claim_token = %(token)s
RETURNING next_attempt_at"""

# the claim and its lease stay: the server may have the message
_KEEP = """
UPDATE openfaas_metering.mail_outbox SET last_error = %(reason)s
 WHERE kind = %(kind)s AND subject_id = %(subject_id)s AND status = 'pending'
   AND claim_token = %(token)s
RETURNING next_attempt_at"""


enqueue = enqueuing.enqueue  # step 1, kept apart for functions that only decide mails


@dataclass(frozen=True)
class Composed:
    """One mail as it goes out: the message and its envelope."""
    message: Message
    sender: str
    recipients: tuple[str, ...]  # the customer first, then archive copies


@dataclass(frozen=True)
class Withdrawn:
    """What `load` answers for a mail no longer wanted; `subject` is what
    `on_withdrawn` learns it from."""
    reason: str
    subject: Any = None


@dataclass(frozen=True)
class MailKind:
    """What differs between kinds of mail. `load` reads the subject in the claim's
    transaction (None: it no longer exists; Withdrawn: it is not to be sent);
    `compose` writes the message (pure, may raise Undeliverable);
    `on_sent(conn, subject, message_id, note)`, `on_undeliverable(conn, subject,
    reason)` and `on_withdrawn(conn, subject, reason)` update the subject's own row
    in the transaction that records the outcome."""
    name: str
    load: Callable[[psycopg.Connection, Settings, str], Any]
    compose: Callable[[Any, Settings], Composed]
    on_sent: Callable[[psycopg.Connection, Any, str, str | None], None]
    on_undeliverable: Callable[[psycopg.Connection, Any, str], None]
    on_withdrawn: Callable[[psycopg.Connection, Any, str], None] | None = None


@dataclass(frozen=True)
class State:
    status: str
    attempts: int
    next_attempt_at: datetime
    claimed: bool  # an attempt holds it until next_attempt_at
    claimed_at: datetime | None
    sent_at: datetime | None
    message_id: str | None
    last_error: str | None
    undeliverable_reason: str | None


@dataclass(frozen=True)
class Claim:
    subject_id: str
    token: Any
    attempt: int
    subject: Any


@dataclass(frozen=True)
class Result:
    """sent | undeliverable | retrying (next_attempt_at) | held (the claim is kept until
    next_attempt_at) | misconfigured (the operator must act; not counted) | withdrawn
    (not sent: the kind no longer wanted it when it was claimed)."""
    status: str
    subject: Any
    reason: str | None = None
    message_id: str | None = None
    next_attempt_at: datetime | None = None
    notes: dict[str, str] = field(default_factory=dict)  # archive copies refused
    server_unreachable: bool = False  # no connection at all: every mail would fail alike
    recipients: tuple[str, ...] = ()  # of a sent mail

    def retry_after_s(self) -> int:
        if self.next_attempt_at is None:
            return 1
        left = (self.next_attempt_at - datetime.now(timezone.utc)).total_seconds()
        return max(1, math.ceil(left))


def state(conn: psycopg.Connection, kind: str, subject_id: str) -> State | None:
    with conn.cursor(row_factory=class_row(State)) as cur:
        return cur.execute(_STATE, (kind, subject_id)).fetchone()


def claim(settings: Settings, kind: MailKind, subject_id: str | None = None) -> Claim | None:
    """The next due mail of `kind` (or the one about `subject_id`, if due), claimed."""
    with db.transaction(settings) as conn:
        row = conn.execute(_CLAIM, {"kind": kind.name, "subject_id": subject_id,
                                    "lease_s": settings.send_claim_timeout_s}).fetchone()
        if row is None:
            return None
        subject = kind.load(conn, settings, row[0])
        if isinstance(subject, Withdrawn):  # decided in the claim's own transaction
            conn.execute(_WITHDRAW, {"kind": kind.name, "subject_id": row[0],
                                     "reason": subject.reason})
            if kind.on_withdrawn:
                kind.on_withdrawn(conn, subject.subject, subject.reason)
        return Claim(row[0], row[1], row[2], subject)


def attempt(settings: Settings, kind: MailKind, claimed: Claim,
            server: mailer.SmtpServer) -> Result:
    """Compose, send and record one claimed mail (see the module)."""
    if isinstance(claimed.subject, Withdrawn):
        return Result("withdrawn", claimed.subject.subject, claimed.subject.reason)
    keys = {"kind": kind.name, "subject_id": claimed.subject_id, "token": claimed.token}
    try:
        composed = kind.compose(claimed.subject, settings)
        notes = mailer.send(server, composed.message, composed.sender, composed.recipients,
                            settings.smtp_ca_file)
    except (Undeliverable, mailer.SmtpRejected) as exc:
        return _undeliverable(settings, kind, claimed, keys, str(exc))
    except mailer.SmtpTransient as exc:
        if claimed.attempt >= settings.mail_max_attempts:
            return _undeliverable(settings, kind, claimed, keys,
                                  f"gave up after {claimed.attempt} attempts; the last: {exc}")
        delay_s = backoff.delay_s(claimed.attempt, settings.mail_retry_base_s,
                                  MAX_RETRY_DELAY_S)
        retrying = _retry(settings, claimed, keys, str(exc), delay_s, counted=True)
        return dataclasses.replace(retrying, server_unreachable=not exc.reached)
    except mailer.SmtpUncertain as exc:
        reason = f"{exc}; not sent again before the claim's lease ends"
        with db.transaction(settings) as conn:
            row = conn.execute(_KEEP, {**keys, "reason": reason}).fetchone()
        return Result("held", claimed.subject, reason,
                      next_attempt_at=row[0] if row else None)
    except (mailer.SmtpMisconfigured, ConfigError) as exc:
        # the operator must act; the mail is not to blame, so the attempt is not counted
        return _retry(settings, claimed, keys, str(exc), settings.mail_retry_base_s,
                      counted=False, status="misconfigured")
    except Exception as exc:  # a bug before anything was sent: free the mail, then fail
        _retry(settings, claimed, keys, db.one_line(exc), settings.mail_retry_base_s,
               counted=False)
        raise
    # sent: a database failure from here on leaves the claim until its lease ends
    message_id = composed.message["Message-ID"]
    note = "; ".join(f"archive copy to {a} refused: {r}" for a, r in notes.items()) or None
    with db.transaction(settings) as conn:
        if conn.execute(_SENT, {"kind": kind.name, "subject_id": claimed.subject_id,
                                "message_id": message_id, "note": note}).rowcount:
            kind.on_sent(conn, claimed.subject, message_id, note)
    return Result("sent", claimed.subject, message_id=message_id, notes=notes,
                  recipients=composed.recipients)


def _undeliverable(settings: Settings, kind: MailKind, claimed: Claim, keys: dict,
                   reason: str) -> Result:
    with db.transaction(settings) as conn:
        if conn.execute(_UNDELIVERABLE, {**keys, "reason": reason}).rowcount:
            kind.on_undeliverable(conn, claimed.subject, reason)
    return Result("undeliverable", claimed.subject, reason)


def _retry(settings: Settings, claimed: Claim, keys: dict, reason: str, delay_s: float,
           counted: bool, status: str = "retrying") -> Result:
    with db.transaction(settings) as conn:
        row = conn.execute(_RETRY, {**keys, "reason": reason, "delay_s": delay_s,
                                    "uncounted": 0 if counted else 1}).fetchone()
    return Result(status, claimed.subject, reason, next_attempt_at=row[0] if row else None)


def send_due(settings: Settings, kind: MailKind, budget_s: float) -> dict[str, int]:
    """Send every due mail of `kind` for up to `budget_s` seconds; counts by outcome.

    One mail's trouble is that mail's: it waits for its own next attempt while
    the others go. Only a server that cannot be reached at all (or is
    misconfigured) ends the run, since every other mail would meet it too."""
    counts = {"sent": 0, "undeliverable": 0, "retrying": 0}  # and "withdrawn" when any
    stop_at = time.monotonic() + budget_s
    server = None
    while time.monotonic() < stop_at:
        if server is None:
            server = mailer.parse_url(settings.smtp_url, settings.smtp_timeout_s)
        claimed = claim(settings, kind)
        if claimed is None:
            break
        result = attempt(settings, kind, claimed, server)
        key = result.status if result.status in (*counts, "withdrawn") else "retrying"
        counts[key] = counts.get(key, 0) + 1
        if result.status == "misconfigured" or (
                result.status == "retrying" and result.server_unreachable):
            break
    return counts

