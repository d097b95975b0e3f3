"""The Kubernetes adapter: list what meter-capacity needs, fast, with the real client.

Access is KUBECONFIG when set, else the pod's service account (in-cluster).
Every list is paginated (`limit` / `continue`) and decoded from the raw JSON
(`_preload_content=False`): the client's model deserialisation costs several
times more than the API call on a large cluster (see scripts/bench/meter).

Failures are two exceptions, which `chargeback.http.guarded` answers:
`KubeUnavailable` (unreachable, timeout, 5xx, 429, a continue token that
expires again after one fresh restart of the list: 503, try again) and
`KubeRefused` (401/403 and other refusals: 500 naming the missing
permission). The `kubernetes` package is imported only when a list is
made, so the other functions' images need not ship it.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from chargeback.core.responses import ServiceError
from chargeback.core.settings import ConfigError, Settings

RBAC_HINT = "kubectl apply -f functions/meter-capacity/rbac.yaml"
_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


class KubeUnavailable(ServiceError):
    """The API could not answer now (down, timeout, overloaded): retry later."""

    what = "kubernetes API unavailable"

    def public_reason(self) -> str:
        return f"kubernetes API unavailable, nothing recorded; retry later: {self}"


class KubeRefused(ServiceError):
    """The API refused the call (e.g. 403): a configuration problem; the message says which."""

    status = 500
    what = "kubernetes API refused"


@dataclass(frozen=True)
class Cluster:
    """The raw API objects one tick reads."""

    namespaces: list[dict]
    nodes: list[dict]
    persistentvolumeclaims: list[dict]
    services: list[dict]


NO_ACCESS = "no Kubernetes access: run in a pod with a service account, or set KUBECONFIG"


def configured(settings: Settings, environ: Mapping[str, str]) -> None:
    """ConfigError unless the function can reach a Kubernetes API at all: KUBECONFIG names
    a file, or it runs in a pod (checked at start; whether the API answers is a tick's)."""
    if settings.kubeconfig:
        if not os.path.isfile(settings.kubeconfig):
            raise ConfigError(f"KUBECONFIG={settings.kubeconfig!r}: no such file")
    elif not environ.get("KUBERNETES_SERVICE_HOST"):
        raise ConfigError(NO_ACCESS)


def _core_api(settings: Settings):
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    key = settings.kubeconfig or "in-cluster"
    with _clients_lock:
        if key in _clients:
            return _clients[key]
        configuration = client.Configuration()
        try:
            if settings.kubeconfig:
                config.load_kube_config(config_file=settings.kubeconfig,
                                        client_configuration=configuration)
            elif os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=configuration)
            else:
                raise ConfigError(NO_ACCESS)
        except (ConfigException, OSError) as exc:
            raise ConfigError(f"Kubernetes configuration: {exc}") from exc
        # One attempt per call: a failed tick answers 503 and the next one converges.
        configuration.retries = 0
        api = client.CoreV1Api(client.ApiClient(configuration))
        _clients[key] = api
        return api


def _refusal(exc, what: str) -> Exception:
    try:
        message = json.loads(exc.body or "{}").get("message") or exc.reason
    except (ValueError, AttributeError):
        message = exc.reason
    if exc.status in (408, 410, 429) or exc.status >= 500 or exc.status == 0:
        return KubeUnavailable(f"listing {what}: {exc.status} {message}")
    if exc.status in (401, 403):
        return KubeRefused(f"the Kubernetes API refused to list {what} ({exc.status}): "
                           f"{message}; the function's service account needs 'list' on "
                           f"{what} ({RBAC_HINT})")
    return KubeRefused(f"listing {what}: {exc.status} {message}")


def list_all(call: Callable, what: str, settings: Settings, *, decode_models: bool = False,
             **params) -> list[dict]:
    """Every item of a list call, page by page, as the API's JSON dicts.

    decode_models=True uses the client's model deserialisation instead (the
    benchmark's baseline); the result is converted back to the same dicts.
    """
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    timeout = (min(5, settings.kube_timeout_s), settings.kube_timeout_s)
    try:
        try:
            return _pages(call, settings, timeout, decode_models, params)
        except ApiException as exc:
            if exc.status != 410:
                raise
            # The continue token expired (the list changed, or compaction passed it):
            # a consistent list needs a fresh start, once; a second 410 is a 503.
            return _pages(call, settings, timeout, decode_models, params)
    except ApiException as exc:
        raise _refusal(exc, what) from exc
    except (HTTPError, OSError) as exc:
        raise KubeUnavailable(f"listing {what}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    except ValueError as exc:  # not JSON: a proxy's error page, a truncated body
        raise KubeUnavailable(f"listing {what}: the answer is not JSON ({exc})") from exc


def _pages(call: Callable, settings: Settings, timeout, decode_models: bool,
           params: dict) -> list[dict]:
    items: list[dict] = []
    token = None
    while True:
        if decode_models:
            page = call(limit=settings.kube_page_size, _continue=token,
                        _request_timeout=timeout, **params)
            items.extend(call.__self__.api_client.sanitize_for_serialization(page.items))
            token = page.metadata._continue
        else:
            response = call(limit=settings.kube_page_size, _continue=token,
                            _preload_content=False, _request_timeout=timeout, **params)
            try:
                page = json.loads(response.data)
            finally:
                response.release_conn()
            items.extend(page.get("items") or ())
            token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items


def read_cluster(settings: Settings, *, decode_models: bool = False) -> Cluster:
    """Namespaces, dedicated nodes, PVCs and Services, cluster-wide.

    Nodes are listed once per tenant label key with that key as the label
    selector, so shared nodes are never transferred.
    """
    api = _core_api(settings)
    mode = {"decode_models": decode_models}
    nodes: dict[str, dict] = {}
    for key in settings.tenant_node_labels:
        for node in list_all(api.list_node, "nodes", settings, label_selector=key, **mode):
            nodes.setdefault(node["metadata"]["name"], node)
    return Cluster(
        namespaces=list_all(api.list_namespace, "namespaces", settings, **mode),
        nodes=list(nodes.values()),
        persistentvolumeclaims=list_all(api.list_persistent_volume_claim_for_all_namespaces,
                                        "persistentvolumeclaims", settings, **mode),
        services=list_all(api.list_service_for_all_namespaces, "services", settings, **mode),
    )
