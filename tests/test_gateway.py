"""The local gateway: sync and async invocation, retries, callbacks, cron."""
import dataclasses
import json
import queue
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from devstack import stack as stackfile
from devstack.cron import CronRunner
from devstack.gateway import RetryPolicy
from devstack.runtime import cron_jobs

from .conftest import ROOT


@pytest.fixture
def tests_stack():
    return stackfile.load(ROOT / "tests" / "stack.yml", root=ROOT)


@pytest.fixture
def runtime(local_runtime, tests_stack, tmp_path):
    state = tmp_path / "flaky"
    state.mkdir()
    return local_runtime(tests_stack, function_env={"FLAKY_STATE_DIR": str(state)},
                         cron=False)


def test_healthz_and_function_list(runtime):
    assert requests.get(f"{runtime.gateway_url}/healthz").status_code == 200
    listed = requests.get(f"{runtime.gateway_url}/system/functions").json()
    assert {(f["name"], f["namespace"]) for f in listed} == {
        ("echo", "openfaas-system"), ("flaky", "openfaas-system"),
        ("tenant-page", "tenant-b")}


def test_scale_min_replicas_take_calls_in_turn(local_runtime, tests_stack):
    echo = dataclasses.replace(tests_stack.functions["echo"],
                               labels={"com.openfaas.scale.min": "2"})
    runtime = local_runtime(dataclasses.replace(tests_stack, functions={"echo": echo}),
                            cron=False)
    listed = requests.get(f"{runtime.gateway_url}/system/functions").json()
    assert [(f["replicas"], f["availableReplicas"]) for f in listed] == [(2, 2)]
    pids = [requests.get(f"{runtime.gateway_url}/function/echo").json()["pid"]
            for _ in range(4)]
    assert len(set(pids)) == 2 and pids[:2] == pids[2:]  # round-robin
    assert set(pids) == {p.proc.pid for p in runtime.replicas["echo"]}


def test_a_function_that_cannot_start_fails_the_runtimes_start_at_once(
        local_runtime, product_stack):
    # aggregate-month refuses a bad REMINDER_DAYS (503 on /_/health, fail-fast): the start
    # raises with the reason and stops what it started, instead of waiting for ever on a
    # gateway that never served
    stack = dataclasses.replace(product_stack, functions={
        "aggregate-month": product_stack.functions["aggregate-month"]})
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="REMINDER_DAYS"):
        local_runtime(stack, cron=False, function_env={"REMINDER_DAYS": "21,7"})
    assert time.monotonic() - started < 30


def test_every_port_of_a_runtime_is_distinct(local_runtime, tests_stack):
    # the gateway's and the functions' ports are chosen together, so none takes another's
    echo = dataclasses.replace(tests_stack.functions["echo"],
                               labels={"com.openfaas.scale.min": "3"})
    runtime = local_runtime(dataclasses.replace(tests_stack, functions={"echo": echo}),
                            cron=False, portal_port=None)
    ports = [runtime.server.port] + [p.port for p in runtime.replicas["echo"]]
    assert len(set(ports)) == len(ports) == 4


@pytest.mark.parametrize("target", ["echo", "echo.openfaas-system"])
def test_sync_invoke_by_either_name_form(runtime, target):
    r = requests.post(f"{runtime.gateway_url}/function/{target}/sub?x=2", data=b'{"a": 1}',
                      headers={"X-Test-Header": "through"})
    assert r.status_code == 200
    body = r.json()
    assert (body["path"], body["query"], body["json"], body["header"]) == (
        "/sub", {"x": "2"}, {"a": 1}, "through")


@pytest.mark.parametrize("target", ["nope", "nope.openfaas-system", "echo.openfaas-fn"])
def test_unknown_function_or_namespace_is_404(runtime, target):
    assert requests.post(f"{runtime.gateway_url}/function/{target}").status_code == 404
    assert requests.post(f"{runtime.gateway_url}/async-function/{target}").status_code == 404


def test_function_status_and_headers_pass_through(runtime):
    r = requests.get(f"{runtime.gateway_url}/function/echo?mode=status")
    assert (r.status_code, r.headers["X-Custom"]) == (418, "yes")


def test_async_invoke_answers_202_with_call_id_and_runs(runtime, callbacks):
    r = requests.post(f"{runtime.gateway_url}/async-function/echo.openfaas-system",
                      data=b'{"job": 7}', headers={"X-Callback-Url": callbacks.url})
    assert r.status_code == 202
    call_id = r.headers["X-Call-Id"]
    assert call_id
    headers, body = callbacks.received.get(timeout=10)
    assert headers["X-Call-Id"] == call_id
    assert headers["X-Function-Status"] == "200"
    assert headers["X-Function-Name"] == "echo"
    assert float(headers["X-Duration-Seconds"]) >= 0
    assert json.loads(body)["json"] == {"job": 7}


def test_async_keeps_the_callers_call_id(runtime, callbacks):
    r = requests.post(f"{runtime.gateway_url}/async-function/echo",
                      headers={"X-Call-Id": "mine-1", "X-Callback-Url": callbacks.url})
    assert r.headers["X-Call-Id"] == "mine-1"
    headers, _ = callbacks.received.get(timeout=10)
    assert headers["X-Call-Id"] == "mine-1"


def test_async_function_failing_twice_with_503_is_retried_and_succeeds(runtime, callbacks):
    r = requests.post(f"{runtime.gateway_url}/async-function/flaky", data=b"payload",
                      headers={"X-Callback-Url": callbacks.url})
    assert r.status_code == 202
    headers, body = callbacks.received.get(timeout=15)
    assert headers["X-Function-Status"] == "200"
    assert headers["X-Function-Name"] == "flaky"
    assert headers["X-Handled-By"] == "flaky"
    assert json.loads(body) == {"attempts": 3, "echo": "payload"}


def test_async_gives_up_after_the_attempt_limit(local_runtime, tests_stack, tmp_path, callbacks):
    state = tmp_path / "flaky-forever"
    state.mkdir()
    rt = local_runtime(tests_stack, cron=False,
                       function_env={"FLAKY_STATE_DIR": str(state), "FLAKY_FAILURES": "99"},
                       retry=RetryPolicy(attempts=3))
    requests.post(f"{rt.gateway_url}/async-function/flaky", headers={
        "X-Callback-Url": callbacks.url, "X-Call-Id": "doomed"})
    headers, _ = callbacks.received.get(timeout=15)
    assert headers["X-Function-Status"] == "503"
    # stack.yml's com.openfaas.retry.* annotations win over the policy's waits,
    # the policy's attempt count stays: exactly 3 calls were made.
    assert (state / "doomed.count").read_text() == "3"


def test_retry_policy_backs_off_exponentially_and_honours_retry_after():
    policy = RetryPolicy(attempts=5, min_wait_s=1, max_wait_s=8)
    assert [policy.wait_s(n, None) for n in range(1, 6)] == [1, 2, 4, 8, 8]
    assert policy.wait_s(1, "5") == 5
    assert policy.wait_s(1, "60") == 8


def test_cron_runner_fires_every_minute_function_without_waiting(runtime, tests_stack):
    now = [datetime(2026, 11, 1, 12, 0, 30, tzinfo=timezone.utc)]
    responses = queue.Queue()
    runner = CronRunner(cron_jobs(tests_stack),
                        lambda name: responses.put(runtime.fire_cron(name)),
                        clock=lambda: now[0])
    assert runner.run_due() == []
    now[0] += timedelta(seconds=29)
    assert runner.run_due() == []
    now[0] += timedelta(seconds=1)  # 12:01:00
    assert runner.run_due() == ["echo"]
    body = responses.get(timeout=10).json()
    assert (body["method"], body["body"]) == ("POST", "")
    assert (body["topic"], body["connector"]) == ("cron-function", "cron-connector")
    now[0] += timedelta(minutes=5)  # missed slots are not caught up: one call
    assert runner.run_due() == ["echo"]
    assert runner.run_due() == []


def test_cron_supports_every_and_macros():
    from devstack.cron import Schedule
    t = datetime(2026, 1, 1, 0, 0, 10, tzinfo=timezone.utc)
    assert Schedule("@every 5m").next_after(t) == t + timedelta(minutes=5)
    assert Schedule("@hourly").next_after(t) == datetime(2026, 1, 1, 1, tzinfo=timezone.utc)
    assert Schedule("0 1 1 * *").next_after(t) == datetime(2026, 1, 1, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="not a cron expression"):
        Schedule("every tuesday")


def _http_answer(sock) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return int(data.split()[1]), data


def test_a_huge_announced_body_gets_the_functions_413_before_it_is_sent(runtime):
    # The function refuses by the announced length (MAX_BODY_BYTES); the gateway must
    # stream, not wait for a gigabyte that never comes.
    port = int(runtime.gateway_url.rsplit(":", 1)[1])
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /function/echo HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 1073741824\r\n\r\n" + b"{" * 1000)
        status, data = _http_answer(sock)
    assert status == 413, data
    assert time.monotonic() - started < 5


def test_a_body_above_the_streaming_threshold_arrives_whole(local_runtime, tests_stack):
    runtime = local_runtime(tests_stack, function_env={"MAX_BODY_BYTES": str(8 << 20)},
                            cron=False)
    payload = json.dumps({"blob": "x" * (3 << 20)}).encode()  # 3 MiB: streamed
    r = requests.post(f"{runtime.gateway_url}/function/echo?k=v", data=payload,
                      headers={"X-Test-Header": "big"}, timeout=30)
    assert r.status_code == 200, r.text[:200]
    body = r.json()
    assert (len(body["body"]), body["query"], body["header"]) == (len(payload), {"k": "v"}, "big")
def test_a_body_announced_over_the_limit_is_refused_by_the_function_at_once(runtime):
    """A client announces 1 GiB and sends none of it: the function's 413 (from its
    Content-Length, MAX_BODY_BYTES unset = 1 MiB) comes back through the gateway within
    seconds, which it cannot if the gateway waits for the body first."""
    host, port = runtime.gateway_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"POST /function/echo HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\n"
                    b"Content-Length: 1073741824\r\n\r\n" + b"{" * 1000)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = raw.recv(65536)  # times out (10 s) if the gateway waits for the body
            assert chunk, answer
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert b" 413 " in status_line, answer[:300]
