"""Shared fixtures: one embedded PostgreSQL per session, a fresh migrated database
per test, secrets on disk, and functions served by the template's own server."""
from __future__ import annotations

import dataclasses
import itertools
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
from devstack import stack as stackfile
from devstack.functions import FunctionProcess, lay_out
from devstack.kubeapi import FixtureKubeApi
from devstack.pg import EmbeddedPostgres, free_port
from devstack.runtime import Runtime

from chargeback.core import db, migrate

ROOT = Path(__file__).resolve().parents[1]
WEBHOOK_SECRET = "test-webhook-secret"
ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}  # the operator's request headers
PORTAL_KEY = "test-portal-signing-key-of-32-bytes-or-more"
WEBHOOK_SIGNING_SECRET = "whsec_dGVzdC13ZWJob29rLXNpZ25pbmcta2V5LTMyYnl0ZXM="  # 32 bytes
_TEMPLATE_DB = "chargeback_template"
_counter = itertools.count()


def pytest_addoption(parser):
    parser.addoption("--browser", action="store_true",
                     help="run only the tests that drive headless Chromium (marked browser), "
                          "and fail instead of skipping when Chromium is missing")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--browser"):
        return
    keep = [item for item in items if "browser" in item.keywords]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


def _in_memory() -> Path | None:
    """A directory of our own in /dev/shm (RAM) when the machine has one with room, else
    None. Each test's database is a 9 MB copy of the template: on a disk (ext4 mounted
    with `discard`, as the CI machine's is) writing and deleting some 600 of them took
    minutes of the suite; in memory they cost next to nothing."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)
            and shutil.disk_usage(shm).free > 2 * 1024**3):
        return None
    home = Path(tempfile.mkdtemp(prefix="chargeback-tests-", dir=shm))
    home.chmod(0o755)  # the server's own user (when we are root) must reach data/
    return home


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """An embedded PostgreSQL (fsync off) with a migrated template database; its data in
    memory where the machine has some (_in_memory), else under the session's tmp dir."""
    memory = _in_memory()
    server = EmbeddedPostgres((memory or tmp_path_factory.mktemp("pg")) / "data",
                              free_port(), durable=False).start()
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {_TEMPLATE_DB}")
    with psycopg.connect(server.url.rsplit("/", 1)[0] + f"/{_TEMPLATE_DB}") as conn:
        migrate.apply(conn)
    yield server
    db.close_all()
    server.discard()
    if memory:
        shutil.rmtree(memory, ignore_errors=True)


def fresh_database(pg_server) -> str:
    """A new database copied from the migrated template (a test's, a module fixture's or a
    property example's: one each)."""
    name = f"t{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {_TEMPLATE_DB}")
    return pg_server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def database_url(pg_server):
    """A fresh, fully migrated database for this test alone; dropped after it (with
    whatever is still connected), so a session holds a few databases, not hundreds."""
    url = fresh_database(pg_server)
    yield url
    db.close_all()  # this process's pool for it
    try:
        with psycopg.connect(pg_server.url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
    except psycopg.Error:
        pass  # left to the server's discard at the session's end


@pytest.fixture
def secrets_dir(tmp_path, database_url) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    (directory / "webhook-secret").write_text(WEBHOOK_SECRET + "\n")
    (directory / "admin-token").write_text(ADMIN_TOKEN + "\n")
    (directory / "portal-signing-key").write_text(PORTAL_KEY + "\n")
    (directory / "webhook-signing-secret").write_text(WEBHOOK_SIGNING_SECRET + "\n")
    (directory / "database-url").write_text(database_url)
    return directory


@pytest.fixture
def kube_api(tmp_path):
    """The fixture Kubernetes API server, with a kubeconfig for the real client at .kubeconfig."""
    api = FixtureKubeApi().start()
    api.kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    yield api
    api.stop()


@pytest.fixture
def product_stack():
    return stackfile.load(ROOT / "stack.yml")


@pytest.fixture
def serve_function(tmp_path, product_stack):
    """Start a function of stack.yml (or of `stack`) on its own port; stopped after the test.

    serve_function("receive-usage", env={...}) -> FunctionProcess with .url, healthy;
    healthy=False: serving, whatever /_/health answers (a refused configuration)
    """
    started: list[FunctionProcess] = []

    def start(name: str, env: dict[str, str] | None = None, stack=None,
              healthy: bool = True) -> FunctionProcess:
        stack = stack or product_stack
        fn = stack.functions[name]
        build_dir = lay_out(stack, fn, tmp_path / "build")
        # A lone function has no gateway: the stack's in-cluster GATEWAY_URL would only
        # wait on DNS; a refused loopback port answers at once (tests that need one pass it).
        process = FunctionProcess(fn, build_dir, free_port(),
                                  {"GATEWAY_URL": "http://127.0.0.1:9", **(env or {})},
                                  log_path=tmp_path / f"{name}.log").start()
        started.append(process)
        process.wait_healthy(require_ok=healthy)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def local_runtime(tmp_path):
    """Start a Runtime over a stack file; stopped after the test.

    local_runtime(stack, function_env={...}, **runtime_options) -> Runtime
    """
    started: list[Runtime] = []

    def start(stack, function_env: dict[str, str] | None = None, **options) -> Runtime:
        # as settings_for: the tests' tenants have no postal addresses, so the functions
        # bill them without the EN 16931 checks unless a test asks for them
        env = {"LEGAL_CHECKS": "none", **(function_env or {})}
        runtime = Runtime(stack, build_root=tmp_path / "build", log_dir=tmp_path,
                          function_env=env, **options).start()
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.stop()


@pytest.fixture
def callbacks():
    """A real HTTP server that records every callback POSTed to it."""
    received: queue.Queue = queue.Queue()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.put((dict(self.headers), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True,
                     kwargs={"poll_interval": 0.05}).start()  # a quick shutdown()
    server.url = f"http://127.0.0.1:{server.server_port}/done"
    server.received = received
    yield server
    server.shutdown()


@pytest.fixture
def close_via_gateway(local_runtime, database_url, secrets_dir, tmp_path):
    """aggregate-month behind the local gateway, a recording email-invoice stand-in, and
    September usage for four tenants; returns (url, settings, record dir, runtime)."""
    from .billing_helpers import NS, event, send, settings_for
    settings = settings_for(database_url, tmp_path)
    send(settings, [event(f"tenant-{i}", "2026-09-10T10:00:00Z", NS) for i in range(4)])
    record = tmp_path / "record"
    record.mkdir()
    runtime = local_runtime(stackfile.load(ROOT / "tests" / "stack_fanout.yml", root=ROOT),
                            function_env={"DATABASE_URL": database_url,
                                          "PRICEBOOK_FILE": settings.pricebook_file,
                                          "RECORD_DIR": str(record),
                                          "SECRETS_DIR": str(secrets_dir),
                                          # a test may hold a table while it kills the function
                                          "DB_LOCK_TIMEOUT": "30"},
                            cron=False)
    return (f"{runtime.gateway_url}/function/aggregate-month.openfaas-system", settings,
            record, runtime)


@pytest.fixture
def start_meter(serve_function, database_url, kube_api):
    def start(**env):
        return serve_function("meter-capacity", env={
            "DATABASE_URL": database_url, "KUBECONFIG": str(kube_api.kubeconfig),
            "ALLOW_CLOCK_OVERRIDE": "true", **env})
    return start


@pytest.fixture
def var_home(tmp_path):
    """Where scripts/up and scripts/demo keep var/ (the embedded PostgreSQL's data among
    it, written durably as they write it): in memory when the machine has some."""
    memory = _in_memory()
    yield memory or tmp_path
    if memory:
        shutil.rmtree(memory, ignore_errors=True)


@pytest.fixture
def up_env(var_home):
    env = _env(var_home, GATEWAY_PORT=str(free_port()), PG_PORT=str(free_port()),
               SMTP_PORT=str(free_port()))
    yield env
    # Whatever happened, leave no embedded server behind.
    subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c",
                    "import sys; from devstack.pg import EmbeddedPostgres as E;"
                    "E(sys.argv[1], 0).discard()", str(var_home / "var" / "pg")],
                   env=env, capture_output=True)


from .stack_helpers import _env  # noqa: E402 (the up_env fixture's environment)


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on a free port recording every message; .url"""
    from .invoices import RecordingSmtp, start_smtp
    handler = RecordingSmtp()
    controller = start_smtp(handler, free_port())
    handler.url = f"smtp://127.0.0.1:{controller.port}"
    yield handler
    controller.stop()


@pytest.fixture
def receiver():
    """Real HTTP receivers of outbound webhooks: receiver(**options) -> Receiver (see
    webhook_receiver.py); stopped after the test."""
    from .webhook_receiver import Receiver
    made = []

    def start(**options):
        made.append(Receiver(**options))
        return made[-1]

    yield start
    for r in made:
        r.stop()


@pytest.fixture
def portal(local_runtime, product_stack, secrets_dir, database_url):
    """tenant-portal (and `also`, from stack.yml or tests/stack.yml) behind the local
    gateway, and its own origin (the Ingress stand-in) at http://localhost:<port>
    (`portal_tls`: https with that certificate and key)."""
    def start(also: tuple[str, ...] = (), port: int | None = None, portal_tls=None,
              portal_port: int = 0, **env):
        names = ("tenant-portal", *also)
        extra = stackfile.load(ROOT / "tests" / "stack.yml", root=ROOT)
        known = {**extra.functions, **product_stack.functions}
        stack = dataclasses.replace(product_stack, functions={n: known[n] for n in names})
        options = {"gateway_port": port} if port else {}
        runtime = local_runtime(stack, cron=False, portal_port=portal_port, portal_tls=portal_tls,
                                function_env={"SECRETS_DIR": str(secrets_dir),
                                              "DATABASE_URL": database_url, **env}, **options)
        from .portal_helpers import Portal
        return Portal(f"{runtime.gateway_url}/function/tenant-portal.openfaas-system",
                      runtime.portal_url, runtime.gateway_url)
    return start
