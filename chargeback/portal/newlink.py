""""Send me a new link": a fresh portal link mailed to the billing address on file.

The asker types nothing: the expired (but well-signed) token the page was opened
with names the tenant, and the link goes only to the address the operator keeps
for that tenant, so asking reveals nothing and sends nothing anywhere else. At
most one mail per tenant every RESEND_MINUTES, across replicas (one conditional
upsert); the answer is the same page whether a mail went, was held back, or no
address is on file.

The mail itself is sent by `_send` alone, with the SMTP adapter (chargeback.mail);
it is meant to move onto the shared exactly-once mail machinery when that lands.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import parse_qs

from chargeback.core import db, tokens
from chargeback.core.responses import RequestError
from chargeback.core.settings import Settings
from chargeback.mail import smtp
from chargeback.portal import refusals
from chargeback.portal.origin import Origin

log = logging.getLogger("chargeback.portal")
RESEND_MINUTES = 10
LINK_DAYS = 30  # capped by PORTAL_TOKEN_MAX_DAYS

_CLAIM = """
INSERT INTO openfaas_metering.portal_link_requests AS r (namespace, last_sent_at)
VALUES (%(tenant)s, now())
ON CONFLICT (namespace) DO UPDATE SET last_sent_at = now(), sent_count = r.sent_count + 1
 WHERE r.last_sent_at < now() - make_interval(mins => %(minutes)s)
RETURNING namespace"""

_ADDRESS = """
SELECT coalesce(email_override, email), coalesce(display_name_override, display_name)
  FROM openfaas_metering.tenants WHERE namespace = %s"""


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
        row = conn.execute(_ADDRESS, (tenant,)).fetchone() if claimed else None
    if row and row[0]:
        days = min(LINK_DAYS, settings.portal_token_max_days)
        fresh = tokens.issue(tokens.signing_key(), tenant, now, timedelta(days=days))
        try:
            _send(settings, row[0], row[1] or tenant, tokens.page_url(portal.url, fresh), days)
        except (smtp.SmtpTransient, smtp.SmtpRejected, smtp.SmtpMisconfigured,
                ValueError) as exc:  # ValueError: an address on file that is no address
            log.warning("new portal link for %s not sent: %s", tenant, exc)
    return refusals.link_sent(settings, tenant)


def _send(settings: Settings, to: str, name: str, link: str, days: int) -> None:
    """The one place that sends the mail (to move to chargeback.mail's shared sender)."""
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = to
    msg["Subject"] = "Your billing portal link"
    msg["Message-ID"] = make_msgid(domain=settings.mail_from.rsplit("@", 1)[-1].strip("> "))
    msg.set_content(f"Hello {name},\n\nhere is a new link to your billing portal, valid for "
                    f"{days} days:\n\n{link}\n\nIf you did not ask for it, you can ignore "
                    "this mail: the link goes only to this address.\n")
    server = smtp.parse_url(settings.smtp_url, settings.smtp_timeout_s)
    sender = settings.mail_from.rsplit("<", 1)[-1].rstrip(">").strip()
    smtp.send(server, msg, sender, (to,), settings.smtp_ca_file)
