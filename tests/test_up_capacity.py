"""scripts/up without KUBECONFIG: a fixture Kubernetes API for meter-capacity."""
import os
import signal

import requests

from .stack_helpers import _start, _wait_up


def test_up_serves_a_fixture_cluster_to_meter_capacity_when_no_kubeconfig(up_env):
    gateway = f"http://127.0.0.1:{up_env['GATEWAY_PORT']}"
    proc = _start(up_env)
    try:
        _wait_up(proc, gateway)
        r = requests.post(f"{gateway}/function/meter-capacity.openfaas-system", data=b"",
                          timeout=30)
        assert r.status_code == 200, r.text
        # (cron may have metered this slot, or at a minute's turn the next one, first)
        assert r.json()["recorded"] is True or "already metered" in r.json()["reason"]
        kubeconfig = os.path.join(up_env["CHARGEBACK_VAR"], "kubeconfig")
        assert "127.0.0.1" in open(kubeconfig).read()
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert "kubernetes http://127.0.0.1:" in out and "fixture cluster" in out
