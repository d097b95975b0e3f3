"""Writing a mail's row into the mail outbox (mail.outbox sends it): all a capability
needs to decide a mail in its own transaction, without the SMTP side that sends it (so
a function that only decides mails, like aggregate-month's reminders, reads no SMTP
setting)."""
from __future__ import annotations

import psycopg

_ENQUEUE = """
INSERT INTO openfaas_metering.mail_outbox (kind, subject_id, namespace)
VALUES (%(kind)s, %(subject_id)s, %(namespace)s)
ON CONFLICT DO NOTHING"""


def enqueue(conn: psycopg.Connection, kind: str, subject_id: str, namespace: str) -> None:
    """The mail about `subject_id`, in the caller's transaction; once per subject."""
    conn.execute(_ENQUEUE, {"kind": kind, "subject_id": subject_id, "namespace": namespace})
