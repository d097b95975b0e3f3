"""A webhook sink for local runs: every POST received is written as a .json file with its
headers (var/webhooks/*.json), as the SMTP sink writes var/mail/*.eml."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


class WebhookSink:
    def __init__(self, directory: Path, port: int = 0, signing_secret: str | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        verifier = Webhook(signing_secret) if signing_secret else None
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = dict(self.headers.items())
                record = {"path": self.path, "headers": headers,
                          "body": body.decode("utf-8", "replace")}
                if verifier is not None:  # what a receiver does first
                    try:
                        verifier.verify(body, headers)
                        record["signature"] = "valid"
                    except WebhookVerificationError as exc:
                        record["signature"] = f"invalid: {exc}"
                name = f"{time.strftime('%Y%m%dT%H%M%S')}-{headers.get('webhook-id', 'no-id')}"
                (sink.directory / f"{name}.json").write_text(json.dumps(record, indent=2))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/webhooks"

    def start(self) -> "WebhookSink":
        threading.Thread(target=self.server.serve_forever, daemon=True,
                         kwargs={"poll_interval": 0.05}).start()  # a quick shutdown()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
