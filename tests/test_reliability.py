"""The campaign's fast receive-usage cases (issue 15): the zero-count case, parallel
deliveries through the local gateway, and a reproducible fuzz over real HTTP.

Each test prints its measured outcome (`scripts/test -s tests/test_reliability.py`);
docs/reliability.md records them.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests
from devstack.pg import EmbeddedPostgres, free_port
from devstack.usage_sim import WebhookSender
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from chargeback.core import db
from chargeback.core.settings import load
from chargeback.usage import receiver
from chargeback.usage.events import parse_started
from chargeback.usage.webhook import sign

from .conftest import WEBHOOK_SECRET
from .usage_helpers import ev, query, stored
from .waiting import until

USAGE_TABLES = ["function_usage", "function_usage_hourly_stripes",
                "function_usage_daily_stripes", "usage_deliveries",
                "usage_delivery_namespaces", "usage_rejected_events",
                "usage_quarantined_deliveries"]


def snapshot(database_url) -> dict:
    """Everything the ingest writes, without the times it wrote it."""
    with psycopg.connect(database_url) as conn:
        return {
            "events": conn.execute("""
                SELECT namespace, function_name, started, started_ns, duration, duration_ns,
                       memory_bytes, delivery_id
                  FROM openfaas_metering.function_usage
                 ORDER BY started_ns, namespace, function_name, duration_ns, memory_bytes
                -- the whole identity: the cases share starts and durations across functions
                """).fetchall(),
            "hourly": conn.execute("""
                SELECT namespace, function_name, hour_start, invocations, duration_ns,
                       gb_seconds FROM openfaas_metering.function_usage_hourly ORDER BY 1, 2, 3
                """).fetchall(),
            "daily": conn.execute("""
                SELECT namespace, function_name, day_start, invocations, duration_ns,
                       gb_seconds FROM openfaas_metering.function_usage_daily ORDER BY 1, 2, 3
                """).fetchall(),
            "deliveries": conn.execute("""
                SELECT delivery_id, body_sha256, events, accepted, duplicates, excluded,
                       rejected FROM openfaas_metering.usage_deliveries ORDER BY 1, 2
                """).fetchall(),
            "namespaces": conn.execute("""
                SELECT * FROM openfaas_metering.usage_delivery_namespaces ORDER BY 1, 2, 3
                """).fetchall(),
            "rejected": conn.execute("""
                SELECT delivery_id, body_sha256, event_index, namespace, reason, event_json
                  FROM openfaas_metering.usage_rejected_events ORDER BY 1, 2, 3""").fetchall(),
        }


# The zero-count case ------------------------------------------------------------------

_FAIL = "DO $$BEGIN RAISE EXCEPTION 'injected fault' USING ERRCODE = '{}'; END$$"


class FailNthStatement:
    """Test-only fault hook around the driver: the n-th statement the process sends
    (COPY included) is replaced by one that fails inside PostgreSQL with `sqlstate`,
    so the transaction really aborts there. Statements are counted from arm()."""

    def __init__(self, monkeypatch):
        self.n = 0
        self.sqlstate = ""
        self.seen: list[str] = []
        execute, copy = psycopg.Cursor.execute, psycopg.Cursor.copy
        hook = self

        def failing_execute(cursor, query, params=None, **kwargs):
            if hook.due(query):
                return execute(cursor, _FAIL.format(hook.sqlstate))
            return execute(cursor, query, params, **kwargs)

        def failing_copy(cursor, statement, params=None, **kwargs):
            if hook.due(statement):
                execute(cursor, _FAIL.format(hook.sqlstate))
            return copy(cursor, statement, params, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", failing_execute)
        monkeypatch.setattr(psycopg.Cursor, "copy", failing_copy)

    def arm(self, n: int, sqlstate: str) -> None:
        self.n, self.sqlstate, self.seen = n, sqlstate, []

    def due(self, query) -> bool:
        text = query if isinstance(query, str) else repr(query)
        if not self.n or not text.strip():  # the pool's liveness check sends ""
            return False
        self.seen.append(" ".join(text.split())[:60])
        if len(self.seen) == self.n:
            self.n = 0
            return True
        return False


@pytest.fixture
def in_process(database_url, secrets_dir, monkeypatch):
    """receive-usage's whole path (receiver.receive) in this process, on its own database."""
    monkeypatch.setenv("SECRETS_DIR", str(secrets_dir))
    settings = load({"DATABASE_URL": database_url, "DB_CONNECT_TIMEOUT": "2",
                     "SECRETS_DIR": str(secrets_dir)})
    yield settings
    db.close_all()


def _deliver(settings, body: bytes, delivery_id: str):
    headers = {"X-Openfaas-Signature-256": sign(body, WEBHOOK_SECRET),
               "X-Openfaas-Delivery": delivery_id, "X-Openfaas-Event": "function_usage"}
    return receiver.receive(settings, headers, body).body


def _reset(database_url):
    with psycopg.connect(database_url) as conn:
        for table in USAGE_TABLES:  # DELETE: much cheaper than TRUNCATE for a few rows
            conn.execute(f"DELETE FROM openfaas_metering.{table}")


SEED = [ev(duration=d) for d in range(1, 6)]
CASES = {
    # duplicates of stored events and inside the batch: the plain INSERT fails on
    # its savepoint and the batch goes again with ON CONFLICT DO NOTHING
    "with duplicates": ([ev(duration=4), ev(duration=5)] + [ev(duration=d) for d in range(6, 11)]
                        + [ev(duration=6), ev(duration=-1), ev(namespace="openfaas-system")]),
    # no duplicate: the plain INSERT path
    "all new": [ev(duration=d, function_name="figlet") for d in range(1, 8)],
    # a replay of the seed delivery: lock, look-up, the stored summary
    "replay": SEED,
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("sqlstate, transient", [("57P01", False), ("40P01", True)],
                         ids=["connection-lost", "deadlock"])
def test_a_failure_at_any_statement_of_the_ingest_never_makes_the_retry_count_zero(
        in_process, database_url, monkeypatch, case, sqlstate, transient):
    """57P01 (the server went away) answers 503 and the sender retries; 40P01 (a
    deadlock between replicas) is retried inside the function. Either way the
    delivery ends up stored exactly once, as if nothing had failed."""
    body = json.dumps(CASES[case]).encode()
    delivery = "seed" if case == "replay" else "d-1"
    seed_body = json.dumps(SEED).encode()
    # the reference: what one undisturbed delivery leaves
    _deliver(in_process, seed_body, "seed")
    before = snapshot(database_url)
    expected_answer = _deliver(in_process, body, delivery)
    expected = snapshot(database_url)

    hook = FailNthStatement(monkeypatch)
    n = 0
    while True:
        n += 1
        _reset(database_url)
        _deliver(in_process, seed_body, "seed")
        hook.arm(n, sqlstate)
        try:
            answer = _deliver(in_process, body, delivery)
            failed = False
        except db.DatabaseUnavailable:
            failed = True
        statements, reached = hook.seen, len(hook.seen) >= n
        hook.arm(0, "")
        if failed:
            assert not transient, f"statement {n}: a deadlock must be retried inside"
            assert snapshot(database_url) == before, f"statement {n} left a trace"
            answer = _deliver(in_process, body, delivery)  # the sender's retry
        assert answer == expected_answer, f"fault at statement {n}: {statements[-1:]}"
        assert snapshot(database_url) == expected, f"fault at statement {n}"
        if not reached:  # the fault was never reached: every statement was tried
            break
    assert n > 3
    print(f"\nzero-count [{case}, {sqlstate}]: failed at each of {n - 1} statements in "
          f"turn, each retry stored the delivery exactly once")


# Concurrency through the local gateway ---------------------------------------------

@pytest.fixture
def via_gateway(local_runtime, product_stack, secrets_dir):
    """receive-usage alone behind the local gateway; returns its gateway URL."""
    stack = dataclasses.replace(
        product_stack, functions={"receive-usage": product_stack.functions["receive-usage"]})
    runtime = local_runtime(stack, cron=False, function_env={
        "SECRETS_DIR": str(secrets_dir), "DB_CONNECT_TIMEOUT": "5"})
    return f"{runtime.gateway_url}/function/receive-usage.openfaas-system"


def _parallel(url, sends: list[tuple[bytes, str]]):
    """Post every (body, delivery id) at the same moment, one thread each."""
    barrier = threading.Barrier(len(sends))

    def post(item):
        body, delivery_id = item
        sender = WebhookSender(url, WEBHOOK_SECRET)
        barrier.wait()
        return sender.post(body, delivery_id=delivery_id)

    with ThreadPoolExecutor(len(sends)) as pool:
        return list(pool.map(post, sends))


def _hourly_invocations(database_url) -> int:
    return query(database_url, "SELECT coalesce(sum(invocations), 0) FROM "
                               "openfaas_metering.function_usage_hourly")[0][0]


def test_one_delivery_sent_20_times_at_once_through_the_gateway_is_stored_once(
        via_gateway, database_url):
    events = [ev(duration=d) for d in range(1, 501)]
    body = json.dumps(events).encode()
    answers = _parallel(via_gateway, [(body, "twenty")] * 20)
    assert [r.status_code for r in answers] == [200] * 20
    assert len({r.text for r in answers}) == 1  # every sender got the one summary
    assert answers[0].json()["accepted"] == 500
    assert sum(r.headers.get("X-Delivery-Replayed") == "true" for r in answers) == 19
    assert len(stored(database_url)) == 500 == _hourly_invocations(database_url)
    assert query(database_url, "SELECT count(*) FROM openfaas_metering.usage_deliveries"
                 ) == [(1,)]
    print(f"\n20 parallel copies of one delivery: 20 requests, {20 * 500:,} events sent, "
          "500 stored, 0 duplicated, 0 lost")


def test_two_deliveries_sharing_events_sent_at_once_store_each_event_once(
        via_gateway, database_url):
    events = [ev(duration=d) for d in range(1, 601)]
    first, second = events[:400], events[200:]  # 200 events in both
    sends = [(json.dumps(first).encode(), "first"), (json.dumps(second).encode(), "second")]
    answers = _parallel(via_gateway, sends * 5)  # each sent 5 times, all at once
    assert [r.status_code for r in answers] == [200] * 10
    by_delivery: dict[str, set[str]] = {}
    for r in answers:
        by_delivery.setdefault(r.json()["delivery"], set()).add(r.text)
    # all five copies of a delivery got the one summary the first one stored
    assert {name: len(texts) for name, texts in by_delivery.items()} == {"first": 1,
                                                                          "second": 1}
    summaries = {name: json.loads(texts.pop()) for name, texts in by_delivery.items()}
    assert summaries["first"]["accepted"] + summaries["second"]["accepted"] == 600
    assert summaries["first"]["duplicates"] + summaries["second"]["duplicates"] == 200
    assert len(stored(database_url)) == 600 == _hourly_invocations(database_url)
    print(f"\ntwo deliveries sharing 200 events, each sent 5 times at once: 10 requests, "
          f"{5 * 800:,} events sent, 600 unique stored, 0 duplicated, 0 lost")


# Hostile input: a reproducible fuzz over real HTTP ------------------------------------

FUZZ_REQUESTS = 10_000
FUZZ_BATCH = 20          # requests per hypothesis example, sent 4 at a time
FUZZ_LIMIT = 32 * 1024   # MAX_BODY_BYTES of the fuzzed function: oversized bodies stay cheap
DB_PASSWORD = "fuzz-db-password-7f3a"  # trust auth ignores it; it must never be echoed
FORGED_MEMORY = 3 * 1024 * 1024 + 1    # every forged event carries it: never billable

# A small universe of valid events (one integer each, cheap to draw), so that the
# same event is sent again in other deliveries.
_NAMES = ["acme", "globex", "initech", "hooli-api"]
_FUNCTIONS = ["env", "figlet", "resize-image"]
_NANOS = [0, 1, 999_999_999]
_MEMORY = [128 * 2**20, 2**30]
_UNIVERSE = len(_NAMES) * len(_FUNCTIONS) * 3600 * len(_NANOS) * 6 * len(_MEMORY)


def _valid_event(n: int) -> dict:
    n, ns = divmod(n, len(_NAMES))
    n, fn = divmod(n, len(_FUNCTIONS))
    n, second = divmod(n, 3600)
    n, nanos = divmod(n, len(_NANOS))
    memory, duration = divmod(n, 6)
    return {"event": "function_usage", "namespace": _NAMES[ns], "function_name": _FUNCTIONS[fn],
            "started": f"2026-10-14T15:{second // 60:02d}:{second % 60:02d}.{_NANOS[nanos]:09d}Z",
            "duration": duration, "memory_bytes": _MEMORY[memory]}


# Each request is built from a kind and a seed that hypothesis draws (two draws a
# request: drawing every field through hypothesis cost ~3 ms a request); the rest
# comes from random.Random(seed), so every run sends the same 10,000 requests.
_NOT_A_NAME = ["", "Acme", "a'; DROP TABLE openfaas_metering.function_usage; --", "tenant-ü",
               "😀", "a" * 64, "-acme", "acme-", "a b", "a\x00b", "%s", "$1", "\\", "..",
               "acme/../x", "\u202eacme", 7, None, True, [1, 2], {"ns": "acme"}]
_NOT_A_TIME = ["1969-12-31T23:59:59Z", "9999-12-31T23:59:59Z", "2026-13-01T00:00:00Z",
               "2026-10-14 15:01:20Z", "2026-10-14T15:01:20", "2026-10-14T25:00:00Z",
               "2026-10-14T15:01:20.1234567890Z", "2026-02-30T00:00:00Z", "",
               "2026-10-14T15:01:60Z", "１９７０-01-01T00:00:00Z", "now", 1791990028, 1.5,
               float("nan"), None, ["2026-10-14T15:01:20Z"]]
_FIELDS = ["event", "namespace", "function_name", "started", "duration", "memory_bytes"]


def _not_a_count(rng: random.Random):
    return rng.choice([
        lambda: -rng.randint(1, 10**12), lambda: 10 ** rng.randint(19, 4000),
        lambda: rng.random() * 1e6, lambda: float(rng.randint(0, 100)), lambda: float("nan"),
        lambda: float("inf"), lambda: -float("inf"), lambda: str(rng.randint(0, 99)),
        lambda: None, lambda: True, lambda: [1], lambda: {"n": 1}])()


def _invalid_event(rng: random.Random) -> dict:
    """A function_usage event with one field that is never valid."""
    event = _valid_event(rng.randrange(_UNIVERSE))
    field = rng.choice(_FIELDS + ["missing"])
    if field == "missing":
        del event[rng.choice(_FIELDS)]
    elif field in ("namespace", "function_name"):
        event[field] = rng.choice(_NOT_A_NAME)
    elif field == "started":
        event[field] = rng.choice(_NOT_A_TIME)
    elif field == "event":
        event[field] = rng.choice(["api_access", "Function_Usage", "", None, 1])
    else:
        event[field] = 0 if field == "memory_bytes" and rng.random() < 0.2 else _not_a_count(rng)
    return event


def _header_text(rng: random.Random, low: int = 1, high: int = 40) -> str:
    """Latin-1 text an HTTP client can send as a header value (requests' own rule)."""
    text = "".join(chr(rng.randint(0x21, 0xff)) for _ in range(rng.randint(low, high)))
    return "x" + text[1:] if text[:1].isspace() else text


def _forgeries(body: bytes) -> list:
    right = sign(body, WEBHOOK_SECRET)
    return [None, "", right[:-1], right + "0", right.replace("sha256=", "sha1="),
            "sha256=" + "0" * 64, sign(body, WEBHOOK_SECRET + "x"),
            sign(body + b" ", WEBHOOK_SECRET), sign(body[:-1], WEBHOOK_SECRET),
            right.replace("=", "= "), "sha256=" + right[7:].upper()[:-1]]


_FIXED_BAD_BODIES = [b"{}", b'"x"', b"null", b"1", b"[1,2", b"\xff\xfe[]", b"",
                     b'[{"event": "function_usage", "duration": NaN}',
                     b'{"a": [' + b"{}, " * 50 + b"{}]}"]
KINDS = ["valid", "mixed", "bad-body", "forged", "oversized", "other-type",
         "bad-delivery-id", "replay"]


_built = itertools.count()


def build_attack(kind_and_seed) -> tuple:
    """(kind, body, options, valid events in it); kind says what the answer must be."""
    kind, seed = kind_and_seed
    # hypothesis favours small seeds (0, 1, ...); the running count keeps requests distinct
    rng = random.Random(seed * 1_000_003 + next(_built))
    delivery = rng.choice([lambda: str(uuid.UUID(int=rng.getrandbits(128))),
                           lambda: rng.choice(["d-1", "d-2", "d-3"]),
                           lambda: _header_text(rng)])()
    events = [_valid_event(rng.randrange(_UNIVERSE)) for _ in range(rng.randint(1, 8))]
    if kind in ("valid", "replay"):
        return kind, json.dumps(events).encode(), {"delivery": delivery}, events
    if kind == "mixed":
        items = events + [_invalid_event(rng) for _ in range(rng.randint(1, 4))]
        items += rng.sample([1, -1, "x", None, [None], 10**30, 1.5], rng.randint(0, 2))
        rng.shuffle(items)
        return kind, json.dumps(items, allow_nan=True).encode(), {"delivery": delivery}, events
    if kind == "bad-body":
        valid_body = json.dumps(events).encode()
        depth = rng.randint(40, 5000)
        body = rng.choice([
            lambda: valid_body[:rng.randrange(len(valid_body))],  # truncated
            lambda: rng.randbytes(rng.randint(0, 200)),
            lambda: b"[" * depth + b"]" * depth,  # deep nesting
            lambda: b"[" + b"7" * rng.randint(4301, 6000) + b"]",  # a huge integer
            lambda: rng.choice(_FIXED_BAD_BODIES)])()
        try:  # a random body can be a valid JSON array by chance
            if isinstance(json.loads(body), list):
                body = b"{" + body
        except (ValueError, RecursionError):
            pass
        return kind, body, {"delivery": delivery}, []
    if kind == "forged":
        body = json.dumps([dict(e, memory_bytes=FORGED_MEMORY) for e in events]).encode()
        signature = rng.choice(_forgeries(body) + [_header_text(rng, 0, 80)])
        return kind, body, {"delivery": delivery, "signature": signature}, []
    if kind == "oversized":
        size = rng.randint(FUZZ_LIMIT + 1, 3 * FUZZ_LIMIT)
        body = b"[" + b" " * (size - 2) + b"]"
        return kind, body, {"delivery": delivery, "signed": rng.random() < 0.5}, []
    if kind == "other-type":
        event_type = rng.choice(["api_access", "FUNCTION_USAGE", "function_usage2", "x" * 300,
                                 _header_text(rng, 1, 20)])
        return kind, json.dumps(events).encode(), {"delivery": delivery, "event": event_type}, []
    # bad-delivery-id: longer than the 200 characters allowed
    return kind, json.dumps(events).encode(), {"delivery": "d" * rng.randint(201, 400)}, []


ATTACKS = st.tuples(st.sampled_from(KINDS), st.integers(0, 2**64)).map(build_attack)


EXPECTED_STATUS = {"valid": {200}, "replay": {200}, "mixed": {200}, "bad-body": {400},
                   "forged": {401}, "oversized": {413}, "other-type": {200},
                   "bad-delivery-id": {400}}


def test_a_reproducible_fuzz_of_10000_hostile_requests_never_gets_a_5xx(
        serve_function, secrets_dir, database_url, tmp_path):
    url_with_password = database_url.replace("postgres@", f"postgres:{DB_PASSWORD}@")
    fn = serve_function("receive-usage", env={
        "SECRETS_DIR": str(secrets_dir), "DATABASE_URL": url_with_password,
        "MAX_BODY_BYTES": str(FUZZ_LIMIT), "DB_CONNECT_TIMEOUT": "5"})
    local = threading.local()
    last_body: dict[str, bytes] = {}  # delivery id -> a body it was accepted with

    def post(item):
        kind, body, options, _ = item
        if not hasattr(local, "sender"):
            local.sender = WebhookSender(fn.url, WEBHOOK_SECRET)
        signature = options.get("signature", "sign")
        if kind == "oversized" and not options["signed"]:
            signature = None
        if kind == "replay":  # the same delivery again, with the body it was accepted with
            body = last_body.get(options["delivery"], body)
        answer = local.sender.post(body, delivery_id=options["delivery"], signature=signature,
                                   event=options.get("event", "function_usage"))
        if answer.status_code == 200 and kind in ("valid", "replay"):
            last_body.setdefault(options["delivery"], body)
        return answer, body

    # Requests are sent while hypothesis generates the next ones, and checked after.
    senders = ThreadPoolExecutor(4)
    pending: list = []

    @settings(max_examples=FUZZ_REQUESTS // FUZZ_BATCH, derandomize=True, deadline=None,
              database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.lists(ATTACKS, min_size=FUZZ_BATCH, max_size=FUZZ_BATCH))
    def run(attacks):
        pending.extend((attack, senders.submit(post, attack)) for attack in attacks)
        if len(pending) > 400:  # keep the queue short: wait for the oldest
            pending[-400][1].result()

    try:
        run()
    finally:
        senders.shutdown()
    sent: list[tuple[str, int]] = []
    expected: set[tuple] = set()
    valid_sent = 0
    for (kind, _, options, events), future in pending:
        r, body = future.result()
        sent.append((kind, r.status_code))
        if any("\x7f" in v for v in options.values() if isinstance(v, str)):
            # DEL is not allowed in a header: the server's HTTP parser refuses it
            assert (r.status_code, r.json()) == (
                400, {"error": "Bad Request: Invalid header"}), r.text
            continue
        assert r.status_code in EXPECTED_STATUS[kind], (kind, r.status_code, r.text[:300])
        assert WEBHOOK_SECRET not in r.text and DB_PASSWORD not in r.text
        assert "Traceback" not in r.text
        answer = r.json()
        if r.status_code >= 400:
            assert answer["error"] and "\n" not in answer["error"]
        elif kind in ("valid", "replay", "mixed"):
            if kind != "mixed":
                events = json.loads(body)  # a replay sends an earlier body again
            valid_sent += len(events)
            expected.update(parse(e) for e in events)

    assert len(sent) >= FUZZ_REQUESTS
    identities = {tuple(row) for row in stored(database_url)}
    forged = query(database_url, "SELECT count(*) FROM openfaas_metering.function_usage "
                                 "WHERE memory_bytes = %s", (FORGED_MEMORY,))[0][0]
    assert forged == 0
    assert identities == expected  # nothing lost, nothing invented
    assert _hourly_invocations(database_url) == len(expected)  # and none counted twice
    log = (tmp_path / "receive-usage.log").read_text(errors="replace")
    assert WEBHOOK_SECRET not in log and DB_PASSWORD not in log and "Traceback" not in log
    by_status = Counter(status for _, status in sent)
    print(f"\nfuzz: {len(sent):,} requests, {dict(sorted(by_status.items()))}; "
          f"{valid_sent:,} valid events sent in accepted deliveries, {len(expected):,} "
          f"unique stored, 0 duplicated, 0 lost, 0 forged stored")


def parse(event: dict) -> tuple:
    return (event["namespace"], event["function_name"], parse_started(event["started"]),
            event["duration"], event["memory_bytes"])


# Faults mid-stream -------------------------------------------------------------------

def test_postgres_stopped_and_the_function_killed_mid_stream_lose_and_double_nothing(
        local_runtime, product_stack, secrets_dir, tmp_path):
    """Four senders retry every 5xx and every broken connection, as the event-worker
    does, while PostgreSQL is stopped (until they have had four 503s) and later the function is killed and
    restarted: every delivery ends stored exactly once."""
    server = EmbeddedPostgres(tmp_path / "stream-pg", free_port(), durable=False).start()
    try:
        stack = dataclasses.replace(
            product_stack, functions={"receive-usage": product_stack.functions["receive-usage"]})
        runtime = local_runtime(stack, cron=False, function_env={
            "SECRETS_DIR": str(secrets_dir), "DATABASE_URL": server.url,
            "DB_CONNECT_TIMEOUT": "1"})
        url = f"{runtime.gateway_url}/function/receive-usage.openfaas-system"
        unique = [ev(duration=d, function_name=f"fn-{d % 7}") for d in range(1, 6001)]
        # 60 deliveries of 150 events; each event sent in one or two of them
        deliveries = [(f"stream-{i}", unique[i * 100:i * 100 + 150]) for i in range(60)]
        done = threading.Semaphore(0)
        requests_sent, failures = Counter(), Counter()
        lock = threading.Lock()

        def deliver(item):
            delivery_id, events = item
            sender = WebhookSender(url, WEBHOOK_SECRET, timeout_s=30)
            while True:
                try:
                    r = sender.post(events, delivery_id=delivery_id)
                    status = r.status_code
                except requests.RequestException:
                    status = "connection error"
                with lock:
                    requests_sent[delivery_id] += 1
                    if status != 200:
                        failures[status] += 1
                if status == 200:
                    done.release()
                    return r.json()
                assert status in (502, 503, "connection error"), (status, r.text)
                time.sleep(0.2)

        with ThreadPoolExecutor(4) as pool:
            pending = pool.map(deliver, deliveries)
            for _ in range(15):
                done.acquire()
            server.stop()  # PostgreSQL goes away mid-stream, until the senders feel it ...
            until(lambda: failures[503] >= 4, "four 503s from the stopped database", 20)
            server.start()  # ... and comes back
            for _ in range(15):
                done.acquire()
            runtime.processes["receive-usage"].proc.kill()  # the function dies mid-request
            runtime.processes["receive-usage"].proc.wait()
            assert runtime.restart_dead() == ["receive-usage"]
            runtime.processes["receive-usage"].wait_healthy()
            answers = list(pending)
        sent = sum(len(events) for _, events in deliveries)
        assert sum(a["accepted"] for a in answers) == len(unique)
        assert sum(a["duplicates"] for a in answers) == sent - len(unique)
        with psycopg.connect(server.url) as conn:
            rows = conn.execute("SELECT count(*), count(DISTINCT (namespace, function_name,"
                                " started_ns, duration_ns, memory_bytes)) FROM"
                                " openfaas_metering.function_usage").fetchone()
            invocations = conn.execute("SELECT sum(invocations) FROM "
                                       "openfaas_metering.function_usage_hourly").fetchone()[0]
        assert rows == (len(unique), len(unique)) and invocations == len(unique)
        # the faults were felt: 503s while PostgreSQL was away, 502s or broken
        # connections while the function was dead
        assert failures[503] > 0, dict(failures)
        assert failures[502] + failures["connection error"] > 0, dict(failures)
        print(f"\nmid-stream faults: {len(deliveries)} deliveries, "
              f"{sum(requests_sent.values())} requests ({dict(failures)} retried), "
              f"{sent:,} events sent, {len(unique):,} unique stored, 0 duplicated, 0 lost")
    finally:
        server.discard()
