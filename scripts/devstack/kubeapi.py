"""A fixture Kubernetes API server for the real `kubernetes` client (tests, scripts/up, demo, bench).

It serves the four lists meter-capacity reads, cluster-wide and namespaced:
`/api/v1/{nodes,namespaces,persistentvolumeclaims,services}` and
`/api/v1/namespaces/<ns>/{persistentvolumeclaims,services}`, with
`labelSelector` (=, ==, !=, in, notin, exists, !exists), `limit` and
`continue` (a token from an older cluster version answers 410 Gone, as the
real API does). Objects come from fixture files shaped like `kubectl get -o
json` output (scripts/devstack/fixtures/cluster/) or from the generator
(devstack.kubegen). Tests can make it refuse (403), fail (5xx) or stall.

    python -m devstack.kubeapi [--cluster DIR | --generate N,NS,PVC,LB] [--port P] [--kubeconfig F]
"""
from __future__ import annotations

import argparse
import base64
import json
import re
import signal
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cluster"
# resource -> (List kind, namespaced)
RESOURCES = {
    "nodes": ("NodeList", False),
    "namespaces": ("NamespaceList", False),
    "persistentvolumeclaims": ("PersistentVolumeClaimList", True),
    "services": ("ServiceList", True),
}
_PATH = re.compile(r"^/api/v1/(?:namespaces/(?P<ns>[^/]+)/)?(?P<resource>[a-z]+)$")
_SET_TERM = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)$")


class SelectorError(ValueError):
    pass


def parse_selector(text: str):
    """A label selector as a predicate over a labels dict."""
    terms = []
    for raw in re.split(r",(?![^(]*\))", text or ""):
        term = raw.strip()
        if not term:
            continue
        match = _SET_TERM.match(term)
        if match:
            values = {v.strip() for v in match.group("values").split(",")}
            key, negate = match.group("key"), match.group("op") == "notin"
            terms.append(lambda l, k=key, v=values, n=negate: (l.get(k) in v) != n
                         if k in l else n)
        elif "!=" in term:
            key, value = (part.strip() for part in term.split("!=", 1))
            terms.append(lambda l, k=key, v=value: l.get(k) != v)
        elif "=" in term:
            key, value = (part.strip() for part in re.split(r"==?", term, maxsplit=1))
            terms.append(lambda l, k=key, v=value: l.get(k) == v)
        elif term.startswith("!"):
            terms.append(lambda l, k=term[1:].strip(): k not in l)
        elif re.match(r"^[A-Za-z0-9./_-]+$", term):
            terms.append(lambda l, k=term: k in l)
        else:
            raise SelectorError(f"unable to parse requirement: {term!r}")
    return lambda labels: all(t(labels) for t in terms)


@dataclass
class _Item:
    namespace: str | None
    labels: dict
    encoded: bytes


class FixtureCluster:
    """Immutable snapshot of the objects served; each object is JSON-encoded once."""

    def __init__(self, objects: Mapping[str, Iterable[dict]], resource_version: int = 1):
        self.resource_version = str(resource_version)
        self.items: dict[str, list[_Item]] = {}
        for resource in RESOURCES:
            listed = []
            for obj in objects.get(resource, ()):
                meta = obj.get("metadata") or {}
                # items of a list carry no kind/apiVersion on a real API server
                item = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
                listed.append(_Item(meta.get("namespace"), meta.get("labels") or {},
                                    json.dumps(item, separators=(",", ":")).encode()))
            self.items[resource] = listed
        self._cache: dict[tuple, list[bytes]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_dir(cls, directory: Path = FIXTURES, resource_version: int = 1) -> "FixtureCluster":
        return cls(load_dir(directory), resource_version)

    def select(self, resource: str, namespace: str | None, selector: str) -> list[bytes]:
        key = (resource, namespace, selector)
        with self._lock:
            if key not in self._cache:
                matches = parse_selector(selector)
                self._cache[key] = [i.encoded for i in self.items[resource]
                                    if (namespace is None or i.namespace == namespace)
                                    and matches(i.labels)]
            return self._cache[key]


def load_dir(directory: Path) -> dict[str, list[dict]]:
    """resource -> items from <resource>.json files (`kubectl get -o json` List shape)."""
    objects = {}
    for resource in RESOURCES:
        path = Path(directory) / f"{resource}.json"
        objects[resource] = json.loads(path.read_text())["items"] if path.exists() else []
    return objects


def write_dir(objects: Mapping[str, list[dict]], directory: Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for resource, items in objects.items():
        (directory / f"{resource}.json").write_text(
            json.dumps({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items},
                       indent=1) + "\n")
    return directory


def _status(code: int, reason: str, message: str, details: dict | None = None) -> bytes:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                       "status": "Failure", "message": message, "reason": reason,
                       "details": details or {}, "code": code}).encode()


class FixtureKubeApi:
    """The server; `url`, `write_kubeconfig()`, and knobs for failure tests.

    forbidden: resources answered with 403 as RBAC would; fail_status: every
    request answered with that status (e.g. 503); delay_s: seconds to stall
    before answering; expire_continue: how many of the next requests that
    carry a continue token are answered 410 Gone (as after etcd compaction);
    truncate_pages: how many of the next list pages (after skip_pages more)
    come back cut in half: with truncate_mode "connection" the headers promise
    the whole page and the connection closes mid-body (a dropped proxy or
    pod), with "json" the half page is all there is (its length agrees);
    requests: (path, query) of every request, in order.
    """

    def __init__(self, cluster: FixtureCluster | None = None, port: int = 0,
                 host: str = "127.0.0.1",
                 service_account: str = "system:serviceaccount:openfaas-system:"
                                        "chargeback-meter-capacity"):
        self.cluster = cluster or FixtureCluster.from_dir()
        self.forbidden: set[str] = set()
        self.fail_status: int | None = None
        self.delay_s = 0.0
        self.expire_continue = 0
        self.truncate_pages = 0
        self.truncate_mode = "connection"
        self.skip_pages = 0
        self.requests: list[tuple[str, dict]] = []
        self.service_account = service_account
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def set_cluster(self, objects: Mapping[str, Iterable[dict]]) -> None:
        """Serve other objects from now on (a new resourceVersion, as after a change)."""
        self.cluster = FixtureCluster(objects, int(self.cluster.resource_version) + 1)

    def start(self) -> "FixtureKubeApi":
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fixture-kubeapi",
                                        kwargs={"poll_interval": 0.05})  # a quick stop
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open keep-alive connections: the API is down."""
        self._server.shutdown()
        self._server.server_close()
        for connection in list(self._connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def write_kubeconfig(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fixture",
            "clusters": [{"name": "fixture", "cluster": {"server": self.url}}],
            "users": [{"name": "fixture", "user": {"token": "fixture-token"}}],
            "contexts": [{"name": "fixture",
                          "context": {"cluster": "fixture", "user": "fixture"}}],
        }, indent=1) + "\n")
        return path

    # -- serving --------------------------------------------------------------

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, bytes]:
        self.requests.append((path, query))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_status:
            return self.fail_status, _status(self.fail_status, "InternalError",
                                             "fixture: failing on purpose")
        if path == "/version":
            return 200, b'{"major":"1","minor":"31","gitVersion":"v1.31.0-fixture"}'
        match = _PATH.match(path)
        resource = match and match.group("resource")
        if not match or resource not in RESOURCES or (match.group("ns") and
                                                      not RESOURCES[resource][1]):
            return 404, _status(404, "NotFound", "the server could not find the requested "
                                                 "resource")
        namespace = match.group("ns")
        if resource in self.forbidden:
            scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
            return 403, _status(403, "Forbidden",
                                f'{resource} is forbidden: User "{self.service_account}" cannot '
                                f'list resource "{resource}" in API group "" {scope}',
                                {"kind": resource})
        cluster = self.cluster
        try:
            selected = cluster.select(resource, namespace, query.get("labelSelector", ""))
        except SelectorError as exc:
            return 400, _status(400, "BadRequest", str(exc))
        start = 0
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"]))
                version, start = token["rv"], int(token["start"])
            except (ValueError, KeyError, TypeError):
                return 400, _status(400, "BadRequest", "continue key is not valid")
            if self.expire_continue > 0:
                self.expire_continue -= 1
                version = None
            if version != cluster.resource_version:
                return 410, _status(410, "Expired", "The provided continue parameter is too "
                                                    "old to display a consistent list result.")
        limit = int(query.get("limit") or 0)
        end = min(len(selected), start + limit) if limit > 0 else len(selected)
        metadata = {"resourceVersion": cluster.resource_version}
        if end < len(selected):
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(
                {"rv": cluster.resource_version, "start": end}).encode()).decode()
            metadata["remainingItemCount"] = len(selected) - end
        head = json.dumps({"kind": RESOURCES[resource][0], "apiVersion": "v1",
                           "metadata": metadata})[:-1].encode()
        return 200, head + b',"items":[' + b",".join(selected[start:end]) + b"]}"

    def _truncation(self, status: int) -> str | None:
        """How this answer is cut (truncate_mode), or None for a whole answer."""
        if status != 200 or self.truncate_pages <= 0:
            return None
        if self.skip_pages > 0:
            self.skip_pages -= 1
            return None
        self.truncate_pages -= 1
        return self.truncate_mode

    def _handler_class(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without TCP_NODELAY, Nagle
            # and delayed ACKs add 40 ms to every request
            disable_nagle_algorithm = True

            def setup(self):
                super().setup()
                api._connections.add(self.connection)

            def finish(self):
                api._connections.discard(self.connection)
                super().finish()

            def do_GET(self):  # noqa: N802 (http.server's naming)
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                status, body = api.answer(parts.path, query)
                declared, cut = len(body), api._truncation(status)
                if cut:
                    body = body[:len(body) // 2]
                    declared = declared if cut == "connection" else len(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(declared))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up (its timeout passed while we stalled)
                if cut == "connection":
                    self.close_connection = True

            def log_message(self, *args):  # quiet: tests and scripts/up have their own logs
                pass

        return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.kubeapi",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", type=Path, default=FIXTURES,
                        help="directory of <resource>.json fixture files")
    parser.add_argument("--generate", metavar="NODES,NAMESPACES,PVCS,LBS",
                        help="serve a generated cluster of that size instead")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for it here")
    args = parser.parse_args(argv)
    if args.generate:
        from .kubegen import generate
        n, ns, pvcs, lbs = (int(x) for x in args.generate.split(","))
        cluster = FixtureCluster(generate(nodes=n, namespaces=ns, pvcs=pvcs, load_balancers=lbs))
    else:
        cluster = FixtureCluster.from_dir(args.cluster)
    api = FixtureKubeApi(cluster, port=args.port)
    if args.kubeconfig:
        api.write_kubeconfig(args.kubeconfig)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    api.start()
    print(api.url, flush=True)
    stopping.wait()
    api.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
