"""Kubernetes resource quantities ("96", "500m", "1Ti", "131072Ki", "1G", "1e3") as exact Decimals.

The grammar is the API server's (k8s.io/apimachinery resource.Quantity):
a signed decimal number, then a binary suffix (Ki..Ei), a decimal SI suffix
(n, u, m, k, M, G, T, P, E) or a decimal exponent (e3, E-2). Nothing is
rounded: a value that cannot be represented exactly is an error, never a guess.
"""
from __future__ import annotations

import re
from decimal import Decimal, DecimalException, Inexact, localcontext
from functools import lru_cache

GIB_BYTES = Decimal(2) ** 30

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE](?P<exponent>[+-]?\d{1,3}))?$"
)
_PRECISION = 80  # digits: ample for 2**60 times any number a node reports


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity; the message quotes it."""


def parse_quantity(text) -> Decimal:
    """The exact value of a quantity, in base units (cores, bytes, devices).

    Anything else (a list, a float, a value too long to hold exactly) is a
    QuantityError naming it, never another exception.
    """
    if isinstance(text, str):
        return _parse_text(text)
    if isinstance(text, int) and not isinstance(text, bool):  # JSON may carry a bare number
        return Decimal(text)
    raise QuantityError(f"{_shown(text)} is not a quantity")


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@lru_cache(maxsize=4096)  # a cluster repeats a few spellings thousands of times
def _parse_text(text: str) -> Decimal:
    try:
        return _exact(text)
    except DecimalException:  # Inexact: more digits than _PRECISION
        raise QuantityError(f"{_shown(text)} cannot be held exactly") from None


def _exact(text: str) -> Decimal:
    match = _QUANTITY.match(text.strip())
    if not match:
        raise QuantityError(f"{_shown(text)} is not a Kubernetes quantity")
    number = Decimal(match.group("number"))
    suffix, exponent = match.group("suffix"), match.group("exponent")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        ctx.traps[Inexact] = True
        if suffix in _BINARY:
            return number * (Decimal(2) ** _BINARY[suffix])
        power = int(exponent) if exponent is not None else _DECIMAL[suffix or ""]
        return number.scaleb(power)


@lru_cache(maxsize=4096)
def bytes_to_gib(value_bytes: Decimal) -> Decimal:
    """Bytes as GiB, exactly (any byte count is a finite decimal number of GiB);
    QuantityError when that takes more digits than _PRECISION."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        ctx.traps[Inexact] = True
        try:
            return value_bytes / GIB_BYTES
        except DecimalException:
            raise QuantityError(f"{value_bytes} bytes cannot be held exactly in GiB") from None
