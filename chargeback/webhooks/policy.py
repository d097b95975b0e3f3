"""Where events may go and when a failed attempt is tried again. Pure.

Endpoints: WEBHOOK_URLS, comma-separated (no spaces, no line breaks: an
entry with one is refused rather than guessed at); https:// anywhere, http:// only to
the loopback interface (a receiver on the same machine, the local runtime's
sink). Anything else is refused when deliver-webhooks starts, so billing
events never travel in clear over a network.

Retries: the n-th failed attempt waits base * 2^(n-1) (at most MAX_DELAY_S),
scaled by a random factor in [0.5, 1) so that endpoints that failed together
are not all retried at the same instant; an attempt that would start after
the retry window (24 h from the first attempt, or from a replay) is not
made, and the delivery is `failed`.
"""
from __future__ import annotations

import ipaddress
import random
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from chargeback.core import backoff
from chargeback.core.settings import ConfigError

MAX_DELAY_S = 3 * 3600.0
_LOOPBACK_NAMES = ("localhost",)


def endpoints(urls: tuple[str, ...]) -> tuple[str, ...]:
    """The endpoints of WEBHOOK_URLS, each once; ConfigError naming the first bad one."""
    seen: list[str] = []
    for url in urls:
        if "\r" in url or "\n" in url:
            raise ConfigError(f"WEBHOOK_URLS: {url!r} contains a line break (CR or LF); "
                              "list the URLs on one line, separated by commas")
        if url != url.strip():
            raise ConfigError(f"WEBHOOK_URLS: {url!r} starts or ends with a space; separate "
                              "the URLs by commas alone")
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 (raises on a port that is not a number)
        except ValueError:
            raise ConfigError(f"WEBHOOK_URLS: {url!r}: the port is not a number") from None
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigError(f"WEBHOOK_URLS: {url!r} is not an https:// URL")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ConfigError(f"WEBHOOK_URLS: {url!r}: plain http is allowed to the loopback "
                              "interface only (127.0.0.1, ::1, localhost); use https://")
        if parts.username or parts.password:
            raise ConfigError(f"WEBHOOK_URLS: {parts.hostname}: credentials do not belong in "
                              "the URL; receivers verify the webhook-signature header")
        if url not in seen:
            seen.append(url)
    return tuple(seen)


def _loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def retry_delay_s(failed_attempts: int, base_s: float, rng: random.Random | None = None
                  ) -> float:
    """How long to wait after the `failed_attempts`-th failure (1, 2, ...)."""
    return backoff.delay_s(failed_attempts, base_s, MAX_DELAY_S, rng)


def next_attempt(now: datetime, failed_attempts: int, retry_from: datetime, base_s: float,
                 window_s: float, rng: random.Random | None = None) -> datetime | None:
    """When to try again, or None when that would be past the retry window (failed)."""
    at = now + timedelta(seconds=retry_delay_s(failed_attempts, base_s, rng))
    return at if at <= retry_from + timedelta(seconds=window_s) else None
