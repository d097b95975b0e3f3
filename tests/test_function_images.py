"""Each function's image installs what its code reaches, and nothing more; each function
starts from an environment made of its build context alone.

Read from the code (tests/function_code.py walks every import from handler.py, lazy
ones too), not from what happens to run: a module only the portal's .pdf route
imports counts as much as one imported at start.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests
from devstack import envs
from devstack.functions import FunctionProcess, lay_out
from devstack.pg import free_port

from . import function_code as code
from .conftest import ROOT, WEBHOOK_SIGNING_SECRET
from .stack_helpers import FUNCTIONS

# Distributions a function needs without importing them: each with the import that
# needs it (reached -> the distribution must be installed, and may be listed) and why.
# (The fonts fontpkg finds by family name: function_code.font_families.)
NEEDED_WITHOUT_IMPORT = {
    "tzdata": ("zoneinfo", "zoneinfo's zones: the slim image has no system zone files"),
    "uharfbuzz": ("fpdf", "fpdf2's text shaping (set_text_shaping): Arabic, Hebrew, Thai, "
                          "Devanagari"),
}
FONT = "a font the code names for fontpkg.path"

ROOT_PINS = code.requirement_lines(ROOT / "requirements.txt")


def _installed(python: Path, import_names: list[str], distributions: list[str]) -> dict:
    """Which of `import_names` the environment of `python` cannot import, and which of
    `distributions` it lacks (looked up, not imported)."""
    probe = ("import importlib.util, importlib.metadata as md, json, sys\n"
             "names, dists = json.loads(sys.argv[1])\n"
             "def has(d):\n"
             "    try:\n"
             "        md.distribution(d); return True\n"
             "    except md.PackageNotFoundError:\n"
             "        return False\n"
             "print(json.dumps({'modules': [n for n in names if importlib.util.find_spec(n) is None],"
             " 'distributions': [d for d in dists if not has(d)]}))\n")
    out = subprocess.run([str(python), "-I", "-c", probe, json.dumps([import_names, distributions])],
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def _pin_hint(distribution: str, fn) -> str:
    line = ROOT_PINS.get(distribution, distribution)
    return f"add `{line}` to {fn.handler.relative_to(ROOT)}/requirements.txt"


@pytest.fixture(scope="module")
def stack():
    from devstack import stack as stackfile
    return stackfile.load(ROOT / "stack.yml")


def test_the_product_stack_is_what_these_tests_walk(stack):
    assert set(stack.functions) == FUNCTIONS


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_module_a_function_can_reach_is_installed_in_its_environment(stack, name):
    fn = stack.functions[name]
    reached = code.reach(stack, fn)
    unknown = sorted(n for n in reached.third_party if not code.distributions(n))
    assert not unknown, (f"{name}: imports {unknown}, which no distribution in requirements.txt "
                         "provides")
    needed = sorted({d for d, (trigger, _) in NEEDED_WITHOUT_IMPORT.items()
                     if trigger in reached.third_party or trigger in reached.stdlib}
                    | code.font_families(reached))
    missing = _installed(envs.for_function(stack, fn), sorted(reached.third_party), needed)
    problems = [f"imports {m} (from {', '.join(sorted(reached.third_party[m]))}): "
                + _pin_hint(sorted(code.distributions(m))[0], fn) for m in missing["modules"]]
    problems += [f"needs {d} ({NEEDED_WITHOUT_IMPORT.get(d, (None, FONT))[1]}): "
                 f"{_pin_hint(d, fn)}" for d in missing["distributions"]]
    assert not problems, f"{name}'s image would lack:\n" + "\n".join(problems)


def _justified(reached: code.Reach) -> dict[str, str]:
    """distribution -> why an image that reaches `reached` may list it."""
    why = {}
    for name, importers in reached.third_party.items():
        for dist in code.distributions(name):
            why.setdefault(dist, f"imported as {name}")
            for dependency in code.dependencies(dist) - {dist}:
                why.setdefault(dependency, f"installed with {dist} (pinned)")
    for dist, (trigger, reason) in NEEDED_WITHOUT_IMPORT.items():
        if trigger in reached.third_party or trigger in reached.stdlib:
            why.setdefault(dist, reason)
    for dist in code.font_families(reached):
        why.setdefault(dist, FONT)
    return why


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_a_function_lists_only_what_its_code_reaches(stack, name):
    fn = stack.functions[name]
    own = fn.handler / "requirements.txt"
    why = _justified(code.reach(stack, fn))
    unneeded = sorted(set(code.requirement_lines(own)) - set(why))
    assert not unneeded, (f"{own.relative_to(ROOT)} lists {unneeded}, which no module "
                          f"{name}'s handler reaches imports or needs: remove them (a leaner "
                          "image)")


def test_the_template_lists_only_what_its_server_imports(stack):
    template = ROOT / "template" / "python3-http"
    fn = next(iter(stack.functions.values()))
    server = code.reach_file(stack, fn, template / "index.py")
    why = _justified(server)
    unneeded = sorted(set(code.requirement_lines(template / "requirements.txt")) - set(why))
    assert not unneeded, (f"template/python3-http/requirements.txt lists {unneeded}, which "
                          "index.py does not import: every image would carry them")


def test_every_image_pin_equals_the_root_pin():
    files = [ROOT / "template" / "python3-http" / "requirements.txt",
             *sorted((ROOT / "functions").glob("*/requirements.txt"))]
    differ = [f"{path.relative_to(ROOT)}: {line!r} (requirements.txt: "
              f"{ROOT_PINS.get(dist)!r})"
              for path in files for dist, line in code.requirement_lines(path).items()
              if line.replace(" ", "") != (ROOT_PINS.get(dist) or "").replace(" ", "")]
    assert not differ, "\n".join(differ)


@pytest.fixture
def every_secret(tmp_path) -> Path:
    """Every secret stack.yml names, with values a function accepts at start; the
    database is never contacted before a request (port 9 refuses)."""
    directory = tmp_path / "secrets"
    directory.mkdir()
    for name in ("webhook-secret", "admin-token", "portal-signing-key"):
        (directory / name).write_text(f"{name}-of-32-bytes-or-more-for-hs256\n")
    (directory / "webhook-signing-secret").write_text(WEBHOOK_SIGNING_SECRET + "\n")
    (directory / "database-url").write_text("postgresql://chargeback@127.0.0.1:9/none\n")
    (directory / "smtp-url").write_text("smtp://127.0.0.1:9\n")
    return directory


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_function_starts_from_its_build_context_alone(stack, name, tmp_path, every_secret):
    fn = stack.functions[name]
    build = lay_out(stack, fn, tmp_path / "build")  # as faas-cli build --shrinkwrap does
    kubeconfig = tmp_path / "kubeconfig"  # read at the first tick, not at start
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    process = FunctionProcess(fn, build, free_port(), {
        "SECRETS_DIR": str(every_secret), "GATEWAY_URL": "http://127.0.0.1:9",
        "KUBECONFIG": str(kubeconfig)}, log_path=tmp_path / f"{name}.log").start()
    try:
        process.wait_healthy(timeout_s=60)
        health = requests.get(f"{process.url}/_/health", timeout=5)
        assert health.status_code == 200, health.text
        # the interpreter is the one of an environment made from build/<fn>'s two files
        python = Path(process.proc.args[0])
        assert python == envs.ensure(envs.build_requirements(build))
        isolated = _installed(python, ["pytest", "chargeback"], [])["modules"]
        assert isolated == ["pytest", "chargeback"], "the function sees the tests' packages"
    finally:
        process.stop()
