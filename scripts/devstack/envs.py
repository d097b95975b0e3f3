"""Each function's own Python environment, made from its build context alone.

An image installs the template's requirements.txt, then the function's own
(function/requirements.txt), and nothing else (template/python3-http/Dockerfile).
The local runtime, the demo, the benchmarks and the tests run every function
with exactly that: one virtual environment per distinct pair of files, under
.venv-fn/<key>/, where the key hashes both files' bytes and the Python
version. It is made on first use (uv: a cold environment in about two seconds,
a warm one from uv's shared cache in under one; pip took 24 s for the same set)
and reused while neither file changes. A module a function imports that its
files do not list is then missing here too, as in its image.

Two processes may ask for the same environment at once (two test runs): the
first takes .venv-fn/<key>.lock, builds in a temporary folder and renames it
into place; the other waits on the lock and then finds it made. A folder
without its stamp (an interrupted build) is never used.

    python -m devstack.envs [-f stack.yml]   prepare every function's environment
    python -m devstack.envs --sizes          ... and print each one's size (du -sk)
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# FUNCTION_VENVS moves them (a test of the cold path uses a folder of its own)
VENVS = Path(os.environ.get("FUNCTION_VENVS") or ROOT / ".venv-fn")
_STAMP = ".chargeback-complete"
# Not --compile-bytecode (as the image's pip does): compiling every module of seven
# environments took minutes; a function process writes the bytecode of what it
# imports instead, once (FunctionProcess).
_INSTALL_OPTIONS: tuple[str, ...] = ()


class FunctionEnvError(RuntimeError):
    """Installing a function's requirements failed; the message is one line."""


def build_requirements(build_dir: Path) -> tuple[Path, Path]:
    """The two files an image installs from a faas-cli build context, in order."""
    return build_dir / "requirements.txt", build_dir / "function" / "requirements.txt"


def base_python() -> str:
    """The interpreter the main .venv was made from (function environments use the same
    Python version as the tests, not whatever python3 is first on PATH)."""
    candidate = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return str(candidate) if candidate.exists() else sys.executable


def key(requirement_files: tuple[Path, ...], python: str | None = None) -> str:
    """The environment's name: both files' bytes (a missing file counts as empty,
    as an image would install nothing from it) and the Python version."""
    digest = hashlib.sha256()
    for path in requirement_files:
        digest.update(path.read_bytes() if path.is_file() else b"")
        digest.update(b"\0")
    digest.update(f"{python or base_python()}|{sys.version}|{_INSTALL_OPTIONS}".encode())
    return digest.hexdigest()[:16]


def _uv() -> str:
    from uv import find_uv_bin  # pinned in requirements.txt (the main .venv)
    return find_uv_bin()


def _run(command: list[str], what: str) -> None:
    # never a Python of uv's own: the function runs on the tests' interpreter version
    env = {**{k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
           "UV_PYTHON_DOWNLOADS": "never"}
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
        raise FunctionEnvError(f"{what}: {' | '.join(lines[-3:]) or f'exit {out.returncode}'}")


def ensure(requirement_files: tuple[Path, ...], *, venvs: Path | None = None,
           label: str = "function") -> Path:
    """The python of the environment that holds exactly `requirement_files`, made now if
    it does not exist yet. FunctionEnvError naming `label` when installing fails."""
    venvs = venvs or VENVS
    python = base_python()
    target = venvs / key(requirement_files, python)
    interpreter = target / "bin" / "python"
    if (target / _STAMP).is_file():
        return interpreter
    venvs.mkdir(parents=True, exist_ok=True)
    with open(venvs / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if (target / _STAMP).is_file():  # another process made it while we waited
            return interpreter
        shutil.rmtree(target, ignore_errors=True)  # an interrupted build
        partial = venvs / f"{target.name}.{os.getpid()}.part"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            _run([_uv(), "venv", "--quiet", "--python", python, str(partial)],
                 f"{label}: creating its environment failed")
            install = [_uv(), "pip", "install", "--quiet", *_INSTALL_OPTIONS, "--python",
                       str(partial / "bin" / "python")]
            for path in requirement_files:
                if path.is_file():
                    install += ["-r", str(path)]
            _run(install, f"{label}: installing {' + '.join(str(p) for p in requirement_files)} "
                          "failed")
            (partial / _STAMP).write_text("\n".join(str(p) for p in requirement_files) + "\n")
            partial.rename(target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return interpreter


def for_function(stack, fn, **options) -> Path:
    """The environment of stack.yml's function `fn`: the template's requirements.txt, then
    the handler folder's (the template's sample function/requirements.txt when the handler
    has none, as faas-cli lays it over)."""
    template = stack.template_dir(fn)
    own = fn.handler / "requirements.txt"
    files = (template / "requirements.txt",
             own if own.is_file() else template / "function" / "requirements.txt")
    return ensure(files, label=fn.name, **options)


def main(argv: list[str] | None = None) -> int:
    from .stack import StackError, load
    parser = argparse.ArgumentParser(prog="python -m devstack.envs", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("-f", "--file", default=str(ROOT / "stack.yml"))
    parser.add_argument("--sizes", action="store_true",
                        help="print each function's environment and its size (du -sk)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        stack = load(args.file)
        made = {fn.name: for_function(stack, fn) for fn in stack.functions.values()}
    except (StackError, FunctionEnvError) as exc:
        print(f"chargeback: {exc}", file=sys.stderr)
        return 1
    print(f"chargeback: {len(made)} function environments ({len(set(made.values()))} distinct) "
          f"ready in {time.monotonic() - started:.1f} s under {VENVS}", file=sys.stderr)
    if args.sizes:
        for name, python in made.items():
            venv = python.parent.parent
            # measured alone: uv hard-links from its cache, and du counts a file once per call
            kib = int(subprocess.run(["du", "-sk", str(venv)], capture_output=True, text=True,
                                     check=True).stdout.split()[0])
            print(f"{name}\t{venv.relative_to(ROOT) if venv.is_relative_to(ROOT) else venv}"
                  f"\t{kib / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
