"""The deploy steps match the code: per function, the secrets its code reads are the ones
stack.yml mounts and the deploy section tells the operator to create, and the environment
variables it reads are in its stack.yml `environment:` block.

Read from the code (tests/function_code.py's walk from each handler): a secret is read by
`read_secret(<name>)` (a literal, or a module constant holding it) or through a setting
whose parser reads a secret (chargeback.core.parse: `or_secret("database-url")`,
a field whose variable is the secret's name); a variable by `settings.<field>` (the field
declares its variable) or by `environ.get("NAME")`, `os.getenv("NAME")`, `environ["NAME"]`.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from . import function_code as code
from .conftest import ROOT
from .stack_helpers import FUNCTIONS

# Variables a function may read without its stack.yml block naming them, and why: each a
# local-run override, something Kubernetes or OpenFaaS sets, or a bound whose default is
# the production value (settings.py says each default).
NOT_IN_STACK_YML = {
    "SECRETS_DIR": "local runs only; OpenFaaS mounts /var/openfaas/secrets",
    "KUBERNETES_SERVICE_HOST": "set by Kubernetes in every pod",
    "KUBECONFIG": "local runs only; in the cluster the function's service account is used",
    "ALLOW_CLOCK_OVERRIDE": "demo and tests only: never in stack.yml (settings.py)",
    "ALLOW_EXAMPLE_ISSUER": "demo only: deployed functions refuse the example issuer",
    "FONT_CACHE_DIR": "the prepared fonts' cache; the default, the image's /tmp, works",
    "FUNCTION_NAMESPACE": "openfaas-system by default, where stack.yml deploys every function",
    "PRICEBOOK_FILE": "the pricebook.yml stack.yml copies into every image, by default",
    "PRICEBOOK_FILE_WINS": "a one-off operator choice the README's price book section explains",
    "SMTP_CA_FILE": "only for an SMTP server behind a private CA",
    "DB_POOL_MAX": "database bound; its default suits every function",
    "DB_CONNECT_TIMEOUT": "database bound; its default suits every function",
    "DB_STATEMENT_TIMEOUT": "database bound; functions with long statements set it",
    "DB_LOCK_TIMEOUT": "database bound; its default suits every function",
    "DB_IDLE_IN_TRANSACTION_TIMEOUT": "database bound; its default suits every function",
    "DB_MIGRATION_TIMEOUT": "database bound; its default suits every function",
    "KUBE_TIMEOUT_SECONDS": "Kubernetes API bound; its default is below exec_timeout",
    "KUBE_PAGE_SIZE": "Kubernetes list page; its default suits large clusters",
    "CREDIT_NOTE_PREFIX": "CN- by default, as the README's numbering section says",
    "CORRECTION_MIN_AMOUNT": "0 by default: every correction is issued",
    "TAX_ROUNDING": "half_up by default (DESIGN.md)",
    "ISSUER_VAT_CURRENCY": "off by default: only for a member state that asks for it",
    "MAIL_BCC": "off by default: an archive copy is the operator's choice",
    "PORTAL_TOKEN_MAX_DAYS": "120 days by default, as Stripe's hosted invoice page",
    "PROMETHEUS_MAX_GAP_SECONDS": "Prometheus bound; its default suits a 1-minute scrape",
    "PROMETHEUS_BACKFILL_HOURS": "Prometheus backfill; its default covers a weekend outage",
    "PROMETHEUS_TIMEOUT_SECONDS": "Prometheus bound; its default is below exec_timeout",
    "PROMETHEUS_EGRESS_SERIES": "the standard cAdvisor series by default (docs/meters.md)",
    "PROMETHEUS_GPU_SERIES": "the standard DCGM series by default (docs/meters.md)",
    "MAIL_MAX_ATTEMPTS": "mail retry bound; its default suits every mail",
    "MAIL_RETRY_BASE_SECONDS": "mail retry bound; its default suits every mail",
    "BUDGET_FORECAST_MIN_DAYS": "3 days by default before a month's forecast is trusted",
}
# (function, variable): reached by the walk, never read on the function's own paths. The
# walk follows modules, not calls: name each with the reason.
REACHED_NOT_READ = {
    ("email-invoice", "LEGAL_CHECKS"): "billing.legal's assess runs at the close; the mail "
                                       "uses its lines() only",
    ("email-invoice", "TENANT_ANNOTATION_PREFIX"): "the same: billing.legal's assess",
    ("tenant-portal", "LEGAL_CHECKS"): "the same: billing.legal's assess",
    ("tenant-portal", "TENANT_ANNOTATION_PREFIX"): "the same: billing.legal's assess",
    ("tenant-portal", "CREDIT_BALANCE_LOW"): "the portal reads credit balances; the alert is "
                                             "the close's (billing.grant_store.alert_low)",
    ("evaluate-budgets", "CREDIT_BALANCE_LOW"): "the same: the alert is the close's",
    # the supplier's contact is frozen on each invoice at the close; a rendering reads it there
    **{(fn, f"ISSUER_CONTACT_{part}"): "billing.legal's assess and freeze run at the close"
       for fn in ("email-invoice", "tenant-portal") for part in ("NAME", "PHONE", "EMAIL")},
    ("tenant-portal", "GATEWAY_URL"): "payment_store and grant_store wake deliver-webhooks on "
                                      "the close's and the operator's paths, not the portal's",
}
# What of-watchdog reads, not the code
WATCHDOG_VARIABLES = {"read_timeout", "write_timeout", "exec_timeout", "max_inflight"}
TEMPLATE_SERVER = ROOT / "template" / "python3-http" / "index.py"


@pytest.fixture(scope="module")
def stack():
    from devstack import stack as stackfile
    return stackfile.load(ROOT / "stack.yml")


def _settings_fields(stack, fn) -> dict[str, tuple[str | None, str | None]]:
    """Settings field -> (environment variable, secret) it is read from, from the source of
    the reachable module that defines `class Settings`."""
    modules = code.reach(stack, fn).modules.values()
    parsers = {node.name: node for module in modules for node in module.tree.body
               if isinstance(node, ast.FunctionDef)}   # parse.positive, parse.or_secret, …
    for module in modules:
        for node in module.tree.body:
            if isinstance(node, ast.ClassDef) and node.name == "Settings":
                return {item.target.id: _source(item.value, parsers) for item in node.body
                        if isinstance(item, ast.AnnAssign) and isinstance(item.value, ast.Call)
                        and getattr(item.value.func, "id", None) == "setting"}
    raise AssertionError("no module the handlers reach defines class Settings")


def _reads_a_secret(function: ast.FunctionDef) -> bool:
    return any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "read_secret"
               for n in ast.walk(function))


def _name(node: ast.expr) -> str:
    """`parse.positive` or `positive`: positive."""
    return node.attr if isinstance(node, ast.Attribute) else node.id


def _source(call: ast.Call, parsers: dict[str, ast.FunctionDef]) -> tuple[str | None, str | None]:
    variable = call.args[0].value
    parser = call.args[1]
    if isinstance(parser, ast.Call):  # or_secret("database-url"): the variable, else the secret
        if _name(parser.func) in parsers and _reads_a_secret(parsers[_name(parser.func)]):
            return variable, parser.args[0].value
    elif _name(parser) in parsers and _reads_a_secret(parsers[_name(parser)]):
        return None, variable  # the field's "variable" is the secret's name
    return variable, None


def _constants(reached: code.Reach) -> dict[str, str]:
    """Module-level NAME = "text" of every reachable module (names are unique enough)."""
    found = {}
    for module in reached.modules.values():
        for node in module.tree.body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                found[node.targets[0].id] = node.value.value
    return found


def _text(node: ast.AST, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
    return constants.get(name)


def reads(stack, fn, start: Path | None = None) -> tuple[set[str], set[str]]:
    """(secrets, environment variables) fn's code reads; with `start`, that one file's
    (the template's server)."""
    reached = code.reach_file(stack, fn, start) if start else code.reach(stack, fn)
    fields = _settings_fields(stack, fn)
    constants = _constants(reached)
    secrets, variables = set(), set()
    for module in reached.modules.values():
        passed_on = {arg.arg for function in ast.walk(module.tree)
                     if isinstance(function, (ast.FunctionDef, ast.Lambda))
                     for arg in function.args.args + function.args.kwonlyargs}
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Attribute) and node.attr in fields and (
                    ast.unparse(node.value).lower().endswith("settings")):
                variable, secret = fields[node.attr]
                if secret:
                    secrets.add(secret)
                elif variable:
                    variables.add(variable)
            elif isinstance(node, ast.Call) and node.args:
                callee = ast.unparse(node.func)
                if callee.endswith("read_secret"):
                    name = _text(node.args[0], constants)
                    if name is None and ast.unparse(node.args[0]) in passed_on:
                        continue  # a parser handing on its caller's name: read there
                    assert name, f"{module.name}: read_secret({ast.unparse(node.args[0])}): " \
                                 "not a name this test can read"
                    secrets.add(name)
                elif callee.endswith(("environ.get", "os.getenv")):
                    name = _text(node.args[0], constants)
                    if name:
                        variables.add(name)
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ"):
                name = _text(node.slice, constants)
                if name:
                    variables.add(name)
    return secrets, variables


def _documented_secret_creates() -> dict[str, Path]:
    """secret name -> the document whose deploy steps create it (`faas-cli secret create
    NAME ...`, in README.md or docs/*.md, in a code block or inline, continued lines too)."""
    found = {}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8").replace("\\\n", " ")
        for name in re.findall(r"faas-cli\s+secret\s+create\s+([A-Za-z0-9][A-Za-z0-9._-]*)", text):
            found.setdefault(name, path)
    return found


def test_the_product_stack_is_what_these_tests_walk(stack):
    assert set(stack.functions) == FUNCTIONS


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_stack_yml_mounts_exactly_the_secrets_the_code_reads(stack, name):
    fn = stack.functions[name]
    secrets, _ = reads(stack, fn)
    assert not secrets - set(fn.secrets), (
        f"{name}'s code reads {sorted(secrets - set(fn.secrets))}: add them to its "
        "`secrets:` in stack.yml (else the function never finds them)")
    assert not set(fn.secrets) - secrets, (
        f"stack.yml mounts {sorted(set(fn.secrets) - secrets)} into {name}, whose code never "
        "reads them: remove them")


def test_the_deploy_steps_create_every_secret_a_function_mounts(stack):
    documented = _documented_secret_creates()
    mounted = {secret: name for name, fn in stack.functions.items() for secret in fn.secrets}
    missing = sorted(set(mounted) - set(documented))
    assert not missing, ("no `faas-cli secret create` line in README.md (or docs/) for "
                         + ", ".join(f"{s} (mounted by {mounted[s]})" for s in missing))


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_stack_yml_declares_every_variable_the_code_reads(stack, name):
    fn = stack.functions[name]
    _, variables = reads(stack, fn)
    missing = sorted(variables - set(fn.environment) - set(NOT_IN_STACK_YML)
                     - {variable for function, variable in REACHED_NOT_READ if function == name})
    assert not missing, (f"{name}'s code reads {missing}: declare them in its stack.yml "
                         "`environment:` (or, for a local-only or bound-with-a-good-default "
                         "variable, in NOT_IN_STACK_YML with the reason)")


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_stack_yml_declares_no_variable_the_code_ignores(stack, name):
    fn = stack.functions[name]
    _, variables = reads(stack, fn)
    _, server_variables = reads(stack, fn, TEMPLATE_SERVER)  # MAX_BODY_BYTES, TRUSTED_PROXY
    stale = sorted(set(fn.environment) - variables - server_variables - WATCHDOG_VARIABLES)
    assert not stale, f"stack.yml gives {name} {stale}, which its code never reads: remove them"
