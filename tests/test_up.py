"""scripts/up end to end: the real script, embedded PostgreSQL, every function."""
import os
import shutil
import signal
import subprocess

import psycopg
import requests
from devstack.pg import port_in_use

from .stack_helpers import FUNCTIONS, _start, _wait_up


def test_up_serves_every_function_then_stops_everything(up_env):
    gateway = f"http://127.0.0.1:{up_env['GATEWAY_PORT']}"
    proc = _start(up_env)
    try:
        _wait_up(proc, gateway)  # (how fast is measured, not asserted: docs/benchmarks.md)
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
        # the gateway's invocation counter, as the OpenFaaS gateway serves it: the health
        # calls above were counted (code 200, one per function at least)
        metrics = requests.get(f"{gateway}/metrics", timeout=5).text
        assert 'gateway_function_invocation_total{function_name="receive-usage.' \
               'openfaas-system",code="200"}' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert "gateway    " + gateway in out and "database   postgresql://" in out
    assert "mail       " in out
    if shutil.which("prometheus"):   # started beside the runtime, scraping the gateway
        assert "prometheus http://127.0.0.1:" in out and "scraping the gateway's /metrics" in out
    else:
        assert "prometheus none (apt-get install prometheus" in out
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
