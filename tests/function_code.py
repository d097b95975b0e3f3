"""What a function's code can reach, read from its source (ast), never imported.

From a stack.yml function's handler.py, every `import` and `from ... import`
(at any depth: inside functions, under `if`, in `try`; only `if TYPE_CHECKING:`
blocks are left out, as they never run) is followed through the modules of its
build context, resolved as the image resolves them: the handler folder's own
files and stack.yml's `configuration.copy` folders (`chargeback/`) sit in
`function/`, which the template puts on sys.path. Nothing here names a module
of chargeback, so moving one changes nothing.

A name that is neither local nor in the standard library is a third-party
import: its distribution must be installed in the function's image.
"""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(distribution: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def requirement_lines(path: Path) -> dict[str, str]:
    """canonical distribution name -> its line (comments and options left out)."""
    found = {}
    if not path.is_file():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        match = _REQUIREMENT_NAME.match(line)
        if line and not line.startswith("-") and match:
            found[canonical(match.group(1))] = line
    return found


def image_requirement_files(stack, fn) -> tuple[Path, Path]:
    """The two files the function's image installs from (the template's Dockerfile)."""
    template = stack.template_dir(fn)
    own = fn.handler / "requirements.txt"
    return (template / "requirements.txt",
            own if own.is_file() else template / "function" / "requirements.txt")


@dataclass
class Module:
    name: str           # as imported in the image: handler's package is `function`
    path: Path
    tree: ast.Module
    is_package: bool

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass
class Reach:
    """What one function's code reaches."""

    modules: dict[str, Module] = field(default_factory=dict)
    # top-level third-party import name -> the local modules that import it
    third_party: dict[str, set[str]] = field(default_factory=dict)
    stdlib: set[str] = field(default_factory=set)


class _Context:
    """The folders of a build context's function/ directory, by top-level name."""

    def __init__(self, stack, fn):
        self.roots: dict[str, Path] = {}
        for item in fn.handler.iterdir():
            if item.suffix == ".py" or (item.is_dir() and item.name != "__pycache__"):
                self.roots[item.stem if item.suffix == ".py" else item.name] = item
        for folder in stack.copy:
            self.roots[folder.name] = folder

    def is_local(self, name: str) -> bool:
        top = name.split(".")[0]
        return top == "function" or top in self.roots

    def files(self, name: str) -> list[tuple[str, Path, bool]]:
        """(module name, file, is package) for `name` and each package above it that
        exists: importing a.b.c runs a/__init__, a/b/__init__, then a/b/c."""
        parts = name.split(".")
        if parts[0] == "function":  # the handler's own package (function/__init__.py: empty)
            parts = parts[1:]
            prefix = ["function"]
        else:
            prefix = []
        if not parts or parts[0] not in self.roots:
            return []
        out = []
        here = self.roots[parts[0]]
        for depth, part in enumerate(parts):
            if depth:
                here = here / part
            dotted = ".".join(prefix + parts[:depth + 1])
            if here.is_dir():
                init = here / "__init__.py"
                if init.is_file():
                    out.append((dotted, init, True))
                continue
            module = here if here.suffix == ".py" else here.with_suffix(".py")
            if module.is_file():
                out.append((dotted, module, False))
            break
        return out


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and ast.unparse(test) in ("TYPE_CHECKING",
                                                              "typing.TYPE_CHECKING")


def _imports(tree: ast.Module):
    """Every Import and ImportFrom node that can run (not under `if TYPE_CHECKING:`)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                stack.extend(child.orelse)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            stack.append(child)


def reach(stack, fn) -> Reach:
    """Walk fn's code from its handler.py; see the module docstring."""
    return _walk(_Context(stack, fn), ("function.handler", fn.handler / "handler.py", False))


def reach_file(stack, fn, path: Path) -> Reach:
    """The imports of the one file `path` (the template's index.py), not followed into
    fn's function/ folder."""
    return _walk(_Context(stack, fn), ("__main__", path, False), follow=False)


def _walk(context: _Context, start: tuple[str, Path, bool], follow: bool = True) -> Reach:
    found = Reach()
    todo = [start]
    while todo:
        name, path, is_package = todo.pop()
        if name in found.modules:
            continue
        module = Module(name, path, ast.parse(path.read_text(encoding="utf-8"), str(path)),
                        is_package)
        found.modules[name] = module
        for node in _imports(module.tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = module.package.split(".")
                    base = base[:len(base) - node.level + 1]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                # `from a import b`: b is a name in a, or its submodule a.b
                targets = [origin] + [f"{origin}.{alias.name}" for alias in node.names
                                      if alias.name != "*"]
            for target in targets:
                top = target.split(".")[0]
                if context.is_local(target):
                    if follow:
                        todo.extend(context.files(target))
                elif top in sys.stdlib_module_names:
                    found.stdlib.add(top)
                elif top:
                    found.third_party.setdefault(top, set()).add(name)
    return found


def font_families(reached: Reach) -> set[str]:
    """The distributions of the fontpkg families the code names: fontpkg finds a family
    ("Noto Sans Arabic") through the entry points of the packages that ship it
    (group fontpkg.family, "noto_sans_arabic"), never by an import, so a module that calls
    fontpkg.path needs the package of each family name it spells."""
    families = {entry.name: canonical(entry.dist.name)
                for entry in importlib.metadata.entry_points(group="fontpkg.family")}
    found = set()
    for module in reached.modules.values():
        source = ast.unparse(module.tree)
        if "fontpkg.path" not in source:
            continue
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                key = re.sub(r"[\s-]+", "_", node.value.strip()).lower()
                if key in families:
                    found.add(families[key])
    return found


@lru_cache(maxsize=1)
def _distributions_of() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions(import_name: str) -> set[str]:
    """The canonical names of the distributions that provide top-level `import_name`,
    as installed in the tests' environment (which has every pinned requirement)."""
    return {canonical(d) for d in _distributions_of().get(import_name, [])}


def import_names(distribution: str) -> set[str]:
    """The top-level names a distribution provides (the tests' environment)."""
    wanted = canonical(distribution)
    return {name for name, dists in _distributions_of().items()
            if wanted in {canonical(d) for d in dists}}


def dependencies(distribution: str) -> set[str]:
    """What `distribution` installs with it (no extras), transitively, canonical names."""
    out, todo = set(), [canonical(distribution)]
    while todo:
        current = todo.pop()
        if current in out:
            continue
        out.add(current)
        try:
            requires = importlib.metadata.requires(current) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            name, _, marker = line.partition(";")
            if "extra" in marker:
                continue
            if marker.strip() and not _marker_holds(marker):
                continue
            match = _REQUIREMENT_NAME.match(name)
            if match:
                todo.append(canonical(match.group(1)))
    return out


def _marker_holds(marker: str) -> bool:
    """The few environment markers pinned requirements use here (python_version,
    sys_platform, implementation_name); an unknown one counts as true."""
    env = {"python_version": f"{sys.version_info[0]}.{sys.version_info[1]}",
           "sys_platform": sys.platform, "implementation_name": sys.implementation.name,
           "platform_python_implementation": "CPython" if sys.implementation.name == "cpython"
           else sys.implementation.name}
    try:
        from packaging.markers import Marker
        return Marker(marker).evaluate(env)
    except Exception:  # packaging missing or a marker it cannot read: keep the dependency
        return True
