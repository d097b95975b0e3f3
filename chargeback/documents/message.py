"""An invoice as one e-mail: headers, both alternatives, attachments. Pure.

The Message-ID is derived from the invoice alone, so a re-send after a crash
carries the same one and receivers can drop the duplicate. Any header value
with CR or LF (a tenant's display name, a misconfigured From) makes the
invoice undeliverable instead of letting a line break add headers. MIME
boundaries are derived from the invoice too, and every text part is
quoted-printable (which never contains "=_"), so no content can end a part.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email import encoders
from email.charset import QP, Charset
from email.header import Header
from email.headerregistry import Address
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, getaddresses

from chargeback.documents.document import Invoice

_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP  # quoted-printable never contains "=_", the boundaries' start


class Undeliverable(Exception):
    """This invoice cannot be mailed as it stands; the message is the reason (one line)."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # maintype/subtype
    data: bytes


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipients: tuple[str, ...]  # the customer first, then the archive Bcc if any


def _no_line_breaks(header: str, value: str | None) -> str:
    value = value or ""
    if "\r" in value or "\n" in value:
        raise Undeliverable(f"{header} contains a line break (CR or LF): {value!r}; "
                            "nothing was sent")
    return value


def _one_address(header: str, value: str) -> Address:
    """`value` ("Name <a@b>" or "a@b") as one Address, or Undeliverable naming the header."""
    _no_line_breaks(header, value)
    found = [(name, addr) for name, addr in getaddresses([value]) if addr]
    if len(found) != 1 or "@" not in found[0][1]:
        raise Undeliverable(f"{header}: {value!r} is not one e-mail address")
    name, addr = found[0]
    try:
        return Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError) as exc:
        raise Undeliverable(f"{header}: {value!r} is not an e-mail address ({exc})") from None


def safe_token(text: str) -> str:
    """`text` reduced to what may stand in a file name or a Message-ID's left part."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "invoice"


def message_id(invoice: Invoice, mail_from: str) -> str:
    """<invoice-UUID@domain-of-From>: the same for every send of this invoice."""
    domain = _one_address("From", mail_from).domain or "chargeback.invalid"
    return f"<invoice-{invoice.invoice_id}@{safe_token(domain)}>"


def attachment_names(invoice: Invoice, with_usage: bool) -> tuple[str, ...]:
    stem = f"invoice-{safe_token(invoice.number)}"
    names = (f"{stem}.pdf", f"{stem}-lines.csv")
    return names + ((f"{stem}-usage.csv",) if with_usage else ())


def _header(value: str) -> str | Header:
    return value if value.isascii() else Header(value, "utf-8")


def _address(name: str | None, addr_spec: str) -> str | Header:
    """Name <addr>: quoted when ASCII, else RFC 2047 encoded words of at most 75 characters."""
    if not name or name.isascii():
        return formataddr((name or "", addr_spec))
    header = Header(name, "utf-8")
    header.append(f"<{addr_spec}>", "us-ascii")
    return header


def build(invoice: Invoice, *, subject: str, text: str, html: str,
          attachments: list[Attachment], mail_from: str, reply_to: str | None,
          bcc: str | None, sent_at: datetime) -> tuple[Message, Envelope]:
    """The message and its envelope; Undeliverable when an address or header is unusable.

    Built with the classic email.mime API: it writes headers as given, where
    EmailMessage re-parses and refolds every header on output (several times
    slower, and the SMTP conversation would wait for it)."""
    if not invoice.bill_to_email:
        raise Undeliverable(f"tenant {invoice.namespace} has no billing e-mail address: set "
                            "the namespace annotation <prefix>email or tenants.email_override")
    sender = _one_address("From", mail_from)
    _no_line_breaks("To display name", invoice.bill_to_name)
    customer = _one_address("To", invoice.bill_to_email)
    archive = _one_address("Bcc (MAIL_BCC)", bcc) if bcc else None
    boundary = f"=_chargeback.{invoice.invoice_id}"
    body = MIMEMultipart("alternative", boundary=boundary + ".alt")
    body.attach(MIMEText(text, "plain", _UTF8_QP))
    body.attach(MIMEText(html, "html", _UTF8_QP))
    msg = MIMEMultipart("mixed", boundary=boundary + ".mixed")
    msg["From"] = _address(sender.display_name, sender.addr_spec)
    msg["To"] = _address(invoice.bill_to_name, customer.addr_spec)
    if reply_to:
        replies = _one_address("Reply-To", reply_to)
        msg["Reply-To"] = _address(replies.display_name, replies.addr_spec)
    msg["Subject"] = _header(_no_line_breaks("Subject", subject))
    msg["Date"] = format_datetime(sent_at)
    msg["Message-ID"] = message_id(invoice, mail_from)
    msg.attach(body)
    for item in attachments:
        maintype, subtype = item.content_type.split("/", 1)
        part = MIMEBase(maintype, subtype, **({"charset": "utf-8"} if maintype == "text" else {}))
        part.set_payload(item.data)
        encoders.encode_base64(part)
        part.add_header("Content-Disposition", "attachment", filename=safe_token(item.filename))
        msg.attach(part)
    recipients = (customer.addr_spec,) + ((archive.addr_spec,) if archive else ())
    return msg, Envelope(sender.addr_spec, recipients)
