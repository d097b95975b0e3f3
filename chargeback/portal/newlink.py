""""Send me a new link": a fresh portal link mailed to the billing address on file.

The asker types nothing: the expired (but well-signed) token the page was opened
with names the tenant, and the link goes only to the address the operator keeps
for that tenant, so asking reveals nothing and sends nothing anywhere else. At
most one mail per tenant every RESEND_MINUTES, across replicas (one conditional
upsert); the answer is the same page whether a mail went, was held back, or no
address is on file.

The mail goes through the shared exactly-once outbox (chargeback.mail.outbox, kind
"portal-link"): the request that may send it writes its outbox row in the transaction
that records the request, then sends what is due of this kind within SEND_BUDGET_S
(its own mail, and any earlier one waiting for a retry). Each retry carries the same
Message-ID; a mail to no address on file is recorded undeliverable, not sent.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import getaddresses
from urllib.parse import parse_qs

from psycopg.rows import class_row

from chargeback.core import db, tokens
from chargeback.core.responses import RequestError
from chargeback.core.settings import ConfigError, Settings
from chargeback.mail import outbox, smtp
from chargeback.mail.mime import Undeliverable
from chargeback.portal import origin, refusals
from chargeback.portal.origin import Origin

log = logging.getLogger("chargeback.portal")
RESEND_MINUTES = 10
LINK_DAYS = 30  # capped by PORTAL_TOKEN_MAX_DAYS

_CLAIM = """
INSERT INTO openfaas_metering.portal_link_requests AS r (namespace, last_sent_at)
VALUES (%(tenant)s, now())
ON CONFLICT (namespace) DO UPDATE SET last_sent_at = now(), sent_count = r.sent_count + 1
 WHERE r.last_sent_at < now() - make_interval(mins => %(minutes)s)
RETURNING namespace, sent_count"""

SEND_BUDGET_S = 3.0

_ADDRESS = """
SELECT %(subject_id)s AS subject_id, %(tenant)s AS tenant,
       coalesce(email_override, email) AS email,
       coalesce(display_name_override, display_name, %(tenant)s) AS name
  FROM openfaas_metering.tenants WHERE namespace = %(tenant)s"""


@dataclass(frozen=True)
class LinkMail:
    """One "new link" mail: subject_id = <namespace>/<request count>."""
    subject_id: str
    tenant: str
    email: str | None
    name: str


def request(settings: Settings, portal: Origin, body: bytes, now: datetime) -> dict:
    """POST /new-link (form field `token`): maybe mail a link; always the same page."""
    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
    token = (form.get("token") or [""])[0]
    tenant = tokens.signed_tenant(tokens.signing_key(), token) if token else None
    if tenant is None:
        raise RequestError(400, "token: the form carries the link that expired; "
                                "open the link from your e-mail again")
    with db.transaction(settings) as conn:
        claimed = conn.execute(_CLAIM, {"tenant": tenant, "minutes": RESEND_MINUTES}).fetchone()
        if claimed:
            outbox.enqueue(conn, LINK_MAIL.name, f"{tenant}/{claimed[1]}", tenant)
    if claimed:
        try:
            outbox.send_due(settings, LINK_MAIL, SEND_BUDGET_S)
        except (smtp.SmtpMisconfigured, ConfigError) as exc:  # the outbox keeps the mail
            log.warning("new portal link for %s not sent yet: %s", tenant, exc)
    return refusals.link_sent(settings, tenant)


def _load(conn, settings: Settings, subject_id: str) -> LinkMail | None:
    tenant = subject_id.rpartition("/")[0]
    with conn.cursor(row_factory=class_row(LinkMail)) as cur:
        return cur.execute(_ADDRESS, {"subject_id": subject_id, "tenant": tenant}).fetchone()


def _compose(m: LinkMail | None, settings: Settings) -> outbox.Composed:
    """The mail, with a link issued now (a retry carries a fresh one, same Message-ID)."""
    if m is None or not m.email:
        raise Undeliverable("no billing address on file")
    days = min(LINK_DAYS, settings.portal_token_max_days)
    now = datetime.now(timezone.utc)
    link = tokens.page_url(origin.parse(settings.portal_url).url,
                           tokens.issue(tokens.signing_key(), m.tenant, now,
                                        timedelta(days=days)))
    sender = getaddresses([settings.mail_from])[0][1]
    msg = EmailMessage()
    try:
        msg["From"] = settings.mail_from
        msg["To"] = m.email
        msg["Subject"] = "Your billing portal link"
        msg["Message-ID"] = (f"<portal-link.{m.subject_id.replace('/', '.')}"
                             f"@{sender.rpartition('@')[2] or 'chargeback.invalid'}>")
    except (ValueError, IndexError) as exc:  # a line break or an unusable address
        raise Undeliverable(f"cannot address the mail: {exc}") from None
    msg.set_content(f"Hello {m.name},\n\nhere is a new link to your billing portal, valid "
                    f"for {days} days:\n\n{link}\n\nIf you did not ask for it, you can "
                    "ignore this mail: the link goes only to this address.\n")
    return outbox.Composed(msg, sender, (m.email,))


def _outcome(conn, m, *_) -> None:
    """The outbox row is the record: a link request has no row of its own to update."""


LINK_MAIL = outbox.MailKind("portal-link", _load, _compose, _outcome, _outcome)
