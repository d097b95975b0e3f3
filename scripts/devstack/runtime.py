"""The local runtime: every stack.yml function behind one gateway, plus the cron runner.

Used by scripts/up and by the tests (which give it a small stack of their own).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import requests
from werkzeug.serving import make_server

from .cron import CRON_HEADERS, CronRunner, utcnow
from .event_worker import EventWorker
from .functions import FunctionProcess, lay_out
from .gateway import Gateway, QuietQueryHandler, RetryPolicy
from .ingress import Ingress
from .pg import free_ports
from .stack import Stack

log = logging.getLogger("devstack")


class PortInUse(RuntimeError):
    pass


def cron_jobs(stack: Stack) -> dict[str, str]:
    """name -> schedule for the functions cron-connector would pick."""
    return {name: fn.schedule for name, fn in stack.functions.items() if fn.schedule}


class Runtime:
    def __init__(self, stack: Stack, *, build_root: Path, function_env: dict[str, str],
                 gateway_port: int = 0, gateway_port_variable: str = "GATEWAY_PORT",
                 retry: RetryPolicy = RetryPolicy(), cron: bool = True,
                 clock: Callable[[], datetime] = utcnow, log_dir: Path | None = None,
                 portal_port: int | None = None, portal_tls: tuple[Path, Path] | None = None,
                 usage_webhook_secret: str | None = None):
        self.stack = stack
        # set: the gateway reports its calls to receive-usage as the event-worker does
        self.usage_webhook_secret = usage_webhook_secret
        self.build_root = Path(build_root)
        self.function_env = dict(function_env)
        self.gateway_port = gateway_port
        self.gateway_port_variable = gateway_port_variable
        self.retry = retry
        self.cron_enabled = cron
        self.clock = clock
        self.log_dir = log_dir
        # tenant-portal's own origin (an Ingress stand-in): None for none, 0 for a free port
        self.portal_port = portal_port
        self.portal_tls = portal_tls
        self.ingress: Ingress | None = None
        # name -> its replicas (com.openfaas.scale.min of them); processes[name] is
        # the first, for callers that want one replica
        self.replicas: dict[str, list[FunctionProcess]] = {}
        self.cron: CronRunner | None = None
        self._threads: list[threading.Thread] = []
        self.server = None
        self._serving = False  # shutdown() waits for serve_forever: only once it runs

    @property
    def processes(self) -> dict[str, FunctionProcess]:
        return {name: replicas[0] for name, replicas in self.replicas.items()}

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def start(self) -> "Runtime":
        # every port chosen at once, the gateway's and the Ingress's too when not given:
        # a server bound to port 0 after the functions' ports were chosen could take one
        portal = self.portal_port is not None and "tenant-portal" in self.stack.functions
        picked = free_ports(sum(fn.min_replicas for fn in self.stack.functions.values()) + 2)
        gateway_port = self.gateway_port or picked.pop()
        portal_port = self.portal_port or picked.pop()
        ports = {name: [picked.pop() for _ in range(fn.min_replicas)]
                 for name, fn in self.stack.functions.items()}
        self.gateway = Gateway(self.stack.functions,
                               {n: [f"http://127.0.0.1:{p}" for p in replica_ports]
                                for n, replica_ports in ports.items()},
                               retry=self.retry)
        try:
            # werkzeug's threaded server: one thread per connection, and a clean
            # shutdown() (waitress cannot be stopped from another thread).
            self.server = make_server("127.0.0.1", gateway_port, self.gateway.app,
                                      threaded=True, request_handler=QuietQueryHandler)
        except (OSError, SystemExit):
            raise PortInUse(f"port {self.gateway_port} is in use: set "
                            f"{self.gateway_port_variable} to another port") from None
        env = {**self.function_env, "GATEWAY_URL": self.gateway_url}
        if self.usage_webhook_secret is not None and "receive-usage" in self.stack.functions:
            receiver = self.stack.functions["receive-usage"]
            self.gateway.events = EventWorker(
                f"{self.gateway_url}/function/receive-usage.{receiver.namespace}",
                self.usage_webhook_secret)
        if portal:
            fn = self.stack.functions["tenant-portal"]
            try:
                self.ingress = Ingress(self.gateway_url, f"/function/tenant-portal.{fn.namespace}",
                                       portal_port, self.portal_tls).start()
            except (OSError, SystemExit):
                self.server.server_close()
                raise PortInUse(f"port {self.portal_port} is in use: set PORTAL_PORT to "
                                "another port") from None
            env.setdefault("PORTAL_URL", self.ingress.url)
        try:
            for name, fn in self.stack.functions.items():
                build_dir = lay_out(self.stack, fn, self.build_root)
                self.replicas[name] = [
                    FunctionProcess(fn, build_dir, port, env, self._log_path(name, i)).start()
                    for i, port in enumerate(ports[name])]
            for process in self._all_processes():
                process.wait_healthy()
        except Exception:
            self.stop()
            raise
        # a short poll: shutdown() waits for the loop's next look (0.5 s by default)
        self._spawn(lambda: self.server.serve_forever(poll_interval=0.05))
        self._serving = True
        if self.cron_enabled:
            self.cron = CronRunner(cron_jobs(self.stack), self.fire_cron, clock=self.clock)
            self._spawn(self.cron.run_forever)
        return self

    def _log_path(self, name: str, replica: int) -> Path | None:
        if self.log_dir is None:
            return None
        return self.log_dir / (f"{name}.log" if replica == 0 else f"{name}-{replica + 1}.log")

    def _all_processes(self) -> list[FunctionProcess]:
        return [process for replicas in self.replicas.values() for process in replicas]

    def _spawn(self, target) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)

    def fire_cron(self, name: str) -> requests.Response:
        """Call a function exactly as cron-connector does."""
        fn = self.stack.functions[name]
        response = requests.post(f"{self.gateway_url}/function/{name}.{fn.namespace}",
                                 data=b"", headers=CRON_HEADERS, timeout=120)
        log.info("cron fired %s: %s", name, response.status_code)
        return response

    def restart_dead(self) -> list[str]:
        """Restart any function process that has exited; return their names."""
        restarted = []
        for process in self._all_processes():
            if not process.alive():
                log.warning("function %s (port %d) exited (%s); restarting", process.fn.name,
                            process.port, process.proc.returncode)
                process.start()
                restarted.append(process.fn.name)
        return restarted

    @property
    def portal_url(self) -> str | None:
        return self.ingress.url if self.ingress else None

    def stop(self) -> None:
        if self.cron:
            self.cron.stop()
        if self.ingress is not None:
            self.ingress.stop()
        if self.server is not None:
            if self._serving:
                self.server.shutdown()
            self.server.server_close()
            self.gateway.shutdown()
        for process in self._all_processes():  # all told at once, then each waited for
            if process.alive():
                process.proc.terminate()
        for process in self._all_processes():
            process.stop()
