"""A small stand-in for the OpenFaaS gateway and the Pro queue-worker.

- `/function/<fn>` and `/function/<fn>.<namespace>` proxy synchronously.
- `/async-function/...` answers 202 with X-Call-Id and runs the call in the
  background, retrying 408/429/500/502/503/504 and connection errors with
  exponential backoff (shorter than the Pro worker's 10 s..120 s by default,
  honouring Retry-After and the com.openfaas.retry.* annotations), then POSTs
  the result to X-Callback-Url with X-Call-Id, X-Function-Status,
  X-Function-Name and X-Duration-Seconds.
- `/system/functions` lists the functions, `/healthz` answers 200, `/metrics` the
  invocation counter; with an `EventWorker`, every call is reported to receive-usage
  as the event-worker does (event_worker.py).
- As the OpenFaaS gateway, a call gets X-Forwarded-Host (the Host it came to) and
  X-Forwarded-For (the peer) unless it already carries them (set by an Ingress).
- Its access log (werkzeug's) leaves out query strings: a portal link carries a
  token there.

A synchronous call's body is streamed to the function as it arrives (as the
OpenFaaS gateway does) once it is larger than STREAM_ABOVE_BYTES, so a function
that refuses a body by its announced length (413) answers at once; smaller
bodies are read whole and sent over a kept-alive pooled connection (cheaper
per call, and they arrive in one read anyway).
"""
from __future__ import annotations

import http.client
import itertools
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import ClientDisconnected
from werkzeug.serving import WSGIRequestHandler

from .event_worker import EventWorker, InvocationCounter
from .stack import FunctionSpec

log = logging.getLogger("devstack.gateway")

# A body up to this size is read, then sent on a kept-alive connection; a larger
# one (or a chunked one) is streamed through as it arrives, so the function can
# refuse it from its headers at once, as the OpenFaaS gateway lets it.
READ_WHOLE_BODY_BYTES = 1024 * 1024
STREAM_CHUNK_BYTES = 64 * 1024

RETRY_CODES = frozenset({408, 429, 500, 502, 503, 504})
# Hop-by-hop headers are not forwarded (RFC 7230 6.1) and neither is the length,
# which the client library recomputes.
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
        "proxy-authorization", "proxy-authenticate", "content-length", "host"}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 10
    min_wait_s: float = 0.5
    max_wait_s: float = 10.0
    codes: frozenset[int] = RETRY_CODES

    def for_function(self, fn: FunctionSpec) -> "RetryPolicy":
        a = fn.annotations

        def seconds(key: str, default: float) -> float:
            raw = a.get(key)
            return float(raw.rstrip("s")) if raw else default

        return RetryPolicy(
            attempts=int(a.get("com.openfaas.retry.attempts", self.attempts)),
            min_wait_s=seconds("com.openfaas.retry.min_wait", self.min_wait_s),
            max_wait_s=seconds("com.openfaas.retry.max_wait", self.max_wait_s),
            codes=frozenset(int(c) for c in a["com.openfaas.retry.codes"].split(","))
            if a.get("com.openfaas.retry.codes") else self.codes,
        )

    def wait_s(self, attempt: int, retry_after: str | None) -> float:
        wait = min(self.max_wait_s, self.min_wait_s * (2 ** (attempt - 1)))
        if retry_after and retry_after.isdigit():
            wait = max(wait, min(float(retry_after), self.max_wait_s))
        return wait


def _forwardable(headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in _HOP}


def _upstream_headers(req) -> dict[str, str]:
    """What the OpenFaaS gateway sends a function: the caller's headers, plus
    X-Forwarded-Host and X-Forwarded-For when nobody in front set them."""
    headers = _forwardable(req.headers)
    headers.setdefault("X-Forwarded-Host", req.host)
    headers.setdefault("X-Forwarded-For", req.remote_addr or "")
    return headers


def _answer(data: bytes, status: int, headers, method: str) -> Response:
    if method != "HEAD":
        return Response(data, status, _forwardable(headers))
    # HEAD: the function's own Content-Length (of the body HEAD leaves out), or none;
    # an iterator, so werkzeug does not count the empty body as "Content-Length: 0"
    out = Response(iter(()), status, _forwardable(headers))
    if headers.get("Content-Length") is not None:
        out.headers["Content-Length"] = headers["Content-Length"]
    return out


class QuietQueryHandler(WSGIRequestHandler):
    """werkzeug's access log line without the query string (tokens live there)."""

    def log_request(self, code="-", size="-"):
        path = self.path.split("?", 1)[0] + ("?…" if "?" in self.path else "")
        self.log("info", '"%s %s %s" %s %s', self.command, path, self.request_version,
                 code, size)


class Gateway:
    """The gateway app; `upstreams` maps a function name to its replicas' base URLs,
    which take calls in turn (round-robin, as the gateway spreads calls over a
    function's endpoints)."""

    def __init__(self, functions: dict[str, FunctionSpec], upstreams: dict[str, list[str]],
                 retry: RetryPolicy = RetryPolicy(), async_workers: int = 4,
                 timeout_s: float = 60, events: EventWorker | None = None):
        self.functions = functions
        self.invocations = InvocationCounter([f"{n}.{fn.namespace}" for n, fn in functions.items()])
        self.events = events
        self.upstreams = upstreams
        self._next_replica = {name: itertools.cycle(urls) for name, urls in upstreams.items()}
        self.retry = retry
        self.timeout_s = timeout_s
        self.executor = ThreadPoolExecutor(async_workers, thread_name_prefix="async")
        # asynchronous calls accepted and not yet finished (retries and callback included)
        self._async_open = 0
        self._async_lock = threading.Lock()
        # One pool of kept-alive upstream connections for every thread, as the
        # gateway's own HTTP client keeps them; urllib3 directly, since requests'
        # extra layer was about a third of the proxy's CPU per call.
        self.upstream = urllib3.PoolManager(maxsize=32, retries=False,
                                            timeout=urllib3.Timeout(timeout_s))
        self.app = self._build_app()

    def resolve(self, target: str) -> FunctionSpec | None:
        name, _, namespace = target.partition(".")
        fn = self.functions.get(name)
        if fn is None or (namespace and namespace != fn.namespace):
            return None
        return fn

    def call(self, fn: FunctionSpec, method: str, path: str, query: bytes, body: bytes,
             headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        """One call to the next replica; the whole answer read (urllib3 HTTPError if none)."""
        url = f"{next(self._next_replica[fn.name])}/{path}" + (f"?{query.decode()}" if query else "")
        return self.upstream.request(method, url, body=body, headers=headers, redirect=False)

    def stream(self, fn: FunctionSpec, method: str, path: str, query: bytes, body,
               length: int | None, headers: dict[str, str]) -> Response:
        """One call whose body is copied from `body` (a stream) while the answer is awaited:
        a function that answers before reading the body (413) is answered at once."""
        base = urlsplit(next(self._next_replica[fn.name]))
        conn = http.client.HTTPConnection(base.hostname, base.port, timeout=self.timeout_s)
        try:
            conn.putrequest(method, f"{base.path.rstrip('/')}/{path}"
                            + (f"?{query.decode()}" if query else ""), skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            if length is None:
                conn.putheader("Transfer-Encoding", "chunked")
            else:
                conn.putheader("Content-Length", str(length))
            conn.putheader("Connection", "close")
            conn.endheaders()

            def send_body():
                try:
                    while chunk := body.read(STREAM_CHUNK_BYTES):
                        conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk)
                                  if length is None else chunk)
                    if length is None:
                        conn.send(b"0\r\n\r\n")
                except (OSError, ValueError, ClientDisconnected):
                    pass  # the function answered and closed, or the client went away

            threading.Thread(target=send_body, daemon=True, name="gateway-body").start()
            answer = conn.getresponse()
            data = answer.read()
            return Response(data, answer.status, _forwardable(answer.headers))
        finally:
            conn.close()

    def run_async(self, fn: FunctionSpec, call_id: str, path: str, query: bytes, body: bytes,
                  headers: dict[str, str], callback_url: str | None) -> None:
        policy = self.retry.for_function(fn)
        started = time.monotonic()
        status, out_body, out_headers = 500, b"", {}
        for attempt in range(1, policy.attempts + 1):
            retry_after = None
            try:
                response = self.call(fn, "POST", path, query, body, headers)
                status, out_body = response.status, response.data
                out_headers = _forwardable(response.headers)
                retry_after = response.headers.get("Retry-After")
                if status not in policy.codes:
                    break
            except urllib3.exceptions.HTTPError as exc:
                status, out_body, out_headers = 502, str(exc).encode(), {}
            if attempt < policy.attempts:
                wait = policy.wait_s(attempt, retry_after)
                log.info("async %s %s: status %s, retry %d/%d in %.2fs",
                         fn.name, call_id, status, attempt, policy.attempts, wait)
                time.sleep(wait)
        log.info("async %s %s finished with %s", fn.name, call_id, status)
        if callback_url:
            callback_headers = {**out_headers, "X-Call-Id": call_id,
                                "X-Function-Status": str(status),
                                "X-Function-Name": fn.name,
                                "X-Duration-Seconds": f"{time.monotonic() - started:.6f}"}
            try:
                requests.post(callback_url, data=out_body, headers=callback_headers,
                              timeout=self.timeout_s)
            except requests.RequestException as exc:
                log.warning("callback %s for %s failed: %s", callback_url, call_id, exc)

    def _run_async_counted(self, *args) -> None:
        try:
            self.run_async(*args)
        finally:
            with self._async_lock:
                self._async_open -= 1

    def idle(self) -> bool:
        """True when every asynchronous call accepted so far has finished: the queue is
        empty and no function is still working on one (what a test waits for before it
        says that nothing more happened)."""
        with self._async_lock:
            return self._async_open == 0

    def _build_app(self) -> Flask:
        app = Flask("devstack-gateway")

        @app.get("/healthz")
        def healthz():
            return Response("OK", 200)

        @app.get("/metrics")
        def metrics():
            return Response(self.invocations.exposition(), 200,
                            {"Content-Type": "text/plain; version=0.0.4"})

        @app.get("/system/functions")
        def system_functions():
            return jsonify([{"name": fn.name, "namespace": fn.namespace,
                             "annotations": fn.annotations, "envVars": fn.environment,
                             "secrets": list(fn.secrets), "labels": fn.labels,
                             "replicas": fn.min_replicas,
                             "availableReplicas": len(self.upstreams.get(name, []))}
                            for name, fn in self.functions.items()])

        def not_found(target: str):
            return Response(f"error finding function {target}: not found\n", 404)

        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

        # /function/<name> and /function/<name>/ both reach the function's root, as OpenFaaS
        @app.route("/function/<target>", defaults={"path": ""}, methods=methods,
                   strict_slashes=False)
        @app.route("/function/<target>/<path:path>", methods=methods)
        def invoke(target: str, path: str):
            fn = self.resolve(target)
            if fn is None:
                return not_found(target)
            started_ns = time.time_ns()
            answer = proxy(fn, path)
            self.invocations.count(f"{fn.name}.{fn.namespace}", answer.status_code)
            if self.events is not None:
                self.events.record(fn.name, fn.namespace, started_ns, time.time_ns() - started_ns)
            return answer

        def proxy(fn: FunctionSpec, path: str) -> Response:
            length = request.content_length
            chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
            try:
                if chunked or (length or 0) > READ_WHOLE_BODY_BYTES:
                    return self.stream(fn, request.method, path, request.query_string,
                                       request.stream, None if chunked else length,
                                       _upstream_headers(request))
                response = self.call(fn, request.method, path, request.query_string,
                                     request.get_data(), _upstream_headers(request))
            except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as exc:
                return Response(f"cannot reach {fn.name}: {exc}\n", 502)
            return _answer(response.data, response.status, response.headers, request.method)

        @app.route("/async-function/<target>", defaults={"path": ""}, methods=["POST"])
        @app.route("/async-function/<target>/<path:path>", methods=["POST"])
        def invoke_async(target: str, path: str):
            fn = self.resolve(target)
            if fn is None:
                return not_found(target)
            call_id = request.headers.get("X-Call-Id") or str(uuid.uuid4())
            headers = _forwardable(request.headers)
            headers["X-Call-Id"] = call_id
            callback_url = headers.pop("X-Callback-Url", None)
            with self._async_lock:
                self._async_open += 1
            self.executor.submit(self._run_async_counted, fn, call_id, path,
                                 request.query_string, request.get_data(), headers,
                                 callback_url)
            return Response("", 202, {"X-Call-Id": call_id})

        return app

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.events is not None:
            self.events.stop()
