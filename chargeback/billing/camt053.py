"""Bank statements in ISO 20022 camt.053 (the SEPA account statement): the booked credit
lines, and which document each one pays. Pure.

Every version of the message (camt.053.001.02 to .13) is read by the same element
paths in its own namespace. A credit entry with transaction details yields one line
per transaction (a batch booking), else one for the entry. Debits are not payments
and are left out; an entry that is not booked (pending) or is a reversal is listed,
never recorded.

Matching never guesses: a line pays a document only when its remittance information
names a document number (INVOICE_PREFIX + year + sequence) of an open document in
the line's currency; when it names several open ones, the one whose open amount is
exactly the line's amount. Anything else is returned unmatched with the reason.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from lxml import etree

_NAMESPACE = re.compile(r"^urn:iso:std:iso:20022:tech:xsd:camt\.053\.001\.\d{2}$")
# no DTDs, no entities, no network: a statement is data, never instructions to the parser
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=False, remove_comments=True)


class Camt053Error(ValueError):
    """Not a camt.053 statement this reader can use; the message says where."""


@dataclass(frozen=True)
class Credit:
    reference: str                # the bank's id of the line: a payment's reference
    amount: Decimal
    currency: str
    booked_on: date
    remittance: str               # unstructured and structured remittance information
    debtor: str | None = None
    booked: bool = True
    reversal: bool = False


def parse(xml: bytes) -> list[Credit]:
    """The credit lines of every statement in the document, in order."""
    try:
        root = etree.fromstring(xml, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise Camt053Error(f"not well-formed XML: {exc}") from None
    ns = etree.QName(root).namespace or ""
    if not _NAMESPACE.match(ns) or etree.QName(root).localname != "Document":
        raise Camt053Error(f"not a camt.053 document (root {root.tag!r}; expected Document "
                           "in urn:iso:std:iso:20022:tech:xsd:camt.053.001.NN)")
    q = {"c": ns}
    out: list[Credit] = []
    statements = root.findall("c:BkToCstmrStmt/c:Stmt", q)
    if not statements:
        raise Camt053Error("no BkToCstmrStmt/Stmt in the document")
    for s, stmt in enumerate(statements, 1):
        statement_id = _text(stmt, "c:Id", q) or f"statement {s}"
        for n, entry in enumerate(stmt.findall("c:Ntry", q), 1):
            where = f"{statement_id}, entry {n}"
            if _text(entry, "c:CdtDbtInd", q) != "CRDT":
                continue
            status = _text(entry, "c:Sts/c:Cd", q) or _text(entry, "c:Sts", q)
            booked_on = _date(entry, q, where)
            entry_ref = (_text(entry, "c:AcctSvcrRef", q) or _text(entry, "c:NtryRef", q)
                         or hashlib.sha256(etree.tostring(entry)).hexdigest()[:16])
            reversal = _text(entry, "c:RvslInd", q) == "true"
            details = entry.findall("c:NtryDtls/c:TxDtls", q)
            for t, tx in enumerate(details or [entry], 1):
                amount_el = entry.find("c:Amt", q)
                if details:   # the transaction's own amount; the entry's for a single one
                    own = tx.find("c:AmtDtls/c:TxAmt/c:Amt", q)
                    own = own if own is not None else tx.find("c:Amt", q)
                    amount_el = own if own is not None else (
                        amount_el if len(details) == 1 else None)
                if amount_el is None:
                    raise Camt053Error(f"{where}, transaction {t}: no Amt")
                tx_ref = _text(tx, "c:Refs/c:AcctSvcrRef", q) if details else None
                reference = tx_ref or (entry_ref if len(details) <= 1
                                       else f"{entry_ref}/{t}")
                out.append(Credit(reference, _amount(amount_el, f"{where}, transaction {t}"),
                                  amount_el.get("Ccy", ""), booked_on,
                                  _remittance(tx, q), _debtor(tx, q),
                                  booked=status in (None, "BOOK"), reversal=reversal))
    return out


def _text(el, path: str, q: dict) -> str | None:
    found = el.find(path, q)
    return found.text.strip() if found is not None and found.text else None


def _date(entry, q: dict, where: str) -> date:
    text = (_text(entry, "c:BookgDt/c:Dt", q) or _text(entry, "c:BookgDt/c:DtTm", q)
            or _text(entry, "c:ValDt/c:Dt", q) or "")
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise Camt053Error(f"{where}: no booking date (BookgDt/Dt)") from None


def _amount(el, where: str) -> Decimal:
    try:
        value = Decimal((el.text or "").strip())
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value <= 0:
        raise Camt053Error(f"{where}: Amt {el.text!r} is not a positive amount")
    return value


def _remittance(tx, q: dict) -> str:
    parts = [u.text.strip() for u in tx.findall("c:RmtInf/c:Ustrd", q) if u.text]
    parts += [r.text.strip() for r in tx.findall("c:RmtInf/c:Strd/c:CdtrRefInf/c:Ref", q)
              if r.text]
    return " ".join(parts)


def _debtor(tx, q: dict) -> str | None:
    return (_text(tx, "c:RltdPties/c:Dbtr/c:Nm", q)
            or _text(tx, "c:RltdPties/c:Dbtr/c:Pty/c:Nm", q))


def numbers_in(remittance: str, prefix: str) -> list[str]:
    """Document numbers (`prefix`YYYY-NNNNNN) named in the remittance text, in order."""
    found = re.findall(re.escape(prefix) + r"\d{4}-\d{6}", remittance, re.IGNORECASE)
    return list(dict.fromkeys(f"{prefix}{n[len(prefix):]}" for n in found))


@dataclass(frozen=True)
class OpenDocument:
    number: str
    currency: str
    open: Decimal


def match(credit: Credit, named: list[str], open_documents: dict[str, OpenDocument]
          ) -> tuple[str | None, str | None]:
    """(the number `credit` pays, None) or (None, why it is not matched). `named` are the
    numbers in its remittance; `open_documents` the open ones among them."""
    if credit.reversal:
        return None, "a reversal, not a payment"
    if not credit.booked:
        return None, "not booked yet"
    if not named:
        return None, "no document number in the remittance information"
    candidates = [open_documents[n] for n in named if n in open_documents
                  and open_documents[n].currency == credit.currency]
    if not candidates:
        return None, (f"{', '.join(named)}: no open document in {credit.currency} "
                      "with this number (paid, voided or unknown)")
    if len(candidates) == 1:
        return candidates[0].number, None
    exact = [d for d in candidates if d.open == credit.amount]
    if len(exact) == 1:
        return exact[0].number, None
    return None, (f"names {len(candidates)} open documents ({', '.join(named)}) and "
                  f"{'several match' if exact else 'none matches'} its amount exactly")
