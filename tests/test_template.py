"""The python3-http template server, run as the image would run it."""
import json

import socket

import pytest
import requests

from devstack import stack as stackfile

from .conftest import ROOT


@pytest.fixture
def echo(serve_function):
    tests_stack = stackfile.load(ROOT / "tests" / "stack.yml", root=ROOT)
    return serve_function("echo", stack=tests_stack, env={"HOSTNAME": "echo-replica-7"})


def test_dict_return_is_sent_as_json_with_the_request_fields(echo):
    r = requests.post(f"{echo.url}/some/path?a=1", data=b'{"x": 1}',
                      headers={"X-Test-Header": "hi"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"method": "POST", "path": "/some/path", "query": {"a": "1"},
                        "body": '{"x": 1}', "header": "hi", "topic": None,
                        "connector": None, "hostname": "echo-replica-7",
                        "pid": echo.proc.pid, "json": {"x": 1}}


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


def test_every_5xx_is_logged_once_with_its_path_and_reason(echo, tmp_path):
    requests.get(f"{echo.url}/broken/here?mode=raise")
    requests.get(f"{echo.url}/?mode=status")  # a 418: not logged
    log = (tmp_path / "echo.log").read_text()
    assert log.count("500 GET /broken/here: internal error: ValueError: the handler broke") == 1
    assert "Traceback" in log  # the handler's bug, for whoever fixes it
    assert " 418 " not in log


def test_health_endpoint_answers_200(echo):
    assert requests.get(f"{echo.url}/_/health").status_code == 200


# The body limit is enforced before the body is buffered ------------------------------

LIMIT = 64 * 1024


@pytest.fixture
def small_echo(serve_function):
    tests_stack = stackfile.load(ROOT / "tests" / "stack.yml", root=ROOT)
    return serve_function("echo", stack=tests_stack, env={"MAX_BODY_BYTES": str(LIMIT)})


def _answer(sock) -> tuple[int, dict]:
    """Status and JSON body of the HTTP response waiting on `sock`."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    return next(int(line.split(":", 1)[1]) for line in head.split("\r\n")
                if line.startswith("content-length:"))


def test_a_declared_oversized_body_is_refused_before_a_byte_of_it_is_sent(small_echo):
    with socket.create_connection(("127.0.0.1", small_echo.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
        status, body = _answer(sock)
    assert status == 413
    assert body == {"error": f"request body is larger than {LIMIT} bytes (MAX_BODY_BYTES); "
                             "nothing was read past the limit"}


def test_a_chunked_body_is_refused_while_it_streams_in(small_echo):
    chunk = b"x" * 8192
    sent = 0
    with socket.create_connection(("127.0.0.1", small_echo.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            while sent < 100 * LIMIT:  # never finished: the server must answer first
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except OSError:
            pass  # the server answered and closed: what we want
        status, body = _answer(sock)
    assert status == 413 and "MAX_BODY_BYTES" in body["error"]
    assert sent < 100 * LIMIT


def test_a_body_of_exactly_the_limit_is_served(small_echo):
    body = b"[" + b" " * (LIMIT - 2) + b"]"
    r = requests.post(small_echo.url, data=body)
    assert r.status_code == 200 and r.json()["json"] == []
