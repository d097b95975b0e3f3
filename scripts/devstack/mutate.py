"""scripts/mutate: apply each named mutation (devstack.mutations) to a temporary copy of
the checkout, run its covering tests there, and report caught or survived.

    scripts/mutate                 every mutation, one after another
    scripts/mutate NAME ...        only these
    scripts/mutate --list          names, files and covering tests; runs nothing

The copy is taken once (the working tree as it is, without .git, .venv and var/) and
each mutation is applied to it, run, and reverted before the next. The tests run with
this checkout's .venv and the copy first on PYTHONPATH, so functions started by the
tests import the mutated code. Exit status: 0 when every mutation was caught; 1 when
one survived, no longer applies (its original text is not found exactly once) or its
tests could not run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devstack.mutations import MUTATIONS, Mutation

ROOT = Path(__file__).resolve().parents[2]
LEFT_OUT = {".git", ".venv", "var", "build", "__pycache__", ".pytest_cache", ".hypothesis"}
TIMEOUT_S = 600  # one mutation's tests; far above what any takes


class NotApplicable(Exception):
    pass


def problem(mutation: Mutation, root: Path = ROOT) -> str | None:
    """Why `mutation` no longer applies to the tree at `root`, or None."""
    path = root / mutation.file
    if not path.is_file():
        return f"mutation {mutation.name}: {mutation.file} does not exist"
    found = path.read_text().count(mutation.original)
    if found != 1:
        where = "not found" if found == 0 else f"found {found} times"
        return f"mutation {mutation.name}: original text {where} in {mutation.file}"
    for test in mutation.tests:
        test_file, _, test_name = test.partition("::")
        test_path = root / test_file
        if not test_path.is_file() or f"def {test_name}(" not in test_path.read_text():
            return f"mutation {mutation.name}: covering test {test} does not exist"
    return None


def copy_tree(destination: Path) -> Path:
    def ignore(_directory, names):
        return [n for n in names if n in LEFT_OUT]
    shutil.copytree(ROOT, destination, symlinks=True, ignore=ignore)
    return destination


def run(mutation: Mutation, copy: Path) -> tuple[str, float, str]:
    """(caught | survived | error, seconds, pytest's output) of one mutation in `copy`."""
    path = copy / mutation.file
    original = path.read_text()
    path.write_text(original.replace(mutation.original, mutation.replacement, 1))
    env = {**os.environ, "PYTHONPATH": f"{copy}:{copy / 'scripts'}",
           "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    try:
        done = subprocess.run(
            # hypothesis's plugin costs seconds of import and no covering test needs it
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
             "-p", "no:hypothesispytest", *mutation.tests],
            cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = -1, f"timed out after {TIMEOUT_S} s\n{exc.stdout or ''}"
    finally:
        path.write_text(original)
    seconds = time.monotonic() - started
    # pytest: 0 all passed, 1 some test failed; anything else (collection error,
    # no test found, interrupted) says nothing about the mutation
    outcome = {0: "survived", 1: "caught"}.get(code, "error")
    return outcome, seconds, output


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/mutate", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="list the mutations, run nothing")
    args = parser.parse_args(argv)
    by_name = {m.name: m for m in MUTATIONS}
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        print(f"scripts/mutate: unknown mutation {', '.join(unknown)} "
              f"(scripts/mutate --list names them)", file=sys.stderr)
        return 2
    chosen = [by_name[n] for n in args.names] or list(MUTATIONS)
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.invariant}\n    {m.file}\n" +
                  "".join(f"    {t}\n" for t in m.tests))
        return 0
    broken = [p for m in chosen if (p := problem(m))]
    for p in broken:
        print(p, file=sys.stderr)
    if broken:
        print("scripts/mutate: update devstack/mutations.py to the code as it is now",
              file=sys.stderr)
        return 1
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="chargeback-mutate-") as tmp:
        copy = copy_tree(Path(tmp) / "tree")
        for m in chosen:
            outcome, seconds, output = run(m, copy)
            results.append((m, outcome))
            print(f"{outcome:>8}  {m.name}  ({seconds:.0f} s)  {m.invariant}", flush=True)
            if outcome != "caught":
                print("\n".join("          " + line
                                for line in output.strip().splitlines()[-15:]), flush=True)
    survived = [m.name for m, o in results if o == "survived"]
    errors = [m.name for m, o in results if o == "error"]
    print(f"{len(results)} mutations: {len(results) - len(survived) - len(errors)} caught, "
          f"{len(survived)} survived, {len(errors)} could not run "
          f"({time.monotonic() - started:.0f} s)")
    return 1 if survived or errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
