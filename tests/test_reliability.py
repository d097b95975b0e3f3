"""The campaign's fast receive-usage cases (issue 15): the zero-count case, parallel
deliveries through the local gateway, and a reproducible fuzz over real HTTP.

Each test prints its measured outcome (`scripts/test -s tests/test_reliability.py`);
the README's Reliability table records them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from chargeback import db, receiver
from chargeback.http import RequestError
from chargeback.settings import load
from chargeback.webhook import sign
from devstack.usage_sim import WebhookSender

from .conftest import WEBHOOK_SECRET
from .test_receive_usage import ev, query, stored

USAGE_TABLES = ["function_usage", "function_usage_hourly", "usage_deliveries",
                "usage_delivery_namespaces", "usage_rejected_events",
                "usage_quarantined_deliveries"]


def snapshot(database_url) -> dict:
    """Everything the ingest writes, without the times it wrote it."""
    with psycopg.connect(database_url) as conn:
        return {
            "events": conn.execute("""
                SELECT namespace, function_name, started, started_ns, duration, duration_ns,
                       memory_bytes, delivery_id
                  FROM openfaas_metering.function_usage ORDER BY started_ns, duration_ns
                """).fetchall(),
            "hourly": conn.execute("""
                SELECT namespace, function_name, hour_start, invocations, duration_ns,
                       gb_seconds FROM openfaas_metering.function_usage_hourly ORDER BY 1, 2, 3
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
    settings = load({"DATABASE_URL": database_url, "DB_CONNECT_TIMEOUT": "2"})
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
