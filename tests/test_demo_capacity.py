"""The demo's capacity section: a month through the gateway, the summary read back from Postgres."""
import dataclasses

import pytest
import requests

from devstack import demo_capacity
from devstack.kubeapi import FixtureKubeApi


@pytest.fixture
def meter_stack(product_stack):
    """meter-capacity alone behind the gateway: the only function these tests call (the
    others would refuse to start without their secrets)."""
    return dataclasses.replace(product_stack, functions={
        "meter-capacity": product_stack.functions["meter-capacity"]})


def test_a_month_of_capacity_through_the_gateway_summarises_each_tenant(
        local_runtime, meter_stack, database_url, tmp_path):
    kube = FixtureKubeApi().start()
    try:
        runtime = local_runtime(meter_stack, cron=False, function_env={
            "DATABASE_URL": database_url, **demo_capacity.FUNCTION_ENV,
            "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig"))})
        lines = []
        demo_capacity.run(runtime.gateway_url, database_url, out=lines.append)
        assert "721 ticks recorded, 0 already metered" in lines[1]
        table = {line.split()[0]: line.split() for line in lines[2:] if line[:1].isalpha()}
        #                 node-h  spot  core-h   mem GiB-h  storage  LB-h  GPU-h
        assert table["helix-ai"][1:9] == ["1,440", "0", "138,240", "1,474,560", "7,372,800", "0",
                                          "11,520", "NVIDIA-H100-80GB-HBM3"]
        assert table["render-farm"][1:3] == ["1,440", "1,440"]
        assert table["render-farm"][6] == "720"
        assert table["webshop"][1:7] == ["0", "0", "0", "0", "7,200", "0"]
        # running it again over the same database bills nothing twice
        again = []
        demo_capacity.run(runtime.gateway_url, database_url, out=again.append)
        assert "0 ticks recorded, 721 already metered" in again[1]
        assert again[2:] == lines[2:]
    finally:
        kube.stop()


def test_the_demo_explains_a_function_started_without_the_clock_override(
        local_runtime, meter_stack, database_url, tmp_path):
    kube = FixtureKubeApi().start()
    try:
        runtime = local_runtime(meter_stack, cron=False, function_env={
            "DATABASE_URL": database_url,
            "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig"))})
        try:
            demo_capacity.meter_month(runtime.gateway_url, requests.Session())
        except demo_capacity.DemoError as exc:
            assert "answered 403" in str(exc) and "ALLOW_CLOCK_OVERRIDE" in str(exc)
        else:
            raise AssertionError("expected DemoError")
    finally:
        kube.stop()
