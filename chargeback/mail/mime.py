"""What every mail we write follows, whoever writes it (invoices, budget alerts). Pure.

Any header value with CR or LF (a tenant's display name, a misconfigured From)
makes the mail undeliverable instead of letting a line break add headers;
non-ASCII header values are RFC 2047 encoded words folded onto lines of at
most 78 characters; names that end up in file names or Message-IDs are reduced
to a safe token.
"""
from __future__ import annotations

import re
from email.header import Header
from email.headerregistry import Address
from email.utils import formataddr, getaddresses


class Undeliverable(Exception):
    """This mail cannot be sent as it stands; the message is the reason (one line)."""


def no_line_breaks(header: str, value: str | None) -> str:
    value = value or ""
    if "\r" in value or "\n" in value:
        raise Undeliverable(f"{header} contains a line break (CR or LF): {value!r}; "
                            "nothing was sent")
    return value


def one_address(header: str, value: str) -> Address:
    """`value` ("Name <a@b>" or "a@b") as one Address, or Undeliverable naming the header."""
    no_line_breaks(header, value)
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


# RFC 5322 lines of at most 78 characters; RFC 2047 encoded words of at most 75
_FOLD_AT = 76


def header_value(value: str, name: str) -> str:
    """ASCII as it is; otherwise RFC 2047 encoded words of at most 75 characters,
    folded onto lines of at most 78 (written as given: the classic API keeps it)."""
    if value.isascii():
        return value
    return Header(value, "utf-8", header_name=name).encode(maxlinelen=_FOLD_AT)


def address(header: str, name: str | None, addr_spec: str) -> str:
    """Name <addr>: quoted when ASCII, else encoded words (as header_value) and the address."""
    if not name or name.isascii():
        return formataddr((name or "", addr_spec))
    return f"{header_value(name, header)} <{addr_spec}>"


