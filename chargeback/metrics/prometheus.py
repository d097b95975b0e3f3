"""The Prometheus HTTP API adapter: one series selector's raw samples around a window.

Raw samples, not PromQL arithmetic: an instant query of a range selector
(`selector[Ns]` at `time`) answers every stored sample in [time - N, time]
exactly as scraped, and series.py does the arithmetic. Numbers are parsed as
Decimals from Prometheus' JSON text.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import requests

from chargeback.core.responses import ServiceError
from chargeback.metrics.series import Sample


class PrometheusUnavailable(ServiceError):
    """Prometheus did not answer usably; the next run tries again."""

    what = "Prometheus unavailable"

    def public_reason(self) -> str:
        return "Prometheus is unavailable; the next run tries again"


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    samples: list[Sample]


def samples(url: str, selector: str, start: datetime, end: datetime, *, timeout_s: float
            ) -> list[Series]:
    """Every series `selector` matches, with its samples in [start, end]."""
    seconds = int((end - start).total_seconds())
    try:
        r = requests.get(f"{url}/api/v1/query", timeout=timeout_s, params={
            "query": f"{selector}[{seconds}s]", "time": f"{end.timestamp():.3f}"})
        body = r.json(parse_float=Decimal)
    except (requests.RequestException, ValueError) as exc:
        raise PrometheusUnavailable(f"Prometheus: {type(exc).__name__}: {exc}") from None
    if r.status_code != 200 or body.get("status") != "success":
        raise PrometheusUnavailable(f"Prometheus: {r.status_code} {body.get('error', '')}")
    data = body["data"]
    if data.get("resultType") != "matrix":
        raise PrometheusUnavailable(f"Prometheus: expected a matrix for {selector}, got "
                                    f"{data.get('resultType')}")
    return [Series(item["metric"], [(Decimal(t), Decimal(v)) for t, v in item["values"]])
            for item in data["result"]]
