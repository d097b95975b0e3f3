"""The shared adapters: the database helper and the gateway client."""
import json
import queue
import threading

import psycopg
import pytest
from devstack import stack as stackfile
from devstack.pg import free_port

from chargeback.core import db, migrate
from chargeback.core.gateway import GatewayClient, GatewayError
from chargeback.core.settings import ConfigError, load

from .conftest import ROOT
from .waiting import until


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


# Bounds, rotation and recovery ------------------------------------------------

def _other_database(pg_server, name):
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return pg_server.url.rsplit("/", 1)[0] + f"/{name}"


def _connections_to(pg_server, url):
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                            (url.rsplit("/", 1)[1],)).fetchone()[0]


def test_every_statement_and_lock_wait_is_bounded(database_url):
    statements = load({"DATABASE_URL": database_url, "DB_STATEMENT_TIMEOUT": "0.3"})
    with pytest.raises(db.DatabaseUnavailable, match="statement timeout"):
        with db.transaction(statements) as conn:
            conn.execute("SELECT pg_sleep(30)")
    locks = load({"DATABASE_URL": database_url, "DB_LOCK_TIMEOUT": "0.3"})
    with psycopg.connect(database_url) as holder:
        holder.execute("LOCK TABLE openfaas_metering.tenants IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(db.DatabaseUnavailable, match="lock timeout"):
            with db.transaction(locks) as conn:
                conn.execute("SELECT count(*) FROM openfaas_metering.tenants")
    idle = load({"DATABASE_URL": database_url, "DB_IDLE_IN_TRANSACTION_TIMEOUT": "0.3"})
    with pytest.raises(db.DatabaseUnavailable):
        with db.transaction(idle) as conn:
            conn.execute("SELECT 1")
            pid = conn.info.backend_pid
            # left idle until the server has ended the session (the 0.3 s timeout)
            with psycopg.connect(database_url, autocommit=True) as watcher:
                until(lambda: not watcher.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone(),
                    "the server to end the idle transaction's session")
            conn.execute("SELECT 1")
    db.close_all()


def test_a_held_migration_lock_is_waited_for_within_the_lock_timeout_only(
        pg_server, database_url):
    # Another replica holds the migration lock and never lets go.
    holder = psycopg.connect(database_url, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (migrate.LOCK_KEY,))
    stuck = load({"DATABASE_URL": database_url, "DB_LOCK_TIMEOUT": "3"})
    other = load({"DATABASE_URL": _other_database(pg_server, "rotate_other")})
    outcome: queue.Queue = queue.Queue()

    def use(settings, label):
        try:
            with db.transaction(settings) as conn:
                conn.execute("SELECT 1")
            outcome.put((label, "ok"))
        except db.DatabaseUnavailable as exc:
            outcome.put((label, str(exc)))

    try:
        waiting = threading.Thread(target=use, args=(stuck, "stuck"), daemon=True)
        waiting.start()
        # While that replica waits for the lock, other databases are not blocked.
        use(other, "other")
        assert outcome.get(timeout=30) == ("other", "ok")
        assert waiting.is_alive()
        label, reason = outcome.get(timeout=30)
        assert label == "stuck" and "lock timeout" in reason
    finally:
        holder.close()
        db.close_all()


def test_a_rotated_database_secret_closes_the_old_pool(pg_server, database_url):
    old = load({"DATABASE_URL": database_url})
    new = load({"DATABASE_URL": _other_database(pg_server, "rotate_new")})
    try:
        with db.transaction(old) as conn:
            conn.execute("SELECT 1")
        assert _connections_to(pg_server, database_url) >= 1
        with db.transaction(new) as conn:
            conn.execute("SELECT 1")
        assert _connections_to(pg_server, database_url) == 0
    finally:
        db.close_all()
