"""What a function cannot work without, checked once when it starts.

A handler declares it in one line,

    check = startup.requires(delivery.ready)

and the template's server (template/python3-http/index.py) calls
`handler.check(os.environ)` once before it serves: None, or the one-line
reason the function cannot work. With a reason, `/_/health` answers 503 with
it, every call answers 503 with it, and the server logs it once at start; a
deployment that lacks a secret says so instead of answering 500 to every call.

Checked: every chargeback setting present in the environment parses (in a
deployed function the environment is its own stack.yml block; a setting left
unset has a default that works), then each of the function's own checks, in
order: a capability's `ready(settings, environ)` raises ConfigError for a
secret or setting it needs (a database URL, the SMTP server, a signing key).
Nothing is contacted: a database that is down is the 503 of a request, not a
reason to refuse starting.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields

from chargeback.core.settings import ConfigError, Settings, load

Ready = Callable[[Settings, Mapping[str, str]], None]
PREFIX = "misconfigured: "


def present_settings_problem(settings: Settings, environ: Mapping[str, str]) -> str | None:
    """The first setting given in `environ` (non-empty) that does not parse, as its
    one-line ConfigError; None when all do."""
    for declared in fields(Settings):
        if (environ.get(declared.metadata["variable"]) or "").strip():
            try:
                getattr(settings, declared.name)
            except ConfigError as exc:
                return str(exc)
    return None


def requires(*checks: Ready) -> Callable[[Mapping[str, str]], str | None]:
    """A handler's `check`: environ -> None, or "misconfigured: <reason>" (one line)."""

    def check(environ: Mapping[str, str]) -> str | None:
        settings = load(environ)
        problem = present_settings_problem(settings, environ)
        if problem is None:
            for ready in checks:
                try:
                    ready(settings, environ)
                except ConfigError as exc:
                    problem = str(exc)
                    break
        if problem is None:
            return None
        return PREFIX + " ".join(problem.split())

    return check
