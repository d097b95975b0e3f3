"""The shared adapters: the database helper and the gateway client."""
import json
import queue

import psycopg
import pytest

from chargeback import db
from chargeback.gateway import GatewayClient, GatewayError
from chargeback.settings import ConfigError, load
from devstack import stack as stackfile
from devstack.pg import free_port

from .conftest import ROOT


def test_transaction_commits_on_success_and_rolls_back_on_error(database_url):
    settings = load({"DATABASE_URL": database_url})
    with db.transaction(settings) as conn:
        conn.execute("CREATE TABLE openfaas_metering.t (n int)")
        conn.execute("INSERT INTO openfaas_metering.t VALUES (1)")
    with pytest.raises(ZeroDivisionError):
        with db.transaction(settings) as conn:
            conn.execute("INSERT INTO openfaas_metering.t VALUES (2)")
            1 / 0
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT array_agg(n) FROM openfaas_metering.t").fetchone()[0] == [1]


def test_no_database_configured_is_a_clear_config_error(tmp_path):
    with pytest.raises(ConfigError, match="create the database-url secret or set DATABASE_URL"):
        with db.transaction(load({"SECRETS_DIR": str(tmp_path)})):
            pass


def test_unreachable_database_is_unavailable_not_a_crash():
    settings = load({"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/x",
                     "DB_CONNECT_TIMEOUT": "1"})
    with pytest.raises(db.DatabaseUnavailable):
        with db.transaction(settings):
            pass


@pytest.fixture
def client(local_runtime, tmp_path):
    (tmp_path / "flaky").mkdir()
    rt = local_runtime(stackfile.load(ROOT / "tests" / "stack.yml", root=ROOT), cron=False,
                       function_env={"FLAKY_STATE_DIR": str(tmp_path / "flaky")})
    return GatewayClient(load({"GATEWAY_URL": rt.gateway_url}))


def test_client_invokes_synchronously_in_the_bundle_namespace(client):
    result = client.invoke("echo", b'{"n": 1}', headers={"X-Test-Header": "c"})
    assert result.status_code == 200
    assert json.loads(result.body)["json"] == {"n": 1}
    assert json.loads(result.body)["header"] == "c"


def test_client_queues_async_calls_with_a_callback(client, callbacks):
    call_id = client.invoke_async("echo", b'{"invoice": 42}', callback_url=callbacks.url,
                                  call_id="inv-42")
    assert call_id == "inv-42"
    headers, body = callbacks.received.get(timeout=10)
    assert (headers["X-Call-Id"], headers["X-Function-Status"]) == ("inv-42", "200")
    assert json.loads(body)["json"] == {"invoice": 42}


def test_client_reports_refusals_and_unreachable_gateways(client):
    with pytest.raises(GatewayError, match="async nope: gateway answered 404"):
        client.invoke_async("nope")
    dead = GatewayClient(load({"GATEWAY_URL": f"http://127.0.0.1:{free_port()}"}))
    with pytest.raises(GatewayError, match="unreachable"):
        dead.invoke("echo")
