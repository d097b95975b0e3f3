"""Who the mails come from: refused at start while it is still the shipped example."""
from __future__ import annotations

from collections.abc import Mapping

from chargeback.core.settings import ConfigError, Settings

# The sender stack.yml ships, and the code's default.
EXAMPLE_SENDERS = ("Example Functions Billing <billing@example.com>",
                   "Billing <billing@chargeback.invalid>")


def refuse_example(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """ConfigError with one line while MAIL_FROM is the shipped example or the default and
    ALLOW_EXAMPLE_ISSUER is not set: checked when a function that mails starts
    (chargeback.core.startup)."""
    if not settings.allow_example_issuer and settings.mail_from in EXAMPLE_SENDERS:
        raise ConfigError(f"MAIL_FROM is the shipped example {settings.mail_from!r}: set "
                          "your billing sender in stack.yml (ALLOW_EXAMPLE_ISSUER=true only "
                          "for a demo)")
