"""How one environment variable becomes a setting's value: the parsers `Settings`
declares (`setting("MAX_GAP_SECONDS", parse.positive, 300)`), each
`parser(environ, variable, default)`, raising ConfigError with one line naming the
variable; and secrets, one file per secret under /var/openfaas/secrets/<name>.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_SECRETS_DIR = "/var/openfaas/secrets"


class ConfigError(ValueError):
    """A setting is present but unusable; the message names the variable."""


def read_secret(name: str, environ: Mapping[str, str] | None = None, *,
                raw: bool = False) -> str | None:
    """The secret `name` (one trailing newline removed), or None when absent.

    raw=True returns the file's text exactly as stored, trailing newline and
    all (the webhook signature check tries the key both ways).
    """
    environ = os.environ if environ is None else environ
    path = Path(environ.get("SECRETS_DIR") or DEFAULT_SECRETS_DIR) / name
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    if raw:
        return text or None
    # faas-cli trims the trailing newline, kubectl does not: accept both.
    value = text[:-1] if text.endswith("\n") else text
    return value or None


def _given(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name, "").strip()


def integer(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = _given(environ, name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected an integer") from None


def positive(environ: Mapping[str, str], name: str, default: int) -> int:
    value = integer(environ, name, default)
    if value <= 0:
        raise ConfigError(f"{name}={value}: expected a positive integer")
    return value


def number(environ: Mapping[str, str], name: str, default: float, unit: str) -> float:
    raw = _given(environ, name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number of {unit}") from None


def seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    """A positive number of seconds; decimals allowed (0.5)."""
    value = number(environ, name, default, "seconds")
    if not 0 < value < 86400 * 7:
        raise ConfigError(f"{name}={_given(environ, name)!r}: expected a positive number of seconds")
    return value


def days(environ: Mapping[str, str], name: str, default: float) -> float:
    """Zero or a positive number of days up to a month; decimals allowed (0.5)."""
    value = number(environ, name, default, "days")
    if not 0 <= value <= 31:
        raise ConfigError(f"{name}={_given(environ, name)!r}: expected a number of days, 0 to 31")
    return value


def nonnegative(environ: Mapping[str, str], name: str, default: int) -> int:
    value = integer(environ, name, default)
    if value < 0:
        raise ConfigError(f"{name}={value}: expected zero or a positive integer")
    return value


def timezone(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name, "").strip() or default
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name}={value!r}: expected an IANA time zone such as "
                          "Europe/Berlin") from None
    return value


def boolean(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false")


def items(environ: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated; the default only when unset (an empty value is an empty list)."""
    raw = environ.get(name)
    if raw is None:
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def entries(environ: Mapping[str, str], name: str, default: tuple[str, ...]
             ) -> tuple[str, ...]:
    """Comma-separated, each entry exactly as given (whitespace kept, so that the reader
    can refuse an entry with a stray space or line break instead of guessing)."""
    raw = environ.get(name)
    if raw is None:
        return default
    return tuple(item for item in raw.split(",") if item.strip())


def text(environ: Mapping[str, str], name: str, default: str | None) -> str | None:
    """The variable as given; the default when unset or empty."""
    return environ.get(name) or default


def stripped(environ: Mapping[str, str], name: str, default: str) -> str:
    """The variable trimmed; the default only when unset (an empty value is kept)."""
    return environ.get(name, default).strip()


def as_given(environ: Mapping[str, str], name: str, default: str) -> str:
    """The variable exactly as given, empty included; the default only when unset."""
    return environ.get(name, default)


def url(environ: Mapping[str, str], name: str, default: str) -> str:
    return (environ.get(name) or default).rstrip("/")


def lines(environ: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Address lines: real newlines or the two characters \\n (easier in stack.yml)."""
    text = (environ.get(name) or "").replace("\\n", "\n")
    return tuple(line.strip() for line in text.splitlines() if line.strip()) or default


def currency_code(environ: Mapping[str, str], name: str, default: None) -> str | None:
    """An ISO 4217 code (EUR, pln: PLN); unset or empty: None."""
    raw = environ.get(name, "").strip().upper()
    if raw and not (len(raw) == 3 and raw.isascii() and raw.isalpha()):
        raise ConfigError(f"{name}={raw!r}: expected a three-letter currency code (e.g. PLN)")
    return raw or None


def or_secret(secret: str) -> Callable[[Mapping[str, str], str, None], str | None]:
    """The variable when set (a local run), else the OpenFaaS secret `secret`."""
    def parse(environ: Mapping[str, str], name: str, default: None) -> str | None:
        return environ.get(name) or read_secret(secret, environ)
    return parse


def raw_secret(environ: Mapping[str, str], name: str, default: None) -> str | None:
    """The secret `name` exactly as stored (the webhook signature check tries both ways)."""
    return read_secret(name, environ, raw=True)


def amount(environ: Mapping[str, str], name: str, default: Decimal) -> Decimal:
    """A decimal of zero or more: an amount of money (e.g. 0.50), a percentage."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value < 0:
        raise ConfigError(f"{name}={raw!r}: expected a decimal of zero or more (e.g. 0.50)")
    return value


def choice(*choices: str) -> Callable[[Mapping[str, str], str, str], str]:
    """One of `choices` (case-insensitive); the default when unset."""
    def parse(environ: Mapping[str, str], name: str, default: str) -> str:
        raw = environ.get(name, "").strip().lower() or default
        if raw not in choices:
            raise ConfigError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
        return raw
    return parse


def percentages(environ: Mapping[str, str], name: str, default: tuple) -> tuple[int, ...]:
    """Whole percentages, e.g. 50,80,100 (sorted, each once)."""
    values = set()
    for item in items(environ, name, tuple(str(v) for v in default)):
        if not item.isdigit() or not 0 < int(item) <= 1000:
            raise ConfigError(f"{name}: {item!r} is not a whole percentage between 1 and 1000")
        values.add(int(item))
    return tuple(sorted(values))


def increasing_days(environ: Mapping[str, str], name: str, default: tuple) -> tuple:
    """Whole days, strictly increasing, e.g. 7,21 (empty: none)."""
    days = [int(i) if i.isascii() and i.isdigit() else 0
            for i in items(environ, name, tuple(str(v) for v in default))]
    if any(d <= 0 for d in days) or any(a >= b for a, b in zip(days, days[1:])):
        raise ConfigError(f"{name}={environ.get(name)!r}: expected increasing whole days (7,21)")
    return tuple(days)


def secret(environ: Mapping[str, str], name: str, default: None) -> str | None:
    """The OpenFaaS secret `name` (one trailing newline removed)."""
    return read_secret(name, environ)
