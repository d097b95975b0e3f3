"""The one JSON request-body parser for the functions.

Every function that takes a JSON body parses it here, so the reasons a sender
reads are the same everywhere and a body that defeats the parser (nested
thousands deep, an integer of thousands of digits, invalid UTF-8) is a one-line
400 reason, never a 500, in every function at once.
"""
from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any


class JsonBodyError(ValueError):
    """The body is not usable JSON; the message is one line, starting with "body"."""


_REFUSE = object()


def parse(body: bytes, *, empty: Any = _REFUSE) -> Any:
    """The body's JSON value; `empty` for an empty (or blank) body when given
    (otherwise an empty body is JsonBodyError, as JSON it is not)."""
    if empty is not _REFUSE and (not body or not body.strip()):
        return empty
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise JsonBodyError(f"body is not UTF-8 JSON: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise JsonBodyError(f"body is not JSON: {exc.msg} at line {exc.lineno} "
                            f"column {exc.colno}") from None
    except RecursionError:
        raise JsonBodyError("body is nested too deeply to parse") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise JsonBodyError(f"body is not usable JSON: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def positive_amount(value: Any) -> Decimal | None:
    """A money amount sent as a decimal string ("12.50", never a JSON number: a float is
    rounded already), finite and above zero; None when it is not one."""
    try:
        amount = Decimal(value) if isinstance(value, str) and len(value) <= 40 else None
    except InvalidOperation:
        return None
    return amount if amount is not None and amount.is_finite() and amount > 0 else None


def kind(value: Any) -> str:
    """The JSON name of a parsed value's type, for reasons ("got a JSON array")."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)
