"""A real HTTP receiver for outbound webhooks (a threading HTTPServer on a free port) and
the local runtime set up to post to it."""
from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devstack.gateway import RetryPolicy

SIGNING_SECRET = "whsec_" + base64.b64encode(b"chargeback-tests-signing-key-32b").decode()


@dataclasses.dataclass
class Hit:
    headers: dict
    body: bytes
    answered: int
    at: float = 0.0  # time.monotonic() when the answer was decided

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """Records every POST; answers `fail_first` requests with 503, then `status`;
    waits `delay_s` before answering."""

    def __init__(self, fail_first: int = 0, status: int = 200, delay_s: float = 0.0):
        self.fail_first, self.status, self.delay_s = fail_first, status, delay_s
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0  # requests being answered at once
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                with receiver.lock:
                    receiver.in_flight -= 1
                    answer = 503 if receiver.fail_first > 0 else receiver.status
                    receiver.fail_first -= 1
                    receiver.hits.append(Hit({k.lower(): v for k, v in self.headers.items()},
                                             body, answer, time.monotonic()))
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True,
                         kwargs={"poll_interval": 0.05}).start()  # a quick shutdown()

    def accepted(self) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if 200 <= h.answered < 300]

    def wait_for(self, predicate, timeout_s: float = 20.0, poke=None) -> list[Hit]:
        """Wait until predicate(accepted hits) holds; `poke()` each round (a drain)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if poke is not None:
                poke()
            if predicate(self.accepted()):
                return self.accepted()
            time.sleep(0.1)
        raise AssertionError(f"receiver: condition not met in {timeout_s} s; got "
                             f"{[(h.event['type'], h.answered, h.event['data']) for h in self.hits]}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_signing_secret(secrets_dir) -> None:
    (secrets_dir / "webhook-signing-secret").write_text(SIGNING_SECRET + "\n")


def runtime_with(local_runtime, product_stack, names, env: dict):
    """The named functions of stack.yml behind the local gateway, cron off."""
    stack = dataclasses.replace(product_stack, functions={
        n: product_stack.functions[n] for n in names})
    return local_runtime(stack, cron=False, function_env=env,
                         retry=RetryPolicy(attempts=3, min_wait_s=0.2, max_wait_s=1.0))
