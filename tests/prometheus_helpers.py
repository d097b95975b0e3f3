"""A real Prometheus (Debian's `prometheus`) scraping a fixture exporter on loopback.

The exporter plays a script of samples with their own timestamps in the recent
past: each scrape shows the next sample of every series that has one left
(honor_timestamps; the TSDB's out-of-order window takes samples hours old), so
counters that grow, reset and stop, and gaps between scrapes, are stored by
Prometheus exactly as scripted, in seconds.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from devstack.pg import free_port

from .waiting import until


def prometheus_binary() -> str:
    """The prometheus binary; without one the test skips (fails in CI, which installs it)."""
    found = shutil.which("prometheus")
    if found is None:
        reason = "prometheus is not installed (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


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
    def __init__(self, binary: str, directory, target: str):
        self.port = free_port()
        config = directory / "prometheus.yml"
        config.write_text(f"""
global: {{scrape_interval: 100ms, scrape_timeout: 90ms}}
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
        until(self.ready, "prometheus to become ready", timeout_s=30, interval_s=0.1)

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


def serve(tmp_path, series) -> tuple[Exporter, Prometheus]:
    """Start the exporter and Prometheus; return once every scripted sample was scraped."""
    binary = prometheus_binary()
    exporter = Exporter(series)
    directory = tmp_path / "prometheus"
    directory.mkdir()
    prometheus = Prometheus(binary, directory, exporter.address)
    until(exporter.played, "the exporter's script to be scraped", timeout_s=60, interval_s=0.1)
    time.sleep(0.5)  # the last scrape's samples committed to the head
    return exporter, prometheus
