"""The Ingress docs/portal.md gives for the OpenFaaS chart, read from the doc itself (so
the doc cannot rot): it is a valid networking.k8s.io/v1 Ingress by the Kubernetes
client's models (generated from the API's OpenAPI schema: strict types, required
fields, no unknown field anywhere), it points at the chart's gateway Service, it needs
no snippet annotation (refused by ingress-nginx's admission webhook by default since
controller 1.9), and the rewrite it describes, applied as ingress-nginx applies it,
takes `https://billing.example.com/...` to `/function/tenant-portal.openfaas-system/...`
where the real function, behind the local gateway, serves the page, a download and the
API on that host with a `__Host-` Secure cookie. Also: without PORTAL_URL the page is
refused (503) while the API works, and the local gateway's and Ingress stand-in's
access logs leave link tokens out."""
from __future__ import annotations

import re

import pytest
import requests
import yaml
from kubernetes.client import models

from .conftest import ROOT
from .invoices import finalized_invoice
from .portal_helpers import token_for

_PRIMITIVES = {"str", "int", "bool", "object", "datetime", "float"}


def documented_ingress() -> dict:
    """The YAML block of docs/portal.md's section on the Ingress."""
    doc = (ROOT / "docs" / "portal.md").read_text()
    section = doc.split("## The Ingress (OpenFaaS chart)", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```yaml\n(.*?)```", section, re.S)
    return yaml.safe_load(block)


def unknown_fields(data, type_name: str, where: str = "") -> list[str]:
    """Every key of `data` that the schema's `type_name` does not declare, by path."""
    if type_name.startswith("List["):
        return [f for i, item in enumerate(data)
                for f in unknown_fields(item, type_name[5:-1], f"{where}[{i}]")]
    if type_name in _PRIMITIVES or type_name.startswith("Dict["):
        return []
    model = getattr(models, type_name)
    by_json = {json_name: name for name, json_name in model.attribute_map.items()}
    out = []
    for key, value in data.items():
        if key not in by_json:
            out.append(f"{where}.{key}")
        else:
            out += unknown_fields(value, model.openapi_types[by_json[key]], f"{where}.{key}")
    return out


def nginx_rewrite(ingress: dict, url_path: str) -> str | None:
    """The upstream path ingress-nginx sends for `url_path` (query kept) under the rule:
    with use-regex, the location is `~* "^<path>"` and rewrite-target's $n are the
    path's groups (`rewrite "(?i)<path>" <target> break;`); None when no path matches."""
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/use-regex"] == "true"
    target = notes["nginx.ingress.kubernetes.io/rewrite-target"]
    path, _, query = url_path.partition("?")
    for rule_path in ingress["spec"]["rules"][0]["http"]["paths"]:
        found = re.match(rule_path["path"], path, re.IGNORECASE)
        if found:
            upstream = re.sub(r"\$(\d)", lambda m: found.group(int(m.group(1))), target)
            return upstream + (f"?{query}" if query else "")
    return None


def test_the_documented_ingress_is_valid_by_the_kubernetes_schema():
    ingress = documented_ingress()
    parsed = models.V1Ingress.from_dict(ingress)  # types and required fields
    assert unknown_fields(ingress, "V1Ingress") == []
    assert (parsed.api_version, parsed.kind) == ("networking.k8s.io/v1", "Ingress")
    # pathType: one of the values the schema names
    allowed = set(re.findall(r"\* (\w+):", models.V1HTTPIngressPath.model_fields[
        "path_type"].description))
    assert allowed == {"Exact", "Prefix", "ImplementationSpecific"}
    [rule] = parsed.spec.rules
    [path] = rule.http.paths
    # a regex path is only ImplementationSpecific (Prefix/Exact are literal)
    assert path.path_type == "ImplementationSpecific"
    # the OpenFaaS chart's gateway: Service `gateway`, port 8080, namespace `openfaas`
    service = path.backend.service
    assert (service.name, service.port.number, parsed.metadata.namespace) == (
        "gateway", 8080, "openfaas")
    assert rule.host in parsed.spec.tls[0].hosts  # TLS for the portal's host
    assert not [a for a in parsed.metadata.annotations if a.endswith("-snippet")]
    assert parsed.metadata.annotations["nginx.ingress.kubernetes.io/enable-access-log"] \
        == "false"  # portal links carry a token in the query


def test_an_unknown_or_mistyped_field_would_fail_the_check():
    ingress = documented_ingress()
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]
    path["backend"]["serviceName"] = "gateway"  # networking.k8s.io/v1beta1's spelling
    assert unknown_fields(ingress, "V1Ingress") == [
        ".spec.rules[0].http.paths[0].backend.serviceName"]
    path["backend"]["service"]["port"]["number"] = "8080"
    with pytest.raises(ValueError):
        models.V1Ingress.from_dict(ingress)


@pytest.mark.parametrize("public, upstream", [
    ("/", "/function/tenant-portal.openfaas-system/"),
    ("/?token=abc", "/function/tenant-portal.openfaas-system/?token=abc"),
    ("/invoices/INV-2026-000001.pdf",
     "/function/tenant-portal.openfaas-system/invoices/INV-2026-000001.pdf"),
    ("/api/v1/usage/current?period=2026-09",
     "/function/tenant-portal.openfaas-system/api/v1/usage/current?period=2026-09"),
])
def test_the_rewrite_maps_every_portal_path_under_the_function(public, upstream):
    assert nginx_rewrite(documented_ingress(), public) == upstream


def test_the_portal_answers_on_the_documented_host_through_the_gateway(portal, database_url):
    import psycopg
    ingress = documented_ingress()
    host = ingress["spec"]["rules"][0]["host"]
    assert host == "billing.example.com"
    invoice_id = finalized_invoice(database_url, namespace="acme")
    with psycopg.connect(database_url) as conn:
        [number] = conn.execute("SELECT number FROM openfaas_metering.invoices"
                                " WHERE invoice_id = %s", (invoice_id,)).fetchone()
    p = portal(PORTAL_URL=f"https://{host}")
    # what ingress-nginx sends the gateway: the rewritten path, and the client's host
    # and scheme in X-Forwarded-Host/-Proto (replacing any the client sent)
    forwarded = {"X-Forwarded-Host": host, "X-Forwarded-Proto": "https",
                 "X-Forwarded-For": "203.0.113.7"}

    def through_ingress(public: str, **headers) -> requests.Response:
        return requests.get(p.gateway + nginx_rewrite(ingress, public), timeout=30,
                            headers={**headers, **forwarded}, allow_redirects=False)
    token = token_for("acme")
    opened = through_ingress(f"/?token={token}")
    cookie = opened.headers["Set-Cookie"]
    assert opened.status_code == 303 and opened.headers["Location"] == "/"
    assert cookie.startswith("__Host-portal=") and "; Secure" in cookie
    session = {"Cookie": cookie.split(";", 1)[0]}
    page = through_ingress("/", **session)
    assert page.status_code == 200 and number in page.text
    pdf = through_ingress(f"/invoices/{number}.pdf", **session)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    api = through_ingress("/api/v1/invoices", Authorization=f"Bearer {token}")
    assert api.status_code == 200 and api.json()["data"][0]["number"] == number
    # the API's links name the public origin, not the gateway's
    assert api.json()["data"][0]["links"]["pdf"].startswith(f"https://{host}/")


def test_without_portal_url_the_page_answers_503_and_the_api_still_works(portal, database_url):
    finalized_invoice(database_url, namespace="acme")
    p = portal(portal_port=None)  # no Ingress, no PORTAL_URL
    page = requests.get(f"{p.url}/", params={"token": token_for("acme")}, timeout=30,
                        allow_redirects=False)
    assert page.status_code == 503 and "PORTAL_URL is not set" in page.text
    assert "Set-Cookie" not in page.headers
    assert p.get("/api/v1/invoices", token_for("acme")).status_code == 200


def test_the_local_gateway_and_ingress_leave_link_tokens_out_of_their_access_logs(
        portal, database_url, caplog):
    import logging
    finalized_invoice(database_url, namespace="acme")
    p = portal()
    token = token_for("acme")
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        assert requests.get(f"{p.origin}/", params={"token": token}, timeout=30,
                            allow_redirects=False).status_code == 303
    logged = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    # one line from the Ingress stand-in, one from the gateway; neither holds the token
    assert len([line for line in logged if '"GET /?… HTTP' in line or
                '"GET /function/tenant-portal.openfaas-system/?… HTTP' in line]) == 2, logged
    assert not [line for line in logged if token in line or "token=" in line]
