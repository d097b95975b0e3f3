"""A stand-in for the Ingress that gives tenant-portal its own origin.

On a cluster, an Ingress (ingress-nginx) for `billing.example.com` rewrites every path
to the gateway's `/function/tenant-portal.openfaas-system/<path>` and sets
X-Forwarded-Host, X-Forwarded-Proto and X-Forwarded-For to what it saw, replacing
whatever the client sent (ingress-nginx's default). This does the same on a
loopback port: the portal at `http://localhost:<port>/` (or https with a
certificate), the gateway at `http://127.0.0.1:<gateway port>`, two origins to a
browser. The query string is left out of its access log (a portal link carries a
token there), as docs/portal.md asks of the real Ingress.
"""
from __future__ import annotations

import ssl
import threading
from pathlib import Path

import urllib3
from flask import Flask, Response, request
from werkzeug.serving import make_server

from .gateway import QuietQueryHandler, _answer

# hop-by-hop, and the forwarding headers it sets itself (a client's are replaced)
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
        "proxy-authorization", "proxy-authenticate", "content-length", "host",
        "x-forwarded-host", "x-forwarded-proto", "x-forwarded-for", "x-forwarded-port",
        "forwarded"}


class Ingress:
    """Every request to this port goes to `gateway_url` + `prefix` + its path."""

    def __init__(self, gateway_url: str, prefix: str, port: int = 0,
                 tls: tuple[Path, Path] | None = None, host: str = "localhost"):
        self.gateway_url = gateway_url.rstrip("/")
        self.prefix = prefix.rstrip("/")
        self.port = port
        self.tls = tls
        self.host = host
        self.upstream = urllib3.PoolManager(maxsize=16, retries=False,
                                            timeout=urllib3.Timeout(60))
        self.server = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.server.port}"

    def _app(self) -> Flask:
        app = Flask("devstack-ingress")
        scheme = "https" if self.tls else "http"

        @app.route("/", defaults={"path": ""},
                   methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        @app.route("/<path:path>",
                   methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        def forward(path: str):
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
            headers.update({"X-Forwarded-Host": request.host, "X-Forwarded-Proto": scheme,
                            "X-Forwarded-For": request.remote_addr or ""})
            query = request.query_string.decode()
            url = f"{self.gateway_url}{self.prefix}/{path}" + (f"?{query}" if query else "")
            try:
                answer = self.upstream.request(request.method, url, body=request.get_data(),
                                               headers=headers, redirect=False)
            except urllib3.exceptions.HTTPError as exc:
                return Response(f"ingress: cannot reach the gateway: {exc}\n", 502)
            return _answer(answer.data, answer.status, answer.headers, request.method)

        return app

    def start(self) -> "Ingress":
        context = None
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*map(str, self.tls))
        self.server = make_server("127.0.0.1", self.port, self._app(), threaded=True,
                                  request_handler=QuietQueryHandler, ssl_context=context)
        threading.Thread(target=self.server.serve_forever, daemon=True, name="ingress",
                         kwargs={"poll_interval": 0.05}).start()  # a quick shutdown()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
