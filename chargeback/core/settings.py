"""The one settings loader: plain settings from the environment, secrets from files.

Secrets follow the OpenFaaS convention, one file per secret under
/var/openfaas/secrets/<name>; SECRETS_DIR points elsewhere for local runs.
A setting that is not given means "use the local default", never a crash.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
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


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    """A positive number of seconds; decimals allowed (0.5)."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number of seconds") from None
    if not 0 < value < 86400 * 7:
        raise ConfigError(f"{name}={raw!r}: expected a positive number of seconds")
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


def _list(environ: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    raw = environ.get(name)
    raw = default if raw is None else raw
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _percentages(environ: Mapping[str, str], name: str, default: str) -> tuple[int, ...]:
    """Whole percentages, e.g. 50,80,100 (sorted, each once)."""
    values = set()
    for item in _list(environ, name, default):
        if not item.isdigit() or not 0 < int(item) <= 1000:
            raise ConfigError(f"{name}: {item!r} is not a whole percentage between 1 and 1000")
        values.add(int(item))
    return tuple(sorted(values))


@dataclass(frozen=True)
class Settings:
    """Everything a function may be configured with. Build it with `load()`."""

    database_url: str | None = None
    gateway_url: str = "http://127.0.0.1:8080"
    function_namespace: str = "openfaas-system"
    exclude_namespaces: tuple[str, ...] = ("openfaas-system",)
    db_pool_max: int = 4
    # Connecting, and waiting for a free pool connection.
    db_connect_timeout_s: int = 5
    # Every statement, every lock wait (row, table, advisory) and every
    # transaction left idle are bounded server-side; past the bound PostgreSQL
    # cancels and the function answers 503. Defaults stay below the functions'
    # 30 s exec_timeout. A function that runs long statements (month close)
    # raises DB_STATEMENT_TIMEOUT in its own stack.yml environment.
    db_statement_timeout_s: float = 15.0
    db_lock_timeout_s: float = 5.0
    db_idle_in_transaction_timeout_s: float = 60.0
    # Migrations (at a replica's first database use) may build indexes.
    db_migration_timeout_s: float = 300.0
    # meter-capacity
    kubeconfig: str | None = None
    tenant_annotation_prefix: str = "chargeback/"
    tenant_node_labels: tuple[str, ...] = ("chargeback/tenant",)
    max_gap_seconds: int = 300
    kube_timeout_s: int = 10
    kube_page_size: int = 500
    # Lets a caller choose the tick's time ({"now": ...} in the body): for the
    # demo and tests only. Never set it in stack.yml: a caller could bill any time.
    allow_clock_override: bool = False
    # receive-usage
    max_body_bytes: int = 16 * 1024 * 1024
    max_future_skew_s: int = 300
    # email-invoice: SMTP_URL wins over the smtp-url secret, as DATABASE_URL does
    smtp_url: str | None = None
    smtp_timeout_s: int = 20
    smtp_ca_file: str | None = None  # a private CA for smtps:// and smtp+starttls://
    mail_from: str = "Billing <billing@chargeback.invalid>"
    mail_reply_to: str | None = None
    mail_bcc: str | None = None  # an archive copy of every invoice mail, never shown
    issuer_name: str = "chargeback"
    issuer_address: tuple[str, ...] = ()
    issuer_tax_id: str | None = None
    default_locale: str = "en"
    # A claim older than this is a sender that died mid-send: it may be taken over.
    # Keep it above exec_timeout plus the SMTP timeout.
    send_claim_timeout_s: int = 120
    # aggregate-month
    billing_timezone: str = "UTC"
    close_grace_hours: int = 6
    requeue_minutes: int = 60
    invoice_prefix: str = "INV-"
    pricebook_file: str | None = None  # None: the pricebook.yml shipped beside chargeback/
    # deliver-webhooks: endpoints as given (chargeback.webhooks.endpoints checks them)
    webhook_urls: tuple[str, ...] = ()
    webhook_signing_secret: str | None = None  # the webhook-signing-secret secret
    webhook_timeout_s: float = 10.0        # one attempt to one endpoint, connect to last byte
    webhook_retry_base_s: float = 5.0      # first retry after ~this, doubling, with jitter
    webhook_retry_window_s: float = 86400.0  # then `failed` (24 h)
    webhook_concurrency: int = 4           # attempts in flight per drainer
    # evaluate-budgets: percent of the monthly budget
    budget_thresholds: tuple[int, ...] = (50, 80, 100)


def _lines(raw: str | None) -> tuple[str, ...]:
    """Address lines: real newlines or the two characters \\n (easier in stack.yml)."""
    text = (raw or "").replace("\\n", "\n")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from `environ` (default: os.environ) and the secrets directory.

    DATABASE_URL in the environment wins over the `database-url` secret, so a
    local run can point at another database without touching secret files.
    """
    environ = os.environ if environ is None else environ
    return Settings(
        database_url=environ.get("DATABASE_URL") or read_secret("database-url", environ),
        gateway_url=(environ.get("GATEWAY_URL") or Settings.gateway_url).rstrip("/"),
        function_namespace=environ.get("FUNCTION_NAMESPACE") or Settings.function_namespace,
        exclude_namespaces=_list(environ, "EXCLUDE_NAMESPACES", "openfaas-system"),
        db_pool_max=_int(environ, "DB_POOL_MAX", Settings.db_pool_max),
        db_connect_timeout_s=_positive(environ, "DB_CONNECT_TIMEOUT",
                                       Settings.db_connect_timeout_s),
        db_statement_timeout_s=_seconds(environ, "DB_STATEMENT_TIMEOUT",
                                        Settings.db_statement_timeout_s),
        db_lock_timeout_s=_seconds(environ, "DB_LOCK_TIMEOUT", Settings.db_lock_timeout_s),
        db_idle_in_transaction_timeout_s=_seconds(
            environ, "DB_IDLE_IN_TRANSACTION_TIMEOUT",
            Settings.db_idle_in_transaction_timeout_s),
        db_migration_timeout_s=_seconds(environ, "DB_MIGRATION_TIMEOUT",
                                        Settings.db_migration_timeout_s),
        # meter-capacity
        kubeconfig=environ.get("KUBECONFIG") or None,
        tenant_annotation_prefix=environ.get("TENANT_ANNOTATION_PREFIX",
                                             Settings.tenant_annotation_prefix).strip(),
        tenant_node_labels=_list(environ, "TENANT_NODE_LABELS", "chargeback/tenant"),
        max_gap_seconds=_positive(environ, "MAX_GAP_SECONDS", Settings.max_gap_seconds),
        kube_timeout_s=_positive(environ, "KUBE_TIMEOUT_SECONDS", Settings.kube_timeout_s),
        kube_page_size=_positive(environ, "KUBE_PAGE_SIZE", Settings.kube_page_size),
        allow_clock_override=_bool(environ, "ALLOW_CLOCK_OVERRIDE", False),
        # receive-usage
        max_body_bytes=_positive(environ, "MAX_BODY_BYTES", Settings.max_body_bytes),
        max_future_skew_s=_int(environ, "MAX_FUTURE_SKEW_SECONDS", Settings.max_future_skew_s),
        # aggregate-month
        billing_timezone=_timezone(environ, "BILLING_TIMEZONE", Settings.billing_timezone),
        close_grace_hours=_nonnegative(environ, "CLOSE_GRACE_HOURS", Settings.close_grace_hours),
        requeue_minutes=_positive(environ, "REQUEUE_MINUTES", Settings.requeue_minutes),
        invoice_prefix=environ.get("INVOICE_PREFIX", Settings.invoice_prefix),
        pricebook_file=environ.get("PRICEBOOK_FILE") or None,
        # email-invoice
        smtp_url=environ.get("SMTP_URL") or read_secret("smtp-url", environ),
        smtp_timeout_s=_positive(environ, "SMTP_TIMEOUT_SECONDS", Settings.smtp_timeout_s),
        smtp_ca_file=environ.get("SMTP_CA_FILE") or None,
        mail_from=environ.get("MAIL_FROM") or Settings.mail_from,
        mail_reply_to=environ.get("MAIL_REPLY_TO") or None,
        mail_bcc=environ.get("MAIL_BCC") or None,
        issuer_name=environ.get("ISSUER_NAME") or Settings.issuer_name,
        issuer_address=_lines(environ.get("ISSUER_ADDRESS")),
        issuer_tax_id=environ.get("ISSUER_TAX_ID") or None,
        default_locale=environ.get("DEFAULT_LOCALE") or Settings.default_locale,
        send_claim_timeout_s=_positive(environ, "SEND_CLAIM_TIMEOUT_SECONDS",
                                       Settings.send_claim_timeout_s),
        # deliver-webhooks
        webhook_urls=_list(environ, "WEBHOOK_URLS", ""),
        webhook_signing_secret=read_secret("webhook-signing-secret", environ),
        webhook_timeout_s=_seconds(environ, "WEBHOOK_TIMEOUT_SECONDS",
                                   Settings.webhook_timeout_s),
        webhook_retry_base_s=_seconds(environ, "WEBHOOK_RETRY_BASE_SECONDS",
                                      Settings.webhook_retry_base_s),
        webhook_retry_window_s=_seconds(environ, "WEBHOOK_RETRY_WINDOW_SECONDS",
                                        Settings.webhook_retry_window_s),
        webhook_concurrency=_positive(environ, "WEBHOOK_CONCURRENCY",
                                      Settings.webhook_concurrency),
        # evaluate-budgets
        budget_thresholds=_percentages(environ, "BUDGET_THRESHOLDS", "50,80,100"),
    )
