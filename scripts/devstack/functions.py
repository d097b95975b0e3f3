"""Run a stack.yml function locally, laid out exactly as its image would be.

faas-cli builds `build/<fn>/` from the template's files, the template's
`function/` sample files, the handler folder laid over them, and each
`configuration.copy` folder inside `function/`. We lay out the same tree
(linking the function files, so edits are live) and run the template's own `index.py`
with the Python of an environment made from that tree's two requirement files only
(devstack.envs), as the image would install them: never the tests' own .venv.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import requests

from . import envs
from .stack import FunctionSpec, Stack

# What the tests' own process has that an image has not: its PYTHONPATH (the
# project root, so `chargeback` would resolve outside function/), and the
# machine's time zone files (the slim image has none: zoneinfo finds only the
# tzdata package a function installs, as there). Bytecode is written (into the
# function's environment, and chargeback/__pycache__), so a start does not compile
# fpdf2 and fontTools again: the image's pip compiled them as it installed.
_NOT_IN_THE_IMAGE = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP",
                     "PYTHONDONTWRITEBYTECODE")


def lay_out(stack: Stack, fn: FunctionSpec, build_root: Path) -> Path:
    """Create build_root/<fn>/ like `faas-cli build --shrinkwrap`; return its path."""
    target = build_root / fn.name
    shutil.rmtree(target, ignore_errors=True)
    template = stack.template_dir(fn)
    target.mkdir(parents=True)
    # The template's own files are copied, not linked: Python puts the *resolved*
    # directory of index.py on sys.path, which must be this build directory.
    for item in template.iterdir():
        if item.is_file():
            shutil.copy2(item, target / item.name)
    function_dir = target / "function"
    function_dir.mkdir()
    for source in (template / "function", fn.handler):
        for item in source.iterdir():
            if item.name == "__pycache__":
                continue
            link = function_dir / item.name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(item.resolve())
    for folder in stack.copy:
        (function_dir / folder.name).symlink_to(folder)
    return target


def _die_with_parent() -> None:
    # If the runtime is killed outright its functions go too: no orphan keeps
    # a port, so starting again after a crash works.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class FunctionProcess:
    """One function served by the template's index.py on 127.0.0.1:port."""

    def __init__(self, fn: FunctionSpec, build_dir: Path, port: int, env: dict[str, str],
                 log_path: Path | None = None):
        self.fn = fn
        self.build_dir = build_dir
        self.port = port
        # the local runtime runs stack.yml's example supplier and sender (demo, tests):
        # deployed functions refuse to start with them (chargeback.billing.legal)
        inherited = {k: v for k, v in os.environ.items() if k not in _NOT_IN_THE_IMAGE}
        self.env = {**inherited, **fn.environment, "ALLOW_EXAMPLE_ISSUER": "true",
                    "PYTHONTZPATH": "", **env,
                    "UPSTREAM_PORT": str(port), "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FunctionProcess":
        python = envs.ensure(envs.build_requirements(self.build_dir), label=self.fn.name)
        out = open(self.log_path, "ab") if self.log_path else None
        self.proc = subprocess.Popen(
            [str(python), "index.py"], cwd=self.build_dir, env=self.env,
            stdout=out, stderr=subprocess.STDOUT if out else None,
            preexec_fn=_die_with_parent,
        )
        if out:
            out.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, timeout_s: float = 20, *, require_ok: bool = True
                     ) -> requests.Response:
        """/_/health's first answer; RuntimeError when it is not 200 (a function that
        refuses its configuration answers 503 with the reason, and says it for good)
        unless not `require_ok`, or when the process exits or never answers."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"function {self.fn.name} exited with {self.proc.returncode}"
                                   + (f"; see {self.log_path}" if self.log_path else ""))
            try:
                answer = requests.get(f"{self.url}/_/health", timeout=1)
            except requests.RequestException:
                time.sleep(0.05)
                continue
            if answer.status_code != 200 and require_ok:
                raise RuntimeError(f"function {self.fn.name} is not healthy: "
                                   f"{answer.status_code} {answer.text.strip()}")
            return answer
        raise RuntimeError(f"function {self.fn.name} not healthy after {timeout_s}s")

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
