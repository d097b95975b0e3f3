"""stack.yml is deployable as written, and scripts/up reports bad input in one line."""
import subprocess
import sys

import pytest

from devstack import stack as stackfile
from devstack.pg import free_port

from .conftest import ROOT
from .stack_helpers import FUNCTIONS, _env


def test_stack_declares_the_seven_functions_in_openfaas_system(product_stack):
    assert sorted(product_stack.functions) == [
        "aggregate-month", "deliver-webhooks", "email-invoice", "evaluate-budgets",
        "meter-capacity", "receive-usage", "tenant-portal"] == sorted(FUNCTIONS)
    # and each has its folder under functions/, with nothing else there
    assert sorted(p.name for p in (ROOT / "functions").iterdir() if p.is_dir()) == sorted(
        product_stack.functions)
    for fn in product_stack.functions.values():
        assert fn.namespace == "openfaas-system", fn.name
        assert (fn.handler / "handler.py").is_file(), fn.name
        assert (fn.handler / "requirements.txt").is_file(), fn.name
        assert (ROOT / "template" / fn.lang / "template.yml").is_file(), fn.name
        assert (ROOT / "template" / fn.lang / "Dockerfile").is_file(), fn.name


def test_shared_package_and_migrations_reach_every_image(product_stack):
    assert {p.name for p in product_stack.copy} == {"chargeback", "sql", "pricebook.yml"}


def test_cron_annotations_match_cron_connector(product_stack):
    fns = product_stack.functions
    assert fns["meter-capacity"].schedule == "* * * * *"
    assert fns["aggregate-month"].schedule == "7 * * * *"
    assert fns["receive-usage"].schedule is None
    assert fns["meter-capacity"].annotations["com.openfaas.serviceaccount"] == \
        "chargeback-meter-capacity"
    assert (ROOT / "functions" / "meter-capacity" / "rbac.yaml").is_file()


def test_image_names_follow_registry_and_tag(tmp_path):
    text = (ROOT / "stack.yml").read_text()
    out = stackfile.envsubst(text, {"REGISTRY": "reg.example/team", "TAG": "1.2.3"})
    assert "image: reg.example/team/chargeback-receive-usage:1.2.3" in out
    assert "image: ghcr.io/example/chargeback-receive-usage:latest" in \
        stackfile.envsubst(text, {})


def test_template_dir_is_not_git_ignored():
    out = subprocess.run(["git", "check-ignore", "-q", "template/python3-http/template.yml"],
                         cwd=ROOT)
    assert out.returncode == 1


@pytest.mark.parametrize("text, message", [
    ("version: 2.0\nprovider: {name: openfaas}\nfunctions: {}\n", "version: must be 1.0"),
    ("version: 1.0\nprovider: {name: lambda}\nfunctions: {}\n", "provider.name: must be openfaas"),
    ("version: 1.0\nprovider: {name: openfaas}\nfunctions:\n  f: {lang: python3-http}\n",
     "functions.f.handler: missing"),
    ("version: 1.0\nprovider: {name: openfaas}\nfunctions:\n  f: {lang: nope, handler: ./tests/functions/echo}\n",
     "functions.f.lang: no template/nope/"),
    ("version: 1.0\nprovider: {name: openfaas}\nfunctions:\n  f: {lang: python3-http, handler: ./nowhere}\n",
     "functions.f.handler: ./nowhere has no handler.py"),
    ("version: 1.0\nfunctions: [\n", "not valid YAML"),
])
def test_malformed_stack_makes_up_exit_with_one_line(tmp_path, text, message):
    for folder in ("template", "tests"):  # the project as faas-cli would see it
        (tmp_path / folder).symlink_to(ROOT / folder)
    bad = tmp_path / "stack.yml"
    bad.write_text(text)
    out = subprocess.run([sys.executable, "-m", "devstack.up", "-f", str(bad)],
                         capture_output=True, text=True, timeout=60,
                         env=_env(tmp_path, GATEWAY_PORT=str(free_port())))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert str(bad) in lines[0] and message in lines[0]


def test_port_in_use_is_reported_with_number_and_variable(tmp_path):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "devstack.up"], capture_output=True,
                             text=True, timeout=60, env=_env(tmp_path, GATEWAY_PORT=str(port)))
    assert out.returncode == 2
    assert out.stderr.strip() == \
        f"scripts/up: port {port} is in use: set GATEWAY_PORT to another port"


