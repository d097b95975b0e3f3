"""A real Prometheus (Debian's `prometheus`) scraping a fixture exporter on loopback
(devstack/prometheus_fixture.py).

The exporter plays a script of samples with their own timestamps in the recent
past: each scrape shows the next sample of every series that has one left
(honor_timestamps; the TSDB's out-of-order window takes samples hours old), so
counters that grow, reset and stop, and gaps between scrapes, are stored by
Prometheus exactly as scripted, in seconds.
"""
from __future__ import annotations

import os
import shutil
import time

import pytest
from devstack.prometheus_fixture import Exporter, Prometheus

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
