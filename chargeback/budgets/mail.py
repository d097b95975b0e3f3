"""The budget mail: one message per crossing to the tenant's billing contact, sent once.

Exactly once as far as SMTP allows, with the invoices' machinery
(mail.smtp) and their claim pattern (documents.delivery):
1. Claim: one committed UPDATE sets mail_claimed_at on a crossing whose mail
   is pending and unclaimed (or whose claim is older than
   SEND_CLAIM_TIMEOUT_SECONDS: its sender died); SKIP LOCKED, so concurrent
   senders take different crossings.
2. Send, with a Message-ID derived from the crossing.
3. Record: sent, undeliverable (no address, a 5xx), or the claim released
   after a transient failure (the next minute's evaluation tries again).
The edge that SMTP cannot close: a sender that dies after the server
accepted the mail and before step 3 commits leaves a claim; once it is stale
the mail is sent again with the same Message-ID, which receivers use to drop
the duplicate. The window is one UPDATE long.

Wording: English and German (the tenant's locale, else DEFAULT_LOCALE, else
English); amounts, percentages and the month are formatted for that locale.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses

from babel.dates import format_skeleton
from babel.numbers import format_currency, format_percent

from chargeback.budgets.thresholds import FORECAST
from chargeback.core import db
from chargeback.core.settings import ConfigError, Settings
# one SMTP adapter, one way to pick a locale, for every mail
from chargeback.mail import smtp as mailer
from chargeback.mail.i18n import resolve_locale
from chargeback.mail.mime import safe_token

SEND_BUDGET_S = 30.0  # stop claiming mails after this (below exec_timeout)

_CLAIM = """
UPDATE openfaas_metering.budget_crossings
   SET mail_claimed_at = clock_timestamp(), mail_attempts = mail_attempts + 1
 WHERE crossing_id = (
       SELECT crossing_id FROM openfaas_metering.budget_crossings
        WHERE mail_status = 'pending'
          AND (mail_claimed_at IS NULL
               OR mail_claimed_at < clock_timestamp() - make_interval(secs => %(stale_s)s))
        ORDER BY crossed_at LIMIT 1
          FOR UPDATE SKIP LOCKED)
RETURNING crossing_id, mail_claimed_at"""

_CROSSING = """
SELECT c.crossing_id::text, c.namespace, c.period, c.kind, c.threshold_percent, c.budget,
       c.amount, c.month_to_date, c.currency,
       coalesce(t.display_name_override, t.display_name, t.namespace),
       coalesce(t.email_override, t.email), coalesce(t.locale_override, t.locale)
  FROM openfaas_metering.budget_crossings AS c
  JOIN openfaas_metering.tenants AS t USING (namespace)
 WHERE c.crossing_id = %s"""

_SENT = """
UPDATE openfaas_metering.budget_crossings
   SET mail_status = 'sent', mail_sent_at = now(), message_id = %(message_id)s,
       mail_claimed_at = NULL, mail_error = NULL
 WHERE crossing_id = %(crossing_id)s AND mail_claimed_at = %(claimed_at)s"""

_UNDELIVERABLE = """
UPDATE openfaas_metering.budget_crossings
   SET mail_status = 'undeliverable', mail_error = %(reason)s, mail_claimed_at = NULL
 WHERE crossing_id = %(crossing_id)s AND mail_claimed_at = %(claimed_at)s"""

_RELEASE = """
UPDATE openfaas_metering.budget_crossings
   SET mail_claimed_at = NULL, mail_error = %(reason)s
 WHERE crossing_id = %(crossing_id)s AND mail_claimed_at = %(claimed_at)s"""

_WORDS = {
    "en": {
        "threshold_subject": "Budget alert: {name} has used {percent} of its {month} budget",
        "forecast_subject": "Budget forecast: {name} is on course to exceed its {month} budget",
        "hello": "Hello {name},",
        "threshold": "Your charges for {month} so far are {spent}: {percent} of your monthly "
                     "budget of {budget}.",
        "forecast": "Your charges for {month} so far are {spent}. At this rate the month "
                    "will come to about {projected}, above your monthly budget of {budget}.",
        "priced": "These figures are priced exactly as your invoice will be; the invoice at "
                  "the end of the month is what you pay.",
        "bye": "Kind regards,",
    },
    "de": {
        "threshold_subject": "Budgetwarnung: {name} hat {percent} des Budgets für {month} "
                             "verbraucht",
        "forecast_subject": "Budgetprognose: {name} wird das Budget für {month} voraussichtlich "
                            "überschreiten",
        "hello": "Guten Tag {name},",
        "threshold": "Ihre Kosten für {month} betragen bisher {spent}: {percent} Ihres "
                     "Monatsbudgets von {budget}.",
        "forecast": "Ihre Kosten für {month} betragen bisher {spent}. Bei diesem Verbrauch "
                    "kommt der Monat auf etwa {projected}, mehr als Ihr Monatsbudget von "
                    "{budget}.",
        "priced": "Die Beträge sind genau so berechnet wie Ihre Rechnung; maßgeblich ist die "
                  "Rechnung am Monatsende.",
        "bye": "Mit freundlichen Grüßen",
    },
}


class Undeliverable(Exception):
    """This crossing's mail cannot be sent as it stands; the message is the reason."""


@dataclass(frozen=True)
class CrossingMail:
    crossing_id: str
    namespace: str
    period: str
    kind: str
    threshold_percent: int
    budget: Decimal
    amount: Decimal
    month_to_date: Decimal
    currency: str
    name: str
    email: str | None
    locale: str | None


def message_id(crossing_id: str, mail_from: str) -> str:
    """<budget-UUID@domain-of-From>: the same for every send of this crossing."""
    addresses = getaddresses([mail_from])
    domain = addresses[0][1].rpartition("@")[2] if addresses else ""
    return f"<budget-{crossing_id}@{safe_token(domain or 'chargeback.invalid')}>"


def build(c: CrossingMail, settings: Settings, sent_at: datetime) -> EmailMessage:
    """The message for one crossing; Undeliverable when it has no usable address."""
    if not c.email:
        raise Undeliverable(f"tenant {c.namespace} has no billing e-mail address: set the "
                            "namespace annotation <prefix>email or tenants.email_override")
    locale = resolve_locale(c.locale, settings.default_locale)
    words = _WORDS.get(locale.language, _WORDS["en"])
    year, month = c.period.split("-")
    values = {
        "name": c.name, "month": format_skeleton("yMMMM", datetime(int(year), int(month), 1),
                                                 locale=locale),
        "spent": format_currency(c.month_to_date, c.currency, locale=locale),
        "budget": format_currency(c.budget, c.currency, locale=locale),
        "projected": format_currency(c.amount, c.currency, locale=locale),
        "percent": format_percent(Decimal(c.threshold_percent) / 100, locale=locale)}
    kind = "forecast" if c.kind == FORECAST else "threshold"
    text = "\n\n".join([words["hello"].format(**values), words[kind].format(**values),
                        words["priced"],
                        f"{words['bye']}\n{settings.issuer_name}"]) + "\n"
    msg = EmailMessage()
    try:
        msg["From"] = settings.mail_from
        msg["To"] = formataddr((c.name, c.email))
        if settings.mail_reply_to:
            msg["Reply-To"] = settings.mail_reply_to
        msg["Subject"] = words[f"{kind}_subject"].format(**values)
        msg["Date"] = format_datetime(sent_at)
        msg["Message-ID"] = message_id(c.crossing_id, settings.mail_from)
    except (ValueError, IndexError) as exc:  # a line break or an unusable address
        raise Undeliverable(f"tenant {c.namespace}: cannot address the mail: {exc}") from None
    msg.set_content(text)
    return msg


def send_pending(settings: Settings, budget_s: float = SEND_BUDGET_S) -> dict[str, int]:
    """Send every budget mail not yet sent (see the module); counts by outcome."""
    counts = {"sent": 0, "undeliverable": 0, "retrying": 0}
    server = None
    stop_at = time.monotonic() + budget_s
    while time.monotonic() < stop_at:
        with db.transaction(settings) as conn:
            claimed = conn.execute(_CLAIM, {"stale_s": settings.send_claim_timeout_s}
                                   ).fetchone()
            if claimed is None:
                break
            crossing = CrossingMail(*conn.execute(_CROSSING, (claimed[0],)).fetchone())
        record = {"crossing_id": claimed[0], "claimed_at": claimed[1]}
        try:
            server = server or mailer.parse_url(settings.smtp_url, settings.smtp_timeout_s)
            msg = build(crossing, settings, datetime.now(timezone.utc))
            mailer.send(server, msg, getaddresses([settings.mail_from])[0][1],
                        (crossing.email,), settings.smtp_ca_file)
        except (Undeliverable, mailer.SmtpRejected) as exc:
            _record(settings, _UNDELIVERABLE, reason=str(exc), **record)
            counts["undeliverable"] += 1
            continue
        except Exception as exc:  # transient, misconfigured, a bug: free it for the next run
            _record(settings, _RELEASE, reason=db.one_line(exc), **record)
            counts["retrying"] += 1
            if isinstance(exc, (mailer.SmtpTransient, mailer.SmtpMisconfigured, ConfigError)):
                break  # the server (or its setting) is the problem: stop for this run
            raise
        _record(settings, _SENT, message_id=msg["Message-ID"], **record)
        counts["sent"] += 1
    return counts


def _record(settings: Settings, statement: str, **params) -> None:
    with db.transaction(settings) as conn:
        conn.execute(statement, params)
