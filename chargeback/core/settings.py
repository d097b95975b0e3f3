"""The one settings loader: plain settings from the environment, secrets from files.

Secrets follow the OpenFaaS convention, one file per secret under
/var/openfaas/secrets/<name>; SECRETS_DIR points elsewhere for local runs.
A setting that is not given means "use the local default", never a crash.

Each setting is declared once, on `Settings`, with the variable it is read
from and its parser:

    max_gap_seconds: int = setting("MAX_GAP_SECONDS", parse.positive, 300)

`load()` parses every declared setting; one that is present but unusable is
kept as the ConfigError naming its variable and raised when the setting is
read, so a function refuses to serve over its own settings only, never over
another function's variable that happens to share the environment.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

from chargeback.core import parse
from chargeback.core.parse import ConfigError, read_secret

# ConfigError and read_secret are named from here by the functions and the tests
__all__ = ["ConfigError", "Settings", "load", "read_secret", "setting"]


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


@dataclass(frozen=True)
class Settings:
    """Everything a function may be configured with. Build it with `load()`."""

    database_url: str | None = setting("DATABASE_URL", parse.or_secret("database-url"))
    gateway_url: str = setting("GATEWAY_URL", parse.url, "http://127.0.0.1:8080")
    function_namespace: str = setting("FUNCTION_NAMESPACE", parse.text, "openfaas-system")
    exclude_namespaces: tuple[str, ...] = setting("EXCLUDE_NAMESPACES", parse.items,
                                                  ("openfaas-system",))
    db_pool_max: int = setting("DB_POOL_MAX", parse.positive, 4)
    # the template's server threads (a replica's requests at once); tenant-portal's limits
    waitress_threads: int = setting("WAITRESS_THREADS", parse.positive, 4)
    # Connecting, and waiting for a free pool connection.
    db_connect_timeout_s: int = setting("DB_CONNECT_TIMEOUT", parse.positive, 5)
    # Every statement, every lock wait (row, table, advisory) and every
    # transaction left idle are bounded server-side; past the bound PostgreSQL
    # cancels and the function answers 503. Defaults stay below the functions'
    # 30 s exec_timeout. A function that runs long statements (month close)
    # raises DB_STATEMENT_TIMEOUT in its own stack.yml environment.
    db_statement_timeout_s: float = setting("DB_STATEMENT_TIMEOUT", parse.seconds, 15.0)
    db_lock_timeout_s: float = setting("DB_LOCK_TIMEOUT", parse.seconds, 5.0)
    db_idle_in_transaction_timeout_s: float = setting("DB_IDLE_IN_TRANSACTION_TIMEOUT",
                                                      parse.seconds, 60.0)
    # Migrations (at a replica's first database use) may build indexes.
    db_migration_timeout_s: float = setting("DB_MIGRATION_TIMEOUT", parse.seconds, 300.0)
    # meter-capacity
    kubeconfig: str | None = setting("KUBECONFIG", parse.text)
    tenant_annotation_prefix: str = setting("TENANT_ANNOTATION_PREFIX", parse.stripped,
                                            "chargeback/")
    tenant_node_labels: tuple[str, ...] = setting("TENANT_NODE_LABELS", parse.items,
                                                  ("chargeback/tenant",))
    max_gap_seconds: int = setting("MAX_GAP_SECONDS", parse.positive, 300)
    kube_timeout_s: int = setting("KUBE_TIMEOUT_SECONDS", parse.positive, 10)
    kube_page_size: int = setting("KUBE_PAGE_SIZE", parse.positive, 500)
    # Lets a caller choose the tick's time ({"now": ...} in the body): for the
    # demo and tests only. Never set it in stack.yml: a caller could bill any time.
    allow_clock_override: bool = setting("ALLOW_CLOCK_OVERRIDE", parse.boolean, False)
    # receive-usage
    max_body_bytes: int = setting("MAX_BODY_BYTES", parse.positive, 16 * 1024 * 1024)
    max_future_skew_s: int = setting("MAX_FUTURE_SKEW_SECONDS", parse.nonnegative, 300)
    # The HMAC key the gateway's eventSubscription signs with, as stored.
    webhook_secret: str | None = setting("webhook-secret", parse.raw_secret, secret=True)
    # email-invoice: SMTP_URL wins over the smtp-url secret, as DATABASE_URL does
    smtp_url: str | None = setting("SMTP_URL", parse.or_secret("smtp-url"))
    smtp_timeout_s: int = setting("SMTP_TIMEOUT_SECONDS", parse.positive, 20)
    # a private CA for smtps:// and smtp+starttls://
    smtp_ca_file: str | None = setting("SMTP_CA_FILE", parse.text)
    mail_from: str = setting("MAIL_FROM", parse.text, "Billing <billing@chargeback.invalid>")
    mail_reply_to: str | None = setting("MAIL_REPLY_TO", parse.text)
    # an archive copy of every invoice mail, never shown
    mail_bcc: str | None = setting("MAIL_BCC", parse.text)
    issuer_name: str = setting("ISSUER_NAME", parse.text, "chargeback")
    # the demo's and the tests' example supplier and sender (billing.legal, mail.sender):
    # a deployed function refuses to start with them
    allow_example_issuer: bool = setting("ALLOW_EXAMPLE_ISSUER", parse.boolean, False)
    issuer_address: tuple[str, ...] = setting("ISSUER_ADDRESS", parse.lines, ())
    issuer_tax_id: str | None = setting("ISSUER_TAX_ID", parse.text)
    # IBAN/BIC or a payment URL, as lines; frozen on each invoice at finalization
    issuer_payment_details: tuple[str, ...] = setting("ISSUER_PAYMENT_DETAILS", parse.lines, ())
    # the supplier's contact (BG-6), frozen on each invoice: XRechnung needs all three
    issuer_contact_name: str | None = setting("ISSUER_CONTACT_NAME", parse.text)
    issuer_contact_phone: str | None = setting("ISSUER_CONTACT_PHONE", parse.text)
    issuer_contact_email: str | None = setting("ISSUER_CONTACT_EMAIL", parse.text)
    # the member state's currency VAT is also shown in (billing.vat); None: off
    issuer_vat_currency: str | None = setting("ISSUER_VAT_CURRENCY", parse.currency_code, None)
    # a larger usage CSV is not attached; the mail says so
    max_attachment_bytes: int = setting("MAX_ATTACHMENT_BYTES", parse.positive, 2 * 1024 * 1024)
    # tenant-portal's public address: set, every invoice e-mail links to its hosted page
    portal_url: str | None = setting("PORTAL_URL", parse.text)
    # the longest a portal token may live, whatever it says (Stripe's hosted page: 120 days)
    portal_token_max_days: int = setting("PORTAL_TOKEN_MAX_DAYS", parse.positive, 120)
    default_locale: str = setting("DEFAULT_LOCALE", parse.text, "en")
    # A claim older than this is a sender that died mid-send: it may be taken over.
    # Keep it above exec_timeout plus the SMTP timeout.
    send_claim_timeout_s: int = setting("SEND_CLAIM_TIMEOUT_SECONDS", parse.positive, 120)
    # every mail (invoice, budget alert): a transient failure is tried again after
    # ~base * 2^(n-1) with jitter; after this many attempts it is undeliverable
    mail_max_attempts: int = setting("MAIL_MAX_ATTEMPTS", parse.positive, 10)
    mail_retry_base_s: float = setting("MAIL_RETRY_BASE_SECONDS", parse.seconds, 60.0)
    # aggregate-month
    billing_timezone: str = setting("BILLING_TIMEZONE", parse.timezone, "UTC")
    close_grace_hours: int = setting("CLOSE_GRACE_HOURS", parse.nonnegative, 6)
    requeue_minutes: int = setting("REQUEUE_MINUTES", parse.positive, 60)
    invoice_prefix: str = setting("INVOICE_PREFIX", parse.as_given, "INV-")
    # None: the pricebook.yml shipped beside chargeback/
    pricebook_file: str | None = setting("PRICEBOOK_FILE", parse.text)
    # the deployed pricebook.yml is stored only when no version exists, unless this is set
    pricebook_file_wins: bool = setting("PRICEBOOK_FILE_WINS", parse.boolean, False)
    credit_note_prefix: str = setting("CREDIT_NOTE_PREFIX", parse.as_given, "CN-")
    # a correction smaller than this (in the document's currency) waits for a later close
    correction_min_amount: Decimal = setting("CORRECTION_MIN_AMOUNT", parse.amount, Decimal(0))
    # credit.balance_low when a tenant's granted credit in a currency falls below this
    # (0: never)
    credit_balance_low: Decimal = setting("CREDIT_BALANCE_LOW", parse.amount, Decimal(0))
    # payment reminders, days after the due date (billing.reminders)
    reminder_days: tuple[int, ...] = setting("REMINDER_DAYS", parse.increasing_days, (7, 21))
    tax_rounding: str = setting("TAX_ROUNDING", parse.choice("half_up", "half_even"), "half_up")
    # en16931: a document missing what EN 16931 or art. 226 of the VAT Directive makes
    # mandatory (addresses, VAT IDs, a 0 % rate's category) stays a draft (billing.legal);
    # none: internal chargeback, whose documents are no tax invoices
    legal_checks: str = setting("LEGAL_CHECKS", parse.choice("en16931", "none"), "en16931")
    # deliver-webhooks: endpoints as given (chargeback.webhooks.endpoints checks them)
    webhook_urls: tuple[str, ...] = setting("WEBHOOK_URLS", parse.entries, ())
    webhook_signing_secret: str | None = setting("webhook-signing-secret", parse.secret,
                                                 secret=True)
    # one attempt to one endpoint, connect to last byte
    webhook_timeout_s: float = setting("WEBHOOK_TIMEOUT_SECONDS", parse.seconds, 10.0)
    # first retry after ~this, doubling, with jitter; then `failed` after the window
    webhook_retry_base_s: float = setting("WEBHOOK_RETRY_BASE_SECONDS", parse.seconds, 5.0)
    webhook_retry_window_s: float = setting("WEBHOOK_RETRY_WINDOW_SECONDS", parse.seconds, 86400.0)
    webhook_concurrency: int = setting("WEBHOOK_CONCURRENCY", parse.positive, 4)  # per drainer
    # deliver-webhooks: events kept this long, then deleted once none of theirs is pending
    webhook_retention_days: int = setting("WEBHOOK_RETENTION_DAYS", parse.positive, 30)
    # evaluate-budgets: percent of the monthly budget
    budget_thresholds: tuple[int, ...] = setting("BUDGET_THRESHOLDS", parse.percentages,
                                                 (50, 80, 100))
    # Prometheus meters (docs/meters.md): unset, nothing is read from Prometheus
    prometheus_url: str | None = setting("PROMETHEUS_URL", parse.text)
    # two samples further apart than this leave a gap: reported, never filled in
    prometheus_max_gap_s: int = setting("PROMETHEUS_MAX_GAP_SECONDS", parse.positive, 180)
    # how far back meter-capacity collects hours it has not collected yet
    prometheus_backfill_hours: int = setting("PROMETHEUS_BACKFILL_HOURS", parse.positive, 48)
    prometheus_egress_series: str = setting("PROMETHEUS_EGRESS_SERIES", parse.text,
                                            "container_network_transmit_bytes_total")
    prometheus_gpu_series: str = setting("PROMETHEUS_GPU_SERIES", parse.text, "DCGM_FI_DEV_GPU_UTIL")
    prometheus_timeout_s: float = setting("PROMETHEUS_TIMEOUT_SECONDS", parse.seconds, 10.0)
    # reconciliation: an hour may miss this many invocations, or this percent, if more
    reconcile_tolerance: int = setting("RECONCILE_TOLERANCE", parse.nonnegative, 5)
    reconcile_tolerance_percent: Decimal = setting("RECONCILE_TOLERANCE_PERCENT", parse.amount,
                                                   Decimal(1))
    # no forecast before this much of the month has been observed (a run rate over
    # minutes is noise)
    budget_forecast_min_days: float = setting("BUDGET_FORECAST_MIN_DAYS", parse.days, 3.0)

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
