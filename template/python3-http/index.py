"""chargeback's python3-http template server (flask + waitress behind of-watchdog).

Call-compatible with the community python3-http template: the handler is
`function/handler.py` with `handle(event, context)`; it returns a dict with
`statusCode`, `body` and `headers`, or a plain string. Differences, on purpose:
a dict *or list* body is sent as JSON (the community template sends a list as
Python's repr), and an exception answers 500 with a one-line JSON reason instead
of Flask's HTML page. `function/` is on sys.path so handlers can import the
shared package as `chargeback`. `/_/health` is answered here too, for local
runs without a watchdog (in the image the watchdog answers it first).

Two additions a handler may use (the community template ignores both):
- `handler.check(environ)`, called once before serving: None, or the one-line
  reason the function cannot work (a missing secret). With a reason, it is
  logged once, `/_/health` answers 503 with it and every call answers 503
  with it, so nothing is half-served.
- a returned dict's `log`: the line logged for a 5xx answer in place of its
  public reason (it may name hosts; it is never sent).
Every 5xx answer is logged once, with its status, method, path and reason.

A request body over MAX_BODY_BYTES (the function's environment; 1 MiB when
unset) is refused by waitress itself, before it is buffered: from its
Content-Length at once, and while a chunked body streams in as soon as the
bytes received pass the limit. The answer is 413 with a one-line JSON reason,
like every other refusal. (waitress's own default would buffer up to 1 GiB.)

X-Forwarded-Proto and X-Forwarded-Host are believed only from TRUSTED_PROXY
(waitress's `trusted_proxy`: the peer address, in the image the watchdog at
127.0.0.1); from anyone else waitress drops them. Unset, nothing is trusted
(waitress's default). A function sees the result as `event.scheme` and
`event.host` (the public host when the proxy is trusted).
"""
import json
import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "function"))

import orjson  # noqa: E402
from flask import Flask, Response, request  # noqa: E402
from waitress import create_server  # noqa: E402
from waitress.channel import HTTPChannel  # noqa: E402
from waitress.task import ErrorTask  # noqa: E402
from werkzeug.exceptions import HTTPException  # noqa: E402

from function import handler  # noqa: E402

app = Flask(__name__)
log = logging.getLogger("function")
DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # functions that take bodies set their own
# handler.check's one-line reason this function cannot work, once main() ran it
STARTUP_PROBLEM = None


def max_body_bytes():
    raw = os.getenv("MAX_BODY_BYTES", "").strip()
    try:
        value = int(raw) if raw else DEFAULT_MAX_BODY_BYTES
    except ValueError:
        sys.exit(f"MAX_BODY_BYTES={raw!r}: expected a positive integer")
    if value <= 0:
        sys.exit(f"MAX_BODY_BYTES={raw!r}: expected a positive integer")
    return value


MAX_BODY_BYTES = max_body_bytes()


def proxy_settings():
    """waitress's trusted-proxy adjustments from TRUSTED_PROXY (an address, or unset)."""
    proxy = os.getenv("TRUSTED_PROXY", "").strip()
    if not proxy:
        return {}
    return {"trusted_proxy": proxy, "trusted_proxy_count": 1,
            "trusted_proxy_headers": {"x-forwarded-proto", "x-forwarded-host"},
            "clear_untrusted_proxy_headers": True}


# waitress has no public hook for the body of its own refusals, so this uses two
# documented-by-source seams: HTTPChannel.error_task_class and the server's
# channel_class attribute. Checked against waitress 3.0.2 (the release pinned
# in requirements.txt). If a release changes either seam, waitress answers with its
# own text/plain page and tests/test_template.py's raw-socket tests fail
# (test_a_declared_oversized_body_is_refused_before_a_byte_of_it_is_sent, the
# header-injection cases): re-check the seam before raising the pin.
class JsonErrorTask(ErrorTask):
    """waitress's own refusals (413 over the limit, 400 malformed HTTP) as one-line JSON.

    waitress documents no hook for its error answers, so this uses two of its
    internals: ErrorTask (self.request.error, write, set_close_on_finish) and
    HTTPChannel.error_task_class, swapped in after create_server. Checked against
    waitress 3.0.2 (pinned in requirements.txt); tests/test_template.py's oversized-body
    tests compare the whole JSON body, so they fail if a waitress release moves either.
    """

    def execute(self):
        error = self.request.error
        if error.code == 413:
            reason = (f"request body is larger than {MAX_BODY_BYTES} bytes "
                      "(MAX_BODY_BYTES); nothing was read past the limit")
        else:
            # waitress quotes the offending header line, raw: keep the reason one bounded line
            reason = f"{error.reason}: {error.body}".strip()
            reason = reason.replace("\r", "\\r").replace("\n", "\\n")
            reason = reason if len(reason) <= 300 else reason[:300] + "..."
        body = dumps({"error": reason})
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class Channel(HTTPChannel):
    error_task_class = JsonErrorTask


class Event:
    def __init__(self):
        self.body = request.get_data()
        self.headers = request.headers
        self.method = request.method
        self.query = request.args
        self.path = request.path
        self.host = request.host      # X-Forwarded-Host when TRUSTED_PROXY sent it
        self.scheme = request.scheme  # X-Forwarded-Proto likewise


class Context:
    def __init__(self):
        self.hostname = os.getenv("HOSTNAME", "localhost")


def dumps(payload):
    """JSON bytes (orjson: about ten times json's speed); json where orjson refuses
    (integers past 64 bits, lone surrogates): the same answer, more slowly."""
    try:
        return orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(payload, default=str).encode()


def _json(payload, status=200, headers=None):
    out = Response(dumps(payload), status=status, headers=headers or {})
    out.headers["Content-Type"] = "application/json"
    return out


def one_line(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def log_server_error(status, reason, exc_info=False):
    """The one log line of a 5xx answer: status, method, path and why."""
    level = logging.WARNING if status == 503 else logging.ERROR
    log.log(level, "%d %s %s: %s", status, request.method, request.path, one_line(reason),
            exc_info=exc_info)


def _public_reason(result):
    body = result.get("body") if isinstance(result, dict) else result
    if isinstance(body, dict) and body.get("error"):
        return body["error"]
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return body or "(no body)"


def format_response(result):
    if result is None:
        return Response("", status=200)
    if isinstance(result, dict):
        status = int(result.get("statusCode", 200))
        headers = result.get("headers") or {}
        body = result.get("body", "")
        if isinstance(body, (dict, list)):
            has_type = any(k.lower() == "content-type" for k in dict(headers))
            out = _json(body, status, headers)
            if has_type:  # the handler's own Content-Type wins
                out.headers.update(headers)
            return out
        if not isinstance(body, (bytes, str)):
            body = str(body)
        if request.method == "HEAD" and not body:
            # a HEAD answered without its body: no "Content-Length: 0" for a body that is
            # not empty (the handler may name its length itself)
            return Response(iter(()), status=status, headers=headers)
        return Response(body, status=status, headers=headers)
    if isinstance(result, (bytes, str)):
        return Response(result, status=200)
    return Response(str(result), status=200)


@app.errorhandler(HTTPException)
def http_error(exc):
    # Flask's own refusals (a method no route takes, e.g. TRACE) as one-line JSON too
    return _json({"error": f"{exc.code} {exc.name}: {exc.description}"}, exc.code or 500)


@app.route("/_/health", methods=["GET"])
def health():
    if STARTUP_PROBLEM:
        return _json({"error": STARTUP_PROBLEM}, 503)
    return Response("OK", status=200)


@app.route("/", defaults={"path": ""},
           methods=["GET", "PUT", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@app.route("/<path:path>", methods=["GET", "PUT", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def call_handler(path):
    if STARTUP_PROBLEM:
        log_server_error(503, STARTUP_PROBLEM)
        return _json({"error": STARTUP_PROBLEM}, 503)
    try:
        result = handler.handle(Event(), Context())
    except Exception as exc:  # a handler bug must not leak an HTML traceback
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        reason = f"internal error: {type(exc).__name__}: {reason}"
        log_server_error(500, reason, exc_info=True)  # with the traceback, in one record
        return _json({"error": reason}, 500)
    response = format_response(result)
    if response.status_code >= 500:
        logged = result.get("log") if isinstance(result, dict) else None
        log_server_error(response.status_code, logged or _public_reason(result))
    return response


def startup_problem():
    """handler.check's reason, or None; a check that raises is itself the reason."""
    check = getattr(handler, "check", None)
    if check is None:
        return None
    try:
        problem = check(os.environ)
    except Exception as exc:
        log.exception("the start check failed")
        return one_line(f"the start check failed: {type(exc).__name__}: {exc}")
    return one_line(problem) if problem else None


if __name__ == "__main__":
    logging.basicConfig(level=os.getenv("LOG_LEVEL", "WARNING").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    STARTUP_PROBLEM = startup_problem()
    if STARTUP_PROBLEM:
        log.error("%s (/_/health and every call answer 503 until this is fixed)",
                  STARTUP_PROBLEM)
    server = create_server(
        app,
        host=os.getenv("UPSTREAM_HOST", "127.0.0.1"),
        port=int(os.getenv("UPSTREAM_PORT", "5000")),
        threads=int(os.getenv("WAITRESS_THREADS", "4")),
        ident=None,
        # waitress refuses at ">= the limit"; a body of exactly MAX_BODY_BYTES fits
        max_request_body_size=MAX_BODY_BYTES + 1,
        **proxy_settings(),
    )
    server.channel_class = Channel
    server.run()
