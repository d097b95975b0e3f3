"""How the test suite is laid out: what tests share lives in conftest.py or a helpers
module, never in another test module (importing one runs its tests' module twice under
another name and ties unrelated tests together)."""
from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent

KNOWN: set[str] = set()  # none: every test module imports only helpers


def _test_modules_imported(path: Path) -> set[str]:
    """Names of the test_ modules `path` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            # `from .test_x import y`, and `from . import test_x` / `from tests import test_x`
            names = [node.module or ""] + [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {name.rsplit(".", 1)[-1] for name in names
                  if name.rsplit(".", 1)[-1].startswith("test_")}
    return found


def test_no_test_module_imports_another():
    offenders = {path.name: sorted(imported)
                 for path in sorted(TESTS.glob("test_*.py")) if path.name not in KNOWN
                 for imported in [_test_modules_imported(path)] if imported}
    assert offenders == {}, "move what they share to conftest.py or a helpers module"
