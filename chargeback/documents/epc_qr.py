"""The EPC QR code ("GiroCode", EPC069-12 version 002) that lets a customer pay an invoice
by scanning it in a banking app: the creditor (ISSUER_NAME), the IBAN (and BIC, when
given) found in ISSUER_PAYMENT_DETAILS, the amount in EUR and the document number as
the unstructured remittance. segno makes the code (error correction M, at most
version 13, as the standard asks).

Only an invoice or supplementary invoice in EUR with something to pay and a valid
IBAN among the payment details carries one; a credit note, another currency or no
IBAN: none (the document is unchanged).
"""
from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from functools import lru_cache
from decimal import Decimal

import segno
from segno import helpers

from chargeback.documents.model import Invoice, Issuer

MAX_AMOUNT = Decimal("999999999.99")     # EPC069-12: EUR 0.01 to 999,999,999.99
NAME_MAX_CHARS = 70
_IBAN = re.compile(r"\b([A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30})\b")
_BIC = re.compile(r"\b(?:BIC|SWIFT)\b[^A-Z0-9]*([A-Z]{6}[A-Z2-9][A-NP-Z0-9](?:[A-Z0-9]{3})?)\b")


@dataclass(frozen=True)
class EpcPayment:
    name: str
    iban: str
    bic: str | None
    amount: Decimal
    text: str            # the remittance: the document number


def iban_valid(iban: str) -> bool:
    """ISO 13616: the check digits (mod 97 of the rearranged number is 1)."""
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _account(details: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(the first valid IBAN, the BIC) named in the payment details."""
    iban = bic = None
    for row in details:
        text = row.upper()
        for candidate in _IBAN.findall(text):
            compact = candidate.replace(" ", "")
            if iban is None and iban_valid(compact):
                iban = compact
        found = _BIC.search(text)
        if bic is None and found:
            bic = found.group(1)
    return iban, bic


def payment(invoice: Invoice, issuer: Issuer) -> EpcPayment | None:
    """What the code says for `invoice`, or None when it carries none (see the module)."""
    if (invoice.currency != "EUR" or invoice.document_kind == "credit_note"
            or invoice.total is None or not Decimal("0.01") <= invoice.total <= MAX_AMOUNT):
        return None
    iban, bic = _account(issuer.payment_details)
    if iban is None:
        return None
    return EpcPayment(issuer.name[:NAME_MAX_CHARS], iban, bic, invoice.total, invoice.number)


def code(epc: EpcPayment) -> segno.QRCode:
    return helpers.make_epc_qr(name=epc.name, iban=epc.iban, amount=epc.amount,
                               text=epc.text, bic=epc.bic)


@lru_cache(maxsize=8)
def png(epc: EpcPayment, scale: int = 4) -> bytes:
    """The code as PNG bytes (quiet zone of 4 modules, black on white). Kept for the
    last few payments: the PDF and the HTML of one document draw the same code, and
    choosing its mask (segno scores all eight) was a third of a document's time."""
    out = io.BytesIO()
    code(epc).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def data_uri(epc: EpcPayment) -> str:
    """The PNG as a data: URI for the HTML document (no request leaves the mail)."""
    return "data:image/png;base64," + base64.b64encode(png(epc)).decode()
