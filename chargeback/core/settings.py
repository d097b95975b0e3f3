"""The one settings loader: plain settings from the environment, secrets from files.

Secrets follow the OpenFaaS convention, one file per secret under
/var/openfaas/secrets/<name>; SECRETS_DIR points elsewhere for local runs.
A setting that is not given means "use the local default", never a crash.

Each setting is declared once, on `Settings`, with the variable it is read
from and its parser:

    max_gap_seconds: int = setting("MAX_GAP_SECONDS", _positive, 300)

`load()` parses every declared setting; one that is present but unusable is
kept as the ConfigError naming its variable and raised when the setting is
read, so a function refuses to serve over its own settings only, never over
another function's variable that happens to share the environment.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
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


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected an integer") from None


def _positive(environ: Mapping[str, str], name: str, default: int) -> int:
    value = _int(environ, name, default)
    if value <= 0:
        raise ConfigError(f"{name}={value}: expected a positive integer")
    return value


def _raw(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name, "").strip()


def _float(environ: Mapping[str, str], name: str, default: float, unit: str) -> float:
    raw = _raw(environ, name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number of {unit}") from None


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    """A positive number of seconds; decimals allowed (0.5)."""
    value = _float(environ, name, default, "seconds")
    if not 0 < value < 86400 * 7:
        raise ConfigError(f"{name}={_raw(environ, name)!r}: expected a positive number of seconds")
    return value


def _days(environ: Mapping[str, str], name: str, default: float) -> float:
    """Zero or a positive number of days up to a month; decimals allowed (0.5)."""
    value = _float(environ, name, default, "days")
    if not 0 <= value <= 31:
        raise ConfigError(f"{name}={_raw(environ, name)!r}: expected a number of days, 0 to 31")
    return value


def _nonnegative(environ: Mapping[str, str], name: str, default: int) -> int:
    value = _int(environ, name, default)
    if value < 0:
        raise ConfigError(f"{name}={value}: expected zero or a positive integer")
    return value


def _timezone(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name, "").strip() or default
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name}={value!r}: expected an IANA time zone such as "
                          "Europe/Berlin") from None
    return value


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false")


def _list(environ: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated; the default only when unset (an empty value is an empty list)."""
    raw = environ.get(name)
    if raw is None:
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _entries(environ: Mapping[str, str], name: str, default: tuple[str, ...]
             ) -> tuple[str, ...]:
    """Comma-separated, each entry exactly as given (whitespace kept, so that the reader
    can refuse an entry with a stray space or line break instead of guessing)."""
    raw = environ.get(name)
    if raw is None:
        return default
    return tuple(item for item in raw.split(",") if item.strip())


def _text(environ: Mapping[str, str], name: str, default: str | None) -> str | None:
    """The variable as given; the default when unset or empty."""
    return environ.get(name) or default


def _stripped(environ: Mapping[str, str], name: str, default: str) -> str:
    """The variable trimmed; the default only when unset (an empty value is kept)."""
    return environ.get(name, default).strip()


def _as_given(environ: Mapping[str, str], name: str, default: str) -> str:
    """The variable exactly as given, empty included; the default only when unset."""
    return environ.get(name, default)


def _url(environ: Mapping[str, str], name: str, default: str) -> str:
    return (environ.get(name) or default).rstrip("/")


def _lines(environ: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Address lines: real newlines or the two characters \\n (easier in stack.yml)."""
    text = (environ.get(name) or "").replace("\\n", "\n")
    return tuple(line.strip() for line in text.splitlines() if line.strip()) or default


def _currency_code(environ: Mapping[str, str], name: str, default: None) -> str | None:
    """An ISO 4217 code (EUR, pln: PLN); unset or empty: None."""
    raw = environ.get(name, "").strip().upper()
    if raw and not (len(raw) == 3 and raw.isascii() and raw.isalpha()):
        raise ConfigError(f"{name}={raw!r}: expected a three-letter currency code (e.g. PLN)")
    return raw or None


def _or_secret(secret: str) -> Callable[[Mapping[str, str], str, None], str | None]:
    """The variable when set (a local run), else the OpenFaaS secret `secret`."""
    def parse(environ: Mapping[str, str], name: str, default: None) -> str | None:
        return environ.get(name) or read_secret(secret, environ)
    return parse


def _raw_secret(environ: Mapping[str, str], name: str, default: None) -> str | None:
    """The secret `name` exactly as stored (the webhook signature check tries both ways)."""
    return read_secret(name, environ, raw=True)


def _amount(environ: Mapping[str, str], name: str, default: Decimal) -> Decimal:
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


def _choice(*choices: str) -> Callable[[Mapping[str, str], str, str], str]:
    """One of `choices` (case-insensitive); the default when unset."""
    def parse(environ: Mapping[str, str], name: str, default: str) -> str:
        raw = environ.get(name, "").strip().lower() or default
        if raw not in choices:
            raise ConfigError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
        return raw
    return parse


def setting(variable: str, parse: Callable[[Mapping[str, str], str, Any], Any],
            default: Any = None, *, secret: bool = False) -> Any:
    """A field of Settings read from `variable` by `parse(environ, variable, default)`;
    a secret is left out of the settings' repr."""
    return field(default=default, repr=not secret,
                 metadata={"variable": variable, "parse": parse})


@dataclass(frozen=True)
class _Invalid:
    """A setting that was present but unusable: raised when the setting is read."""
    error: ConfigError


def _percentages(environ: Mapping[str, str], name: str, default: tuple) -> tuple[int, ...]:
    """Whole percentages, e.g. 50,80,100 (sorted, each once)."""
    values = set()
    for item in _list(environ, name, tuple(str(v) for v in default)):
        if not item.isdigit() or not 0 < int(item) <= 1000:
            raise ConfigError(f"{name}: {item!r} is not a whole percentage between 1 and 1000")
        values.add(int(item))
    return tuple(sorted(values))


def _increasing_days(environ: Mapping[str, str], name: str, default: tuple) -> tuple:
    """Whole days, strictly increasing, e.g. 7,21 (empty: none)."""
    days = [int(i) if i.isascii() and i.isdigit() else 0
            for i in _list(environ, name, tuple(str(v) for v in default))]
    if any(d <= 0 for d in days) or any(a >= b for a, b in zip(days, days[1:])):
        raise ConfigError(f"{name}={environ.get(name)!r}: expected increasing whole days (7,21)")
    return tuple(days)


def _secret(environ: Mapping[str, str], name: str, default: None) -> str | None:
    """The OpenFaaS secret `name` (one trailing newline removed)."""
    return read_secret(name, environ)


@dataclass(frozen=True)
class Settings:
    """Everything a function may be configured with. Build it with `load()`."""

    database_url: str | None = setting("DATABASE_URL", _or_secret("database-url"))
    gateway_url: str = setting("GATEWAY_URL", _url, "http://127.0.0.1:8080")
    function_namespace: str = setting("FUNCTION_NAMESPACE", _text, "openfaas-system")
    exclude_namespaces: tuple[str, ...] = setting("EXCLUDE_NAMESPACES", _list,
                                                  ("openfaas-system",))
    db_pool_max: int = setting("DB_POOL_MAX", _positive, 4)
    # the template's server threads (a replica's requests at once); tenant-portal's limits
    waitress_threads: int = setting("WAITRESS_THREADS", _positive, 4)
    # Connecting, and waiting for a free pool connection.
    db_connect_timeout_s: int = setting("DB_CONNECT_TIMEOUT", _positive, 5)
    # Every statement, every lock wait (row, table, advisory) and every
    # transaction left idle are bounded server-side; past the bound PostgreSQL
    # cancels and the function answers 503. Defaults stay below the functions'
    # 30 s exec_timeout. A function that runs long statements (month close)
    # raises DB_STATEMENT_TIMEOUT in its own stack.yml environment.
    db_statement_timeout_s: float = setting("DB_STATEMENT_TIMEOUT", _seconds, 15.0)
    db_lock_timeout_s: float = setting("DB_LOCK_TIMEOUT", _seconds, 5.0)
    db_idle_in_transaction_timeout_s: float = setting("DB_IDLE_IN_TRANSACTION_TIMEOUT",
                                                      _seconds, 60.0)
    # Migrations (at a replica's first database use) may build indexes.
    db_migration_timeout_s: float = setting("DB_MIGRATION_TIMEOUT", _seconds, 300.0)
    # meter-capacity
    kubeconfig: str | None = setting("KUBECONFIG", _text)
    tenant_annotation_prefix: str = setting("TENANT_ANNOTATION_PREFIX", _stripped,
                                            "chargeback/")
    tenant_node_labels: tuple[str, ...] = setting("TENANT_NODE_LABELS", _list,
                                                  ("chargeback/tenant",))
    max_gap_seconds: int = setting("MAX_GAP_SECONDS", _positive, 300)
    kube_timeout_s: int = setting("KUBE_TIMEOUT_SECONDS", _positive, 10)
    kube_page_size: int = setting("KUBE_PAGE_SIZE", _positive, 500)
    # Lets a caller choose the tick's time ({"now": ...} in the body): for the
    # demo and tests only. Never set it in stack.yml: a caller could bill any time.
    allow_clock_override: bool = setting("ALLOW_CLOCK_OVERRIDE", _bool, False)
    # receive-usage
    max_body_bytes: int = setting("MAX_BODY_BYTES", _positive, 16 * 1024 * 1024)
    max_future_skew_s: int = setting("MAX_FUTURE_SKEW_SECONDS", _nonnegative, 300)
    # The HMAC key the gateway's eventSubscription signs with, as stored.
    webhook_secret: str | None = setting("webhook-secret", _raw_secret, secret=True)
    # email-invoice: SMTP_URL wins over the smtp-url secret, as DATABASE_URL does
    smtp_url: str | None = setting("SMTP_URL", _or_secret("smtp-url"))
    smtp_timeout_s: int = setting("SMTP_TIMEOUT_SECONDS", _positive, 20)
    # a private CA for smtps:// and smtp+starttls://
    smtp_ca_file: str | None = setting("SMTP_CA_FILE", _text)
    mail_from: str = setting("MAIL_FROM", _text, "Billing <billing@chargeback.invalid>")
    mail_reply_to: str | None = setting("MAIL_REPLY_TO", _text)
    # an archive copy of every invoice mail, never shown
    mail_bcc: str | None = setting("MAIL_BCC", _text)
    issuer_name: str = setting("ISSUER_NAME", _text, "chargeback")
    # the demo's and the tests' example supplier and sender (billing.legal, mail.sender):
    # a deployed function refuses to start with them
    allow_example_issuer: bool = setting("ALLOW_EXAMPLE_ISSUER", _bool, False)
    issuer_address: tuple[str, ...] = setting("ISSUER_ADDRESS", _lines, ())
    issuer_tax_id: str | None = setting("ISSUER_TAX_ID", _text)
    # IBAN/BIC or a payment URL, as lines; frozen on each invoice at finalization
    issuer_payment_details: tuple[str, ...] = setting("ISSUER_PAYMENT_DETAILS", _lines, ())
    # the supplier's contact (BG-6), frozen on each invoice: XRechnung needs all three
    issuer_contact_name: str | None = setting("ISSUER_CONTACT_NAME", _text)
    issuer_contact_phone: str | None = setting("ISSUER_CONTACT_PHONE", _text)
    issuer_contact_email: str | None = setting("ISSUER_CONTACT_EMAIL", _text)
    # the member state's currency VAT is also shown in (billing.vat); None: off
    issuer_vat_currency: str | None = setting("ISSUER_VAT_CURRENCY", _currency_code, None)
    # a larger usage CSV is not attached; the mail says so
    max_attachment_bytes: int = setting("MAX_ATTACHMENT_BYTES", _positive, 2 * 1024 * 1024)
    # tenant-portal's public address: set, every invoice e-mail links to its hosted page
    portal_url: str | None = setting("PORTAL_URL", _text)
    # the longest a portal token may live, whatever it says (Stripe's hosted page: 120 days)
    portal_token_max_days: int = setting("PORTAL_TOKEN_MAX_DAYS", _positive, 120)
    default_locale: str = setting("DEFAULT_LOCALE", _text, "en")
    # A claim older than this is a sender that died mid-send: it may be taken over.
    # Keep it above exec_timeout plus the SMTP timeout.
    send_claim_timeout_s: int = setting("SEND_CLAIM_TIMEOUT_SECONDS", _positive, 120)
    # every mail (invoice, budget alert): a transient failure is tried again after
    # ~base * 2^(n-1) with jitter; after this many attempts it is undeliverable
    mail_max_attempts: int = setting("MAIL_MAX_ATTEMPTS", _positive, 10)
    mail_retry_base_s: float = setting("MAIL_RETRY_BASE_SECONDS", _seconds, 60.0)
    # aggregate-month
    billing_timezone: str = setting("BILLING_TIMEZONE", _timezone, "UTC")
    close_grace_hours: int = setting("CLOSE_GRACE_HOURS", _nonnegative, 6)
    requeue_minutes: int = setting("REQUEUE_MINUTES", _positive, 60)
    invoice_prefix: str = setting("INVOICE_PREFIX", _as_given, "INV-")
    # None: the pricebook.yml shipped beside chargeback/
    pricebook_file: str | None = setting("PRICEBOOK_FILE", _text)
    # the deployed pricebook.yml is stored only when no version exists, unless this is set
    pricebook_file_wins: bool = setting("PRICEBOOK_FILE_WINS", _bool, False)
    credit_note_prefix: str = setting("CREDIT_NOTE_PREFIX", _as_given, "CN-")
    # a correction smaller than this (in the document's currency) waits for a later close
    correction_min_amount: Decimal = setting("CORRECTION_MIN_AMOUNT", _amount, Decimal(0))
    # credit.balance_low when a tenant's granted credit in a currency falls below this
    # (0: never)
    credit_balance_low: Decimal = setting("CREDIT_BALANCE_LOW", _amount, Decimal(0))
    # payment reminders, days after the due date (billing.reminders)
    reminder_days: tuple[int, ...] = setting("REMINDER_DAYS", _increasing_days, (7, 21))
    tax_rounding: str = setting("TAX_ROUNDING", _choice("half_up", "half_even"), "half_up")
    # en16931: a document missing what EN 16931 or art. 226 of the VAT Directive makes
    # mandatory (addresses, VAT IDs, a 0 % rate's category) stays a draft (billing.legal);
    # none: internal chargeback, whose documents are no tax invoices
    legal_checks: str = setting("LEGAL_CHECKS", _choice("en16931", "none"), "en16931")
    # deliver-webhooks: endpoints as given (chargeback.webhooks.endpoints checks them)
    webhook_urls: tuple[str, ...] = setting("WEBHOOK_URLS", _entries, ())
    webhook_signing_secret: str | None = setting("webhook-signing-secret", _secret,
                                                 secret=True)
    # one attempt to one endpoint, connect to last byte
    webhook_timeout_s: float = setting("WEBHOOK_TIMEOUT_SECONDS", _seconds, 10.0)
    # first retry after ~this, doubling, with jitter; then `failed` after the window
    webhook_retry_base_s: float = setting("WEBHOOK_RETRY_BASE_SECONDS", _seconds, 5.0)
    webhook_retry_window_s: float = setting("WEBHOOK_RETRY_WINDOW_SECONDS", _seconds, 86400.0)
    webhook_concurrency: int = setting("WEBHOOK_CONCURRENCY", _positive, 4)  # per drainer
    # deliver-webhooks: events kept this long, then deleted once none of theirs is pending
    webhook_retention_days: int = setting("WEBHOOK_RETENTION_DAYS", _positive, 30)
    # evaluate-budgets: percent of the monthly budget
    budget_thresholds: tuple[int, ...] = setting("BUDGET_THRESHOLDS", _percentages,
                                                 (50, 80, 100))
    # Prometheus meters (docs/meters.md): unset, nothing is read from Prometheus
    prometheus_url: str | None = setting("PROMETHEUS_URL", _text)
    # two samples further apart than this leave a gap: reported, never filled in
    prometheus_max_gap_s: int = setting("PROMETHEUS_MAX_GAP_SECONDS", _positive, 180)
    # how far back meter-capacity collects hours it has not collected yet
    prometheus_backfill_hours: int = setting("PROMETHEUS_BACKFILL_HOURS", _positive, 48)
    prometheus_egress_series: str = setting("PROMETHEUS_EGRESS_SERIES", _text,
                                            "container_network_transmit_bytes_total")
    prometheus_gpu_series: str = setting("PROMETHEUS_GPU_SERIES", _text, "DCGM_FI_DEV_GPU_UTIL")
    prometheus_timeout_s: float = setting("PROMETHEUS_TIMEOUT_SECONDS", _seconds, 10.0)
    # reconciliation: an hour may miss this many invocations, or this percent, if more
    reconcile_tolerance: int = setting("RECONCILE_TOLERANCE", _nonnegative, 5)
    reconcile_tolerance_percent: Decimal = setting("RECONCILE_TOLERANCE_PERCENT", _amount,
                                                   Decimal(1))
    # no forecast before this much of the month has been observed (a run rate over
    # minutes is noise)
    budget_forecast_min_days: float = setting("BUDGET_FORECAST_MIN_DAYS", _days, 3.0)

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if type(value) is _Invalid:
            raise value.error
        return value


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from `environ` (default: os.environ) and the secrets directory.

    DATABASE_URL in the environment wins over the `database-url` secret, so a
    local run can point at another database without touching secret files. A
    present but unusable setting raises its ConfigError when it is read.
    """
    environ = os.environ if environ is None else environ
    values = {}
    for declared in fields(Settings):
        try:
            values[declared.name] = declared.metadata["parse"](
                environ, declared.metadata["variable"], declared.default)
        except ConfigError as exc:
            values[declared.name] = _Invalid(exc)
    return Settings(**values)
