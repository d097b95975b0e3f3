"""scripts/up: run the whole bundle on this machine, no cluster and no Docker needed.

Each real service replaces its stand-in when its setting is given:
DATABASE_URL (else embedded PostgreSQL in var/pg), SMTP_URL (else an SMTP sink
writing var/mail/*.eml), WEBHOOK_URLS (else a webhook sink writing
var/webhooks/*.json), SECRETS_DIR (else var/secrets, created here),
KUBECONFIG (else the fixture Kubernetes API, with var/kubeconfig pointing at it),
PROMETHEUS_URL (else Debian's `prometheus`, when installed, scraping the local
gateway's /metrics into var/prometheus; else none).
CHARGEBACK_VAR moves var/ elsewhere.
"""
from __future__ import annotations

import argparse
import base64
import logging
import os
import secrets
import shutil
import signal
import sys
import threading
from pathlib import Path

import psycopg

from chargeback.core import migrate
from chargeback.core.db import one_line

from .kubeapi import FixtureKubeApi
from .pg import EmbeddedPostgres, port_in_use
from .prometheus_fixture import Prometheus
from .runtime import PortInUse, Runtime
from .smtp import SmtpSink
from .stack import StackError, load
from .webhook_sink import WebhookSink

ROOT = Path(__file__).resolve().parents[2]
# Where local state lives: embedded database, secrets, mail, logs, build dirs.
VAR = Path(os.environ.get("CHARGEBACK_VAR") or ROOT / "var")


class UpError(RuntimeError):
    pass


def env_port(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise UpError(f"{name}={raw!r}: expected a TCP port number")
    return int(raw)


def _running_port(data_dir: Path) -> int | None:
    """The port of an embedded server left running in data_dir (e.g. after a crash)."""
    pid_file = data_dir / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        os.kill(int(lines[0]), 0)
        return int(lines[3])
    except (OSError, ValueError, IndexError):
        return None


def database(var: Path) -> tuple[str, EmbeddedPostgres | None]:
    """DATABASE_URL when set; else the embedded server in var/pg (reused if already up)."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"], None
    server = EmbeddedPostgres(var / "pg", 0)  # as root its data may live elsewhere
    port = _running_port(server.data_dir)
    if port is None:
        port = env_port("PG_PORT", 54329)
        if port_in_use(port):
            raise UpError(f"port {port} is in use: set PG_PORT to another port for the "
                          "embedded PostgreSQL, or DATABASE_URL to use your own")
    server.port = port
    if not server.running():
        server.start()
    return server.url, server


def portal_url(portal_port: int) -> str:
    """tenant-portal's own origin, the local Ingress stand-in in front of the gateway
    (localhost, while the gateway is 127.0.0.1: two origins): invoice e-mails link to it."""
    return f"http://localhost:{portal_port}"


def write_secrets(directory: Path, database_url: str, smtp_url: str | None = None) -> Path:
    """The local secrets: a webhook secret, the operator's admin token and the portal's
    signing key, each made once, and the service URLs."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("webhook-secret", "admin-token", "portal-signing-key"):
        path = directory / name
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32))
    signing = directory / "webhook-signing-secret"  # Standard Webhooks: whsec_ + base64
    if not signing.exists():
        signing.write_text("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
    (directory / "database-url").write_text(database_url)
    if smtp_url:
        (directory / "smtp-url").write_text(smtp_url)
    return directory


def secrets_dir(var: Path, database_url: str, smtp_url: str) -> Path:
    """SECRETS_DIR when set; else var/secrets, written by write_secrets()."""
    if os.environ.get("SECRETS_DIR"):
        return Path(os.environ["SECRETS_DIR"])
    return write_secrets(var / "secrets", database_url, smtp_url)


def mail(mail_dir: Path) -> tuple[str, str, SmtpSink | None]:
    """SMTP_URL when set; else an SMTP sink on SMTP_PORT (2525) writing mail_dir/*.eml.
    Returns the SMTP URL, where mail goes (for people) and the sink to stop, if any."""
    if os.environ.get("SMTP_URL"):
        return os.environ["SMTP_URL"], os.environ["SMTP_URL"], None
    smtp_port = env_port("SMTP_PORT", 2525)
    if port_in_use(smtp_port):
        raise UpError(f"port {smtp_port} is in use: set SMTP_PORT to another port")
    sink = SmtpSink(mail_dir, smtp_port).start()
    return sink.url, f"{mail_dir}/*.eml (SMTP sink {sink.url})", sink


def webhooks(webhook_dir: Path, secret_dir: Path) -> tuple[str, str, WebhookSink | None]:
    """WEBHOOK_URLS when set; else a sink on WEBHOOK_SINK_PORT (default a free port)
    writing webhook_dir/*.json. Returns the URLs, where events go (for people), the sink."""
    if os.environ.get("WEBHOOK_URLS"):
        return os.environ["WEBHOOK_URLS"], os.environ["WEBHOOK_URLS"], None
    port = env_port("WEBHOOK_SINK_PORT", 0) if os.environ.get("WEBHOOK_SINK_PORT") else 0
    signing = secret_dir / "webhook-signing-secret"
    try:
        sink = WebhookSink(webhook_dir, port, signing.read_text().strip()
                           if signing.exists() else None).start()
    except OSError:
        raise UpError(f"port {port} is in use: set WEBHOOK_SINK_PORT to another port") from None
    return sink.url, f"{webhook_dir}/*.json (webhook sink {sink.url})", sink


def kubernetes(var: Path) -> tuple[str, FixtureKubeApi | None]:
    """KUBECONFIG when set; else the fixture API (KUBE_API_PORT, default a free port)
    serving scripts/devstack/fixtures/cluster/, and var/kubeconfig for it."""
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"], None
    port = env_port("KUBE_API_PORT", 0) if os.environ.get("KUBE_API_PORT") else 0
    try:
        api = FixtureKubeApi(port=port).start()
    except OSError:
        raise UpError(f"port {port} is in use: set KUBE_API_PORT to another port") from None
    return str(api.write_kubeconfig(var / "kubeconfig")), api


def prometheus(var: Path, gateway_port: int) -> tuple[str, str, Prometheus | None]:
    """(PROMETHEUS_URL, where, the one we started): the one given, else Debian's
    prometheus scraping the local gateway's counter every 5 s (meter-capacity's hourly
    reconciliation and aggregate-month's {"reconcile": ...} read it), else none."""
    given = os.environ.get("PROMETHEUS_URL", "")
    binary = shutil.which("prometheus")
    if given or binary is None:
        return given, given or "none (apt-get install prometheus to reconcile against the "\
                               "gateway's counter)", None
    directory = var / "prometheus"
    directory.mkdir(parents=True, exist_ok=True)
    started = Prometheus(binary, directory, f"127.0.0.1:{gateway_port}", interval_ms=5000)
    return started.url, f"{started.url} (scraping the gateway's /metrics, data in " \
                        f"{directory})", started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/up", description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--stack", default=str(ROOT / "stack.yml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    var = VAR
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    pg = sink = runtime = kube = hooks = metrics = None
    try:
        stack = load(args.stack)
        gateway_port = env_port("GATEWAY_PORT", 8080)
        if port_in_use(gateway_port):
            raise PortInUse(f"port {gateway_port} is in use: set GATEWAY_PORT to another port")
        database_url, pg = database(var)
        with psycopg.connect(database_url, connect_timeout=10) as conn:
            applied = migrate.apply(conn)
        smtp_url, mail_where, sink = mail(var / "mail")
        secret_dir = secrets_dir(var, database_url, smtp_url)
        webhook_urls, webhooks_where, hooks = webhooks(var / "webhooks", secret_dir)
        kubeconfig, kube = kubernetes(var)
        (var / "log").mkdir(parents=True, exist_ok=True)
        portal_port = env_port("PORTAL_PORT", 8081)
        prometheus_url, prometheus_where, metrics = prometheus(var, gateway_port)
        runtime = Runtime(stack, build_root=var / "build", log_dir=var / "log",
                          gateway_port=gateway_port, portal_port=portal_port,
                          usage_webhook_secret=(secret_dir / "webhook-secret").read_text(),
                          function_env={"SECRETS_DIR": str(secret_dir),
                                        "PROMETHEUS_URL": prometheus_url,
                                        "DATABASE_URL": database_url,
                                        "SMTP_URL": smtp_url,
                                        "PORTAL_URL": portal_url(portal_port),
                                        "WEBHOOK_URLS": webhook_urls,
                                        "KUBECONFIG": kubeconfig}).start()
    except (StackError, PortInUse, UpError) as exc:
        print(f"scripts/up: {exc}", file=sys.stderr)
        _shutdown(runtime, sink, pg, kube, hooks, metrics)
        return 2
    except (psycopg.OperationalError, migrate.MigrationError, RuntimeError) as exc:
        print(f"scripts/up: {one_line(exc)}", file=sys.stderr)
        _shutdown(runtime, sink, pg, kube, hooks, metrics)
        return 1
    crons = ", ".join(f'{n} "{f.schedule}"' for n, f in stack.functions.items() if f.schedule)
    print(f"""
chargeback local runtime is up
  gateway    {runtime.gateway_url}   (/function/<name>, /async-function/<name>, /system/functions)
  portal     {runtime.portal_url or 'none'}   (tenant-portal on its own origin)
  functions  {', '.join(stack.functions)}
  database   {database_url}{'  (embedded, data in ' + str(var / 'pg') + ')' if pg else ''}
             migrations applied now: {', '.join(applied) or 'none (up to date)'}
  mail       {mail_where}
  webhooks   {webhooks_where}
  kubernetes {kube.url + ' (fixture cluster, ' + kubeconfig + ')' if kube else kubeconfig}
  prometheus {prometheus_where}
  secrets    {secret_dir}
  logs       {var / 'log'}/<function>.log
  cron       {crons or 'none'}
Ctrl-C stops everything.""", flush=True)
    while not stopping.wait(1.0):
        runtime.restart_dead()
    print("scripts/up: stopping", flush=True)
    _shutdown(runtime, sink, pg, kube, hooks, metrics)
    return 0


def _shutdown(runtime, sink, pg, kube, hooks=None, metrics=None) -> None:
    for part in (runtime, sink, hooks, metrics, pg):
        if part is not None:
            try:
                part.stop()
            except Exception as exc:  # keep stopping the rest
                print(f"scripts/up: while stopping: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
