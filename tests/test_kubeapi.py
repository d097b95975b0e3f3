"""The fixture Kubernetes API answers the real client as the API server would; the adapter
decodes raw JSON to exactly what the client's models give."""
import pytest
from devstack.kubeapi import SelectorError, parse_selector
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from chargeback.capacity import tick as capacity_tick
from chargeback.core.settings import load

from .capacity_helpers import FIXTURE_HOLDINGS


@pytest.fixture
def core(kube_api):
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kube_api.kubeconfig),
                            client_configuration=configuration)
    return client.CoreV1Api(client.ApiClient(configuration))


@pytest.mark.parametrize("selector, labels, matches", [
    ("", {}, True),
    ("a", {"a": "1"}, True), ("a", {}, False),
    ("!a", {}, True), ("!a", {"a": "1"}, False),
    ("a=1", {"a": "1"}, True), ("a==1", {"a": "2"}, False),
    ("a!=1", {}, True), ("a!=1", {"a": "1"}, False),
    ("a in (1, 2)", {"a": "2"}, True), ("a in (1,2)", {}, False),
    ("a notin (1,2)", {}, True), ("a notin (1,2)", {"a": "1"}, False),
    ("a=1,b in (x,y),!c", {"a": "1", "b": "y"}, True),
])
def test_label_selectors(selector, labels, matches):
    assert parse_selector(selector)(labels) is matches


def test_a_malformed_selector_is_refused():
    with pytest.raises(SelectorError):
        parse_selector("a b c")


def test_the_real_client_lists_and_pages_through_the_fixture(core):
    first = core.list_node(limit=3, label_selector="chargeback/tenant")
    assert len(first.items) == 3 and first.metadata._continue
    rest = core.list_node(limit=100, label_selector="chargeback/tenant",
                          _continue=first.metadata._continue)
    assert len(first.items) + len(rest.items) == 8 and not rest.metadata._continue
    pvcs = core.list_namespaced_persistent_volume_claim("render-farm")
    assert {p.metadata.name for p in pvcs.items} == {"frames", "cache", "scratch"}
    lbs = core.list_namespaced_service("render-farm")
    assert [s.spec.type for s in lbs.items] == ["LoadBalancer", "ClusterIP"]


def test_a_continue_token_from_an_older_cluster_answers_410(kube_api, core):
    first = core.list_node(limit=2)
    kube_api.set_cluster({"nodes": []})
    with pytest.raises(ApiException) as raised:
        core.list_node(limit=2, _continue=first.metadata._continue)
    assert raised.value.status == 410


def test_raw_json_decoding_measures_what_the_models_measure(kube_api):
    settings = load({"KUBECONFIG": str(kube_api.kubeconfig), "KUBE_PAGE_SIZE": "4"})
    raw = capacity_tick.measure_cluster(settings)
    models = capacity_tick.measure_cluster(settings, decode_models=True)
    assert raw == models
    assert len(raw.samples) == FIXTURE_HOLDINGS and raw.dedicated_nodes == 7
