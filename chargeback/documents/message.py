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
import unicodedata
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


# legal forms left out of a supplier's name in a file name
_LEGAL_FORMS = {"ltd", "limited", "gmbh", "inc", "llc", "plc", "ag", "sa", "sas", "sarl", "bv",
                "nv", "kg", "co", "corp", "sp", "zoo", "oy", "ab", "as", "kk", "srl", "spa"}


def supplier_token(name: str) -> str:
    """The supplier's name as one lowercase ASCII word for file names:
    "Example Functions Ltd" -> "examplefunctions" (empty when nothing is left)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_name.lower())
    while words and words[-1] in _LEGAL_FORMS:
        words.pop()
    return "".join(words)


def attachment_names(invoice: Invoice, supplier: str, with_usage: bool) -> tuple[str, ...]:
    """<supplier>-<period>-<number>.pdf, -lines.csv, -factur-x.xml, -usage.csv: what a
    filing clerk sorts by (examplefunctions-2026-09-INV-2026-000042.pdf)."""
    stem = "-".join(part for part in (supplier_token(supplier), invoice.period,
                                      safe_token(invoice.number)) if part)
    names = (f"{stem}.pdf", f"{stem}-lines.csv", f"{stem}-factur-x.xml")
    return names + ((f"{stem}-usage.csv",) if with_usage else ())


# RFC 5322 lines of at most 78 characters; RFC 2047 encoded words of at most 75
_FOLD_AT = 76


def _header(value: str, name: str) -> str:
    """ASCII as it is; otherwise RFC 2047 encoded words of at most 75 characters,
    folded onto lines of at most 78 (written as given: the classic API keeps it)."""
    if value.isascii():
        return value
    return Header(value, "utf-8", header_name=name).encode(maxlinelen=_FOLD_AT)


def _address(header: str, name: str | None, addr_spec: str) -> str:
    """Name <addr>: quoted when ASCII, else encoded words (as _header) and the address."""
    if not name or name.isascii():
        return formataddr((name or "", addr_spec))
    return f"{_header(name, header)} <{addr_spec}>"


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
    msg["From"] = _address("From", sender.display_name, sender.addr_spec)
    msg["To"] = _address("To", invoice.bill_to_name, customer.addr_spec)
    if reply_to:
        replies = _one_address("Reply-To", reply_to)
        msg["Reply-To"] = _address("Reply-To", replies.display_name, replies.addr_spec)
    msg["Subject"] = _header(_no_line_breaks("Subject", subject), "Subject")
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
