"""Read stack.yml the way faas-cli does: envsubst over the whole file, then YAML.

Only the parts the local runtime uses are modelled. A problem is reported as
one line naming the file, the key and what is wrong.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# faas-cli supports $VAR, ${VAR} and ${VAR:-default} (default when unset or empty).
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


class StackError(ValueError):
    pass


def envsubst(text: str, environ: Mapping[str, str]) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(3)
        found = environ.get(name, "")
        return found if found else (match.group(2) or "")
    return _VAR.sub(value, text)


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    lang: str
    handler: Path
    namespace: str
    environment: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def min_replicas(self) -> int:
        """Replicas the runtime starts: com.openfaas.scale.min, 1 when unset (as OpenFaaS)."""
        raw = self.labels.get("com.openfaas.scale.min", "1").strip()
        return max(1, int(raw)) if raw.isdigit() else 1

    @property
    def schedule(self) -> str | None:
        """The cron schedule when cron-connector would pick this function, else None."""
        if self.annotations.get("topic") == "cron-function":
            return self.annotations.get("schedule") or None
        return None


@dataclass(frozen=True)
class Stack:
    path: Path
    root: Path
    copy: tuple[Path, ...]
    functions: dict[str, FunctionSpec]

    def template_dir(self, fn: FunctionSpec) -> Path:
        return self.root / "template" / fn.lang


def _mapping(value, where: str, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StackError(f"{where}: {key}: expected a mapping, got {type(value).__name__}")
    return value


def load(path: str | os.PathLike, environ: Mapping[str, str] | None = None,
         root: str | os.PathLike | None = None) -> Stack:
    """Parse a stack file; relative paths resolve against `root` (faas-cli's working
    directory), by default the stack file's folder."""
    path = Path(path).resolve()
    where = str(path)
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StackError(f"{where}: cannot read: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(envsubst(text, environ))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark else ""
        raise StackError(f"{where}: {at}not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict):
        raise StackError(f"{where}: expected a mapping at the top level")
    if str(doc.get("version")) != "1.0":
        raise StackError(f"{where}: version: must be 1.0, got {doc.get('version')!r}")
    provider = _mapping(doc.get("provider"), where, "provider")
    if provider.get("name") != "openfaas":
        raise StackError(f"{where}: provider.name: must be openfaas, got {provider.get('name')!r}")
    root = Path(root).resolve() if root else path.parent
    copy = []
    for item in _mapping(doc.get("configuration"), where, "configuration").get("copy") or []:
        src = (root / str(item)).resolve()
        if root not in src.parents or not src.exists():
            raise StackError(f"{where}: configuration.copy: {item!r} is not a folder in the project")
        copy.append(src)
    functions_doc = _mapping(doc.get("functions"), where, "functions")
    if not functions_doc:
        raise StackError(f"{where}: functions: no functions declared")
    functions = {}
    for name, spec in functions_doc.items():
        key = f"functions.{name}"
        spec = _mapping(spec, where, key)
        for required in ("lang", "handler"):
            if not spec.get(required):
                raise StackError(f"{where}: {key}.{required}: missing")
        handler = (root / str(spec["handler"])).resolve()
        if not (handler / "handler.py").is_file():
            raise StackError(f"{where}: {key}.handler: {spec['handler']} has no handler.py")
        if not (root / "template" / str(spec["lang"]) / "index.py").is_file():
            raise StackError(f"{where}: {key}.lang: no template/{spec['lang']}/ in the project")
        secrets = spec.get("secrets") or []
        if not isinstance(secrets, list):
            raise StackError(f"{where}: {key}.secrets: expected a list of names")
        functions[str(name)] = FunctionSpec(
            name=str(name),
            lang=str(spec["lang"]),
            handler=handler,
            namespace=str(spec.get("namespace") or "openfaas-fn"),
            environment={str(k): str(v) for k, v in
                         _mapping(spec.get("environment"), where, f"{key}.environment").items()},
            secrets=tuple(str(s) for s in secrets),
            annotations={str(k): str(v) for k, v in
                         _mapping(spec.get("annotations"), where, f"{key}.annotations").items()},
            labels={str(k): str(v) for k, v in
                    _mapping(spec.get("labels"), where, f"{key}.labels").items()},
        )
    return Stack(path=path, root=root, copy=tuple(copy), functions=functions)
