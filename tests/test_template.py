"""The python3-http template server, run as the image would run it."""
import pytest
import requests

from devstack import stack as stackfile

from .conftest import ROOT


@pytest.fixture
def echo(serve_function):
    tests_stack = stackfile.load(ROOT / "tests" / "stack.yml", root=ROOT)
    return serve_function("echo", stack=tests_stack)


def test_dict_return_is_sent_as_json_with_the_request_fields(echo):
    r = requests.post(f"{echo.url}/some/path?a=1", data=b'{"x": 1}',
                      headers={"X-Test-Header": "hi"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"method": "POST", "path": "/some/path", "query": {"a": "1"},
                        "body": '{"x": 1}', "header": "hi", "topic": None,
                        "connector": None, "hostname": r.json()["hostname"],
                        "json": {"x": 1}}


def test_string_return_is_sent_as_text(echo):
    r = requests.get(f"{echo.url}/?mode=str")
    assert (r.status_code, r.text) == (200, "plain text")


def test_list_body_is_sent_as_json_not_python_repr(echo):
    r = requests.get(f"{echo.url}/?mode=list")
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == [1, "two", {"three": 3}]


def test_custom_status_code_and_headers_are_kept(echo):
    r = requests.get(f"{echo.url}/?mode=status")
    assert r.status_code == 418
    assert r.headers["X-Custom"] == "yes"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.json() == {"teapot": True}


def test_raising_handler_answers_a_one_line_json_500(echo):
    r = requests.get(f"{echo.url}/?mode=raise")
    assert r.status_code == 500
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"error": "internal error: ValueError: the handler broke"}
    assert "<html" not in r.text.lower() and "Traceback" not in r.text


def test_health_endpoint_answers_200(echo):
    assert requests.get(f"{echo.url}/_/health").status_code == 200
