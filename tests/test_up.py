"""scripts/up end to end: the real script, embedded PostgreSQL, every function."""
import os
import signal
import subprocess
import time

import psycopg
import pytest
import requests

from devstack.pg import free_port, port_in_use

from .conftest import ROOT
from .test_stack import FUNCTIONS, _env


def _start(env):
    return subprocess.Popen([str(ROOT / "scripts" / "up")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_up(proc, gateway, timeout_s=15):
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


@pytest.fixture
def up_env(tmp_path):
    env = _env(tmp_path, GATEWAY_PORT=str(free_port()), PG_PORT=str(free_port()),
               SMTP_PORT=str(free_port()))
    yield env
    # Whatever happened, leave no embedded server behind.
    subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c",
                    "import sys; from devstack.pg import EmbeddedPostgres as E;"
                    "E(sys.argv[1], 0).discard()", str(tmp_path / "var" / "pg")],
                   env=env, capture_output=True)


def test_up_serves_every_function_then_stops_everything(up_env):
    gateway = f"http://127.0.0.1:{up_env['GATEWAY_PORT']}"
    started = time.monotonic()
    proc = _start(up_env)
    try:
        assert _wait_up(proc, gateway) - started < 15
        for name in FUNCTIONS:
            r = requests.get(f"{gateway}/function/{name}.openfaas-system/_/health", timeout=5)
            assert r.status_code == 200, name
        # migrations were applied to the embedded database it printed
        secrets = os.path.join(up_env["CHARGEBACK_VAR"], "secrets")
        url = open(os.path.join(secrets, "database-url")).read()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM openfaas_metering.schema_migrations"
                                ).fetchone()[0] >= 1
        assert os.path.getsize(os.path.join(secrets, "webhook-secret")) > 20
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert "gateway    " + gateway in out and "database   postgresql://" in out
    assert "mail       " in out
    webhooks = os.path.join(up_env["CHARGEBACK_VAR"], "webhooks")
    assert f"webhooks   {webhooks}/*.json (webhook sink http://127.0.0.1:" in out
    assert open(os.path.join(secrets, "webhook-signing-secret")).read().startswith("whsec_")
    assert not port_in_use(int(up_env["GATEWAY_PORT"]))
    assert not port_in_use(int(up_env["PG_PORT"]))
    assert subprocess.run(["pgrep", "-f", up_env["CHARGEBACK_VAR"]]).returncode == 1


def test_up_starts_again_after_being_killed(up_env):
    gateway = f"http://127.0.0.1:{up_env['GATEWAY_PORT']}"
    first = _start(up_env)
    _wait_up(first, gateway)
    os.killpg(first.pid, signal.SIGKILL)  # a crash: no clean-up at all
    first.wait()
    second = _start(up_env)
    try:
        _wait_up(second, gateway)
        r = requests.get(f"{gateway}/function/receive-usage/_/health", timeout=5)
        assert r.status_code == 200
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)
    assert second.returncode == 0
