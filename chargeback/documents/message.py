"""An invoice as one e-mail: headers, both alternatives, attachments. Pure.

The Message-ID is derived from the invoice alone, so a re-send after a crash
carries the same one and receivers can drop the duplicate. Headers follow
mail.mime (a line break in any of them makes the invoice undeliverable). MIME
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
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime

from chargeback.documents.model import Invoice
from chargeback.mail.mime import (
    Undeliverable,
    address,
    header_value,
    no_line_breaks,
    one_address,
    safe_token,
)

_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP  # quoted-printable never contains "=_", the boundaries' start


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # maintype/subtype
    data: bytes


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipients: tuple[str, ...]  # the customer first, then the archive Bcc if any


def message_id(invoice: Invoice, mail_from: str) -> str:
    """<invoice-UUID@domain-of-From>: the same for every send of this invoice."""
    domain = one_address("From", mail_from).domain or "chargeback.invalid"
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


# the e-invoice's file name by format: Factur-X's CII, also inside the PDF; the UBL alone
_XML_NAMES = {"facturx": "factur-x.xml", "ubl": "ubl.xml", "xrechnung": "xrechnung.xml"}


def attachment_names(invoice: Invoice, supplier: str, with_usage: bool) -> tuple[str, ...]:
    """<supplier>-<period>-<number>.pdf, -lines.csv, the e-invoice (-factur-x.xml, -ubl.xml
    or -xrechnung.xml, by the document's format), -usage.csv: what a filing clerk sorts by
    (examplefunctions-2026-09-INV-2026-000042.pdf)."""
    stem = "-".join(part for part in (supplier_token(supplier), invoice.period,
                                      safe_token(invoice.number)) if part)
    xml = _XML_NAMES[invoice.einvoice_format or "facturx"]
    names = (f"{stem}.pdf", f"{stem}-lines.csv", f"{stem}-{xml}")
    return names + ((f"{stem}-usage.csv",) if with_usage else ())


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
    sender = one_address("From", mail_from)
    no_line_breaks("To display name", invoice.bill_to_name)
    customer = one_address("To", invoice.bill_to_email)
    archive = one_address("Bcc (MAIL_BCC)", bcc) if bcc else None
    boundary = f"=_chargeback.{invoice.invoice_id}"
    body = MIMEMultipart("alternative", boundary=boundary + ".alt")
    body.attach(MIMEText(text, "plain", _UTF8_QP))
    body.attach(MIMEText(html, "html", _UTF8_QP))
    msg = MIMEMultipart("mixed", boundary=boundary + ".mixed")
    msg["From"] = address("From", sender.display_name, sender.addr_spec)
    msg["To"] = address("To", invoice.bill_to_name, customer.addr_spec)
    if reply_to:
        replies = one_address("Reply-To", reply_to)
        msg["Reply-To"] = address("Reply-To", replies.display_name, replies.addr_spec)
    msg["Subject"] = header_value(no_line_breaks("Subject", subject), "Subject")
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
