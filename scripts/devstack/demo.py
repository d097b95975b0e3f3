"""scripts/demo: a simulated month of chargeback, end to end through the local gateway.

The demo is a list of sections (SECTIONS), each a function taking the
DemoEnv and printing what it did; later parts of the product append theirs.
It starts the local runtime with a fresh demo database, or uses a runtime
already answering on GATEWAY_PORT (started by scripts/up).
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import requests

from chargeback.core import migrate
from chargeback.core.db import one_line

from . import (demo_adjustments, demo_budgets, demo_capacity, demo_email, demo_invoices,
               demo_meters, demo_payments, demo_portal, demo_usage)
from .pg import EmbeddedPostgres, port_in_use
from .runtime import PortInUse, Runtime
from .stack import StackError, load
from .up import (ROOT, VAR, UpError, database, env_port, kubernetes, mail, portal_url,
                 webhooks,
                 write_secrets)

DEMO_DATABASE = "chargeback_demo"


@dataclass
class DemoEnv:
    gateway_url: str
    database_url: str
    secrets_dir: Path
    fresh_database: bool  # False when an existing runtime's database is used
    # True when we started meter-capacity with the clock override (our own runtime)
    clock_override: bool = False
    mail_dir: Path | None = None  # where the SMTP sink writes .eml files (None: SMTP_URL)
    webhook_dir: Path | None = None  # where the webhook sink writes (None: WEBHOOK_URLS)
    stoppers: list[Callable[[], None]] = field(default_factory=list)

    def secret(self, name: str) -> str:
        return (self.secrets_dir / name).read_text()

    def stop(self) -> None:
        for stop in reversed(self.stoppers):
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                print(f"scripts/demo: while stopping: {exc}", file=sys.stderr)


def _capacity(env: DemoEnv) -> None:
    if not env.clock_override:
        print("skipped: the runtime already up meters capacity on the real clock; stop "
              "scripts/up and run scripts/demo again to meter a simulated month")
        return
    demo_capacity.run(env.gateway_url, env.database_url)


# Sections run in order; each prints its own part of the story.
SECTIONS: list[tuple[str, Callable[[DemoEnv], None]]] = [
    ("usage: a month of signed metering webhooks", demo_usage.run),
    ("capacity: what each tenant held in the cluster, September 2026", _capacity),
    ("contacts: the operator gives the usage tenants' billing contacts",
     lambda env: demo_email.set_contacts(env.database_url)),
    ("portal: each tenant's usage/current the instant September ended, before the close",
     lambda env: demo_portal.before_close(env.gateway_url, env.database_url,
                                          env.secret("admin-token"))),
    ("invoices: September 2026 closed through the gateway, late usage on October's",
     lambda env: demo_invoices.run(env.gateway_url, env.database_url,
                                   env.secret("webhook-secret"), env.secret("admin-token").strip())),
    ("email: every invoice e-mailed through the async fan-out",
     lambda env: demo_email.run(env.database_url, env.mail_dir)),
    ("portal: what each tenant saw beside its invoice, and a link to its page",
     lambda env: demo_portal.run(env.gateway_url, env.database_url,
                                 env.secret("portal-signing-key"))),
    ("budgets and webhooks: a budget crossed, told by mail and by signed webhook",
     demo_budgets.run),
    ("void and credit: one invoice voided and reissued, part of another credited",
     lambda env: demo_adjustments.run(env.gateway_url, env.database_url,
                                      env.secret("admin-token").strip())),
    ("payments and credits: a bank statement imported, an invoice overdue and reminded, "
     "its EPC QR code decoded, a credit granted",
     lambda env: demo_payments.run(env.gateway_url, env.database_url,
                                   env.secret("admin-token").strip(), env.mail_dir)),
    ("meters from anywhere: LLM tokens as CloudEvents, egress and GPU utilisation from "
     "Prometheus, a lost webhook batch reconciled", demo_meters.run),
]


def _our_gateway(url: str) -> bool:
    try:
        r = requests.get(f"{url}/system/functions", timeout=2)
        return r.status_code == 200 and any(f.get("name") == "receive-usage" for f in r.json())
    except (requests.RequestException, ValueError):
        return False


def _reuse(gateway_url: str) -> DemoEnv:
    secrets_dir = Path(os.environ.get("SECRETS_DIR") or VAR / "secrets")
    database_url = os.environ.get("DATABASE_URL") or (secrets_dir / "database-url").read_text()
    print(f"using the runtime already up at {gateway_url} (its database {database_url})")
    return DemoEnv(gateway_url, database_url, secrets_dir, fresh_database=False,
                   mail_dir=None if os.environ.get("SMTP_URL") else VAR / "mail",
                   webhook_dir=None if os.environ.get("WEBHOOK_URLS") else VAR / "webhooks")


def _start(gateway_port: int) -> DemoEnv:
    demo_var = VAR / "demo"
    was_running = EmbeddedPostgres(VAR / "pg", 0).running() if (VAR / "pg").exists() else False
    server_url, pg = database(VAR)
    env = DemoEnv("", server_url, demo_var / "secrets", fresh_database=pg is not None)
    if pg is not None and not was_running:
        env.stoppers.append(pg.stop)
    try:
        if pg is not None:  # our own embedded server: a fresh database every run
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {DEMO_DATABASE} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {DEMO_DATABASE}")
            env.database_url = server_url.rsplit("/", 1)[0] + f"/{DEMO_DATABASE}"
        else:
            print(f"DATABASE_URL is set: the demo writes to {server_url}")
        with psycopg.connect(env.database_url, connect_timeout=10) as conn:
            migrate.apply(conn)
        mail_dir = demo_var / "mail"  # this run's mail only
        shutil.rmtree(mail_dir, ignore_errors=True)
        smtp_url, _, sink = mail(mail_dir)
        if sink is not None:
            env.stoppers.append(sink.stop)
            env.mail_dir = mail_dir
        write_secrets(env.secrets_dir, env.database_url, smtp_url)
        webhook_dir = demo_var / "webhooks"  # this run's webhooks only
        shutil.rmtree(webhook_dir, ignore_errors=True)
        webhook_urls, _, hooks = webhooks(webhook_dir, env.secrets_dir)
        if hooks is not None:
            env.stoppers.append(hooks.stop)
            env.webhook_dir = webhook_dir
        (demo_var / "log").mkdir(parents=True, exist_ok=True)
        kubeconfig, kube = kubernetes(demo_var)
        if kube is not None:
            env.stoppers.append(kube.stop)
        # Cron is off: the demo calls scheduled functions itself, at simulated times.
        portal_port = env_port("PORTAL_PORT", 8081)
        runtime = Runtime(load(ROOT / "stack.yml"), build_root=demo_var / "build",
                          log_dir=demo_var / "log", gateway_port=gateway_port, cron=False,
                          portal_port=portal_port,
                          function_env={"SECRETS_DIR": str(env.secrets_dir),
                                        "DATABASE_URL": env.database_url,
                                        "KUBECONFIG": kubeconfig,
                                        "SMTP_URL": smtp_url,
                                        "PORTAL_URL": portal_url(portal_port),
                                        "WEBHOOK_URLS": webhook_urls,
                                        **demo_capacity.FUNCTION_ENV}).start()
        env.stoppers.append(runtime.stop)
        env.clock_override = True
        env.gateway_url = runtime.gateway_url
    except BaseException:
        env.stop()
        raise
    print(f"local runtime up at {env.gateway_url}: {', '.join(runtime.processes)}; "
          f"database {env.database_url}; logs in {demo_var / 'log'}")
    return env


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the gateway's access log
    started = time.monotonic()
    env = None
    try:
        gateway_port = env_port("GATEWAY_PORT", 8080)
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        if _our_gateway(gateway_url):
            env = _reuse(gateway_url)
        elif port_in_use(gateway_port):
            raise PortInUse(f"port {gateway_port} is in use by something that is not the "
                            "chargeback gateway: set GATEWAY_PORT to another port")
        else:
            env = _start(gateway_port)
        for title, section in SECTIONS:
            print(f"\n== {title} ==", flush=True)
            section_started = time.monotonic()
            section(env)
            print(f"({title.split(':')[0]}: {time.monotonic() - section_started:.1f} s)")
    except (StackError, PortInUse, UpError, demo_usage.DemoFailed,
            demo_capacity.DemoError, demo_invoices.DemoError, demo_email.DemoError,
            demo_portal.DemoError,
            demo_budgets.DemoError, demo_adjustments.DemoError) as exc:
        print(f"scripts/demo: {exc}", file=sys.stderr)
        return 1
    except (psycopg.OperationalError, migrate.MigrationError, RuntimeError, OSError) as exc:
        print(f"scripts/demo: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("scripts/demo: interrupted", file=sys.stderr)
        return 130
    finally:
        if env is not None:
            env.stop()
    print(f"\ndemo finished in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
