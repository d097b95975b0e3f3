"""A real Prometheus (Debian's `prometheus`) on loopback, and a fixture exporter for it.

`Exporter` plays a script of samples with their own timestamps in the recent
past: each scrape shows the next sample of every series that has one left
(honor_timestamps; the TSDB's out-of-order window takes samples hours old), so
counters that grow, reset and stop, and gaps between scrapes, are stored by
Prometheus exactly as scripted, in seconds. `Prometheus` scrapes one target
(the exporter, or the local gateway's /metrics) every 100 ms (or `interval_ms`).
Used by the tests (tests/prometheus_helpers.py), the demo (demo_meters.py) and
scripts/up (the gateway's counter, every 5 s).
"""
from __future__ import annotations

import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from .pg import free_port


class Exporter:
    """series: {'name{labels}': [(unix seconds, value), ...]} played one sample per scrape."""

    def __init__(self, series: dict[str, list[tuple[int, float]]]):
        self.series = {k: list(v) for k, v in series.items()}
        self.lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with exporter.lock:
                    lines = [f"{name} {value} {t * 1000}"
                             for name, left in exporter.series.items() if left
                             for t, value in [left.pop(0)]]
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True,
                         kwargs={"poll_interval": 0.05}).start()  # a quick shutdown()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def played(self) -> bool:
        with self.lock:
            return not any(self.series.values())

    def stop(self):
        self.server.shutdown()


class Prometheus:
    def __init__(self, binary: str, directory, target: str, interval_ms: int = 100):
        self.port = free_port()
        config = directory / "prometheus.yml"
        config.write_text(f"""
global: {{scrape_interval: {interval_ms}ms, scrape_timeout: {interval_ms * 9 // 10}ms}}
storage: {{tsdb: {{out_of_order_time_window: 7d}}}}
scrape_configs:
  - job_name: fixture
    honor_timestamps: true
    static_configs: [{{targets: ["{target}"]}}]
""")
        self.log = open(directory / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus did not become ready (log: {self.log.name})")
            time.sleep(0.1)

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()
