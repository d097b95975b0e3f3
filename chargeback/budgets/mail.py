"""The budget mail: one message per crossing to the tenant's billing contact, sent once.

A crossing's mail is one kind of mail (BUDGET_MAIL) of chargeback.mail.outbox,
the machinery invoices use too: its row is written with the crossing, in the
evaluation's transaction, and `send_pending` sends what is due after it
commits. Each mail has its own attempts and backoff, so one tenant's full
mailbox never holds another tenant's alert; after MAIL_MAX_ATTEMPTS it is
undeliverable with the reason. The Message-ID is derived from the crossing,
the same on every attempt.

Wording: the gettext catalogs in mail/locales, in the tenant's locale (else
DEFAULT_LOCALE, else English); amounts, percentages and the month are
formatted for that locale.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses

from babel.dates import format_skeleton
from babel.numbers import format_currency, format_percent
from psycopg.rows import class_row

from chargeback.budgets.thresholds import FORECAST
from chargeback.core.settings import Settings
# one exactly-once mail, one way to pick a locale and its labels, for every mail
from chargeback.mail import outbox
from chargeback.mail.i18n import labels, resolve_locale
from chargeback.mail.mime import Undeliverable, safe_token

SEND_BUDGET_S = 30.0  # stop claiming mails after this (below exec_timeout)

_CROSSING = """
SELECT c.crossing_id::text AS crossing_id, c.namespace, c.period, c.kind,
       c.threshold_percent, c.budget, c.amount, c.month_to_date, c.currency,
       coalesce(t.display_name_override, t.display_name, t.namespace) AS name,
       coalesce(t.email_override, t.email) AS email,
       coalesce(t.locale_override, t.locale) AS locale
  FROM openfaas_metering.budget_crossings AS c
  JOIN openfaas_metering.tenants AS t USING (namespace)
 WHERE c.crossing_id = %s"""

_SENT = """
UPDATE openfaas_metering.budget_crossings
   SET mail_status = 'sent', mail_sent_at = now(), message_id = %(message_id)s,
       mail_error = NULL
 WHERE crossing_id = %(crossing_id)s AND mail_status = 'pending'"""

_UNDELIVERABLE = """
UPDATE openfaas_metering.budget_crossings
   SET mail_status = 'undeliverable', mail_error = %(reason)s
 WHERE crossing_id = %(crossing_id)s AND mail_status = 'pending'"""


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
    _ = labels(locale)[1]
    year, month = c.period.split("-")
    values = {
        "name": c.name, "month": format_skeleton("yMMMM", datetime(int(year), int(month), 1),
                                                 locale=locale),
        "spent": format_currency(c.month_to_date, c.currency, locale=locale),
        "budget": format_currency(c.budget, c.currency, locale=locale),
        "projected": format_currency(c.amount, c.currency, locale=locale),
        "percent": format_percent(Decimal(c.threshold_percent) / 100, locale=locale)}
    if c.kind == FORECAST:
        subject = _("Budget forecast: {name} is on course to exceed its {month} budget")
        said = _("Your charges for {month} so far are {spent}. At this rate the month will "
                 "come to about {projected}, above your monthly budget of {budget}.")
    else:
        subject = _("Budget alert: {name} has used {percent} of its {month} budget")
        said = _("Your charges for {month} so far are {spent}: {percent} of your monthly "
                 "budget of {budget}.")
    text = "\n\n".join([
        _("Hello {name},").format(**values), said.format(**values),
        _("These figures are priced exactly as your invoice will be; the invoice at the end "
          "of the month is what you pay."),
        _("Kind regards,") + "\n" + settings.issuer_name]) + "\n"
    msg = EmailMessage()
    try:
        msg["From"] = settings.mail_from
        msg["To"] = formataddr((c.name, c.email))
        if settings.mail_reply_to:
            msg["Reply-To"] = settings.mail_reply_to
        msg["Subject"] = subject.format(**values)
        msg["Date"] = format_datetime(sent_at)
        msg["Message-ID"] = message_id(c.crossing_id, settings.mail_from)
    except (ValueError, IndexError) as exc:  # a line break or an unusable address
        raise Undeliverable(f"tenant {c.namespace}: cannot address the mail: {exc}") from None
    msg.set_content(text)
    return msg


def _load(conn, settings: Settings, crossing_id: str) -> CrossingMail:
    with conn.cursor(row_factory=class_row(CrossingMail)) as cur:
        return cur.execute(_CROSSING, (crossing_id,)).fetchone()


def _compose(c: CrossingMail, settings: Settings) -> outbox.Composed:
    msg = build(c, settings, datetime.now(timezone.utc))
    return outbox.Composed(msg, getaddresses([settings.mail_from])[0][1], (c.email,))


def _on_sent(conn, c: CrossingMail, mid: str, note: str | None) -> None:
    conn.execute(_SENT, {"crossing_id": c.crossing_id, "message_id": mid})


def _on_undeliverable(conn, c: CrossingMail, reason: str) -> None:
    conn.execute(_UNDELIVERABLE, {"crossing_id": c.crossing_id, "reason": reason})


BUDGET_MAIL = outbox.MailKind("budget", _load, _compose, _on_sent, _on_undeliverable)


def enqueue(conn, crossing_id, namespace: str) -> None:
    """The crossing's mail, in the evaluation's transaction."""
    outbox.enqueue(conn, BUDGET_MAIL.name, str(crossing_id), namespace)


def send_pending(settings: Settings, budget_s: float = SEND_BUDGET_S) -> dict[str, int]:
    """Send every budget mail that is due (see the module); counts by outcome."""
    return outbox.send_due(settings, BUDGET_MAIL, budget_s)
