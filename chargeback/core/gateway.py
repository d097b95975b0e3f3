"""The one OpenFaaS gateway client: synchronous and asynchronous invocation.

Functions hand work to each other only through the gateway and pass ids, never
content. An async call answers 202 with X-Call-Id; with a callback URL the
queue-worker POSTs the result there when the function has run.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import requests

from chargeback.core.responses import ServiceError
from chargeback.core.settings import Settings


class GatewayError(ServiceError):
    """The gateway could not be reached or refused the call; the message is one line."""

    status = 502
    what = "gateway"


@dataclass(frozen=True)
class Invocation:
    status_code: int
    body: bytes
    headers: dict[str, str]


class GatewayClient:
    def __init__(self, settings: Settings, session: requests.Session | None = None,
                 timeout_s: float = 60.0):
        self.base_url = settings.gateway_url.rstrip("/")
        self.namespace = settings.function_namespace
        self.session = session or requests.Session()
        self.timeout_s = timeout_s

    def _path(self, function: str) -> str:
        # <fn>.<namespace> is what cron-connector and faas-cli call; a name that
        # already carries a namespace is used as it is.
        return function if "." in function else f"{function}.{self.namespace}"

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
        try:
            return self.session.post(url, data=body, headers=headers, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise GatewayError(f"gateway {self.base_url} unreachable: {exc}") from exc

    def invoke(self, function: str, body: bytes = b"",
               headers: dict[str, str] | None = None) -> Invocation:
        """Call a function synchronously and return whatever it answered."""
        response = self._post(f"{self.base_url}/function/{self._path(function)}", body,
                              dict(headers or {}))
        return Invocation(response.status_code, response.content, dict(response.headers))

    def invoke_async(self, function: str, body: bytes = b"", *,
                     callback_url: str | None = None, call_id: str | None = None,
                     headers: dict[str, str] | None = None) -> str:
        """Queue a call; return its X-Call-Id. Raises GatewayError unless the gateway says 202."""
        sent = dict(headers or {})
        sent["X-Call-Id"] = call_id or str(uuid.uuid4())
        if callback_url:
            sent["X-Callback-Url"] = callback_url
        response = self._post(f"{self.base_url}/async-function/{self._path(function)}", body, sent)
        if response.status_code != 202:
            raise GatewayError(
                f"async {function}: gateway answered {response.status_code}: "
                f"{response.text.strip()[:200]}"
            )
        return response.headers.get("X-Call-Id", sent["X-Call-Id"])
