"""Helpers for the stack-file and scripts/up tests."""
import os
import subprocess
import time

import pytest
import requests

from .conftest import ROOT


FUNCTIONS = {"receive-usage", "meter-capacity", "aggregate-month", "email-invoice",
             "tenant-portal", "deliver-webhooks", "evaluate-budgets"}


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "SECRETS_DIR", "SMTP_URL", "KUBECONFIG")}
    env.update(CHARGEBACK_VAR=str(tmp_path / "var"), **extra)
    if "GATEWAY_PORT" in extra:  # the portal's own origin: a port of its own too
        from devstack.pg import free_port
        env.setdefault("PORTAL_PORT", str(free_port()))
    return env


def _start(env):
    return subprocess.Popen([str(ROOT / "scripts" / "up")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_up(proc, gateway, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if requests.get(f"{gateway}/healthz", timeout=1).status_code == 200:
                return time.monotonic()
        except requests.RequestException:
            pass
        time.sleep(0.1)
    pytest.fail(f"scripts/up did not answer /healthz within {timeout_s}s")
