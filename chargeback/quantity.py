"""Kubernetes resource quantities ("96", "500m", "1Ti", "131072Ki", "1G", "1e3") as exact Decimals.

The grammar is the API server's (k8s.io/apimachinery resource.Quantity):
a signed decimal number, then a binary suffix (Ki..Ei), a decimal SI suffix
(n, u, m, k, M, G, T, P, E) or a decimal exponent (e3, E-2). Nothing is
rounded: a value that cannot be represented exactly is an error, never a guess.
"""
from __future__ import annotations

import re
from decimal import Decimal, Inexact, localcontext
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


@lru_cache(maxsize=4096)  # a cluster repeats a few spellings thousands of times
def parse_quantity(text: str) -> Decimal:
    """The exact value of a quantity, in base units (cores, bytes, devices)."""
    if not isinstance(text, str):
        if isinstance(text, int) and not isinstance(text, bool):  # JSON may carry a bare number
            return Decimal(text)
        raise QuantityError(f"{text!r} is not a quantity")
    match = _QUANTITY.match(text.strip())
    if not match:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity")
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
    """Bytes as GiB, exactly (any byte count is a finite decimal number of GiB)."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        ctx.traps[Inexact] = True
        return value_bytes / GIB_BYTES
