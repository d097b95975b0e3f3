"""The campaign's hostile input for meter-capacity, aggregate-month and email-invoice (issue 15):
a reproducible fuzz over real HTTP against the template's server (as in the image), and the
regressions for the 500s it found. receive-usage's 10,000-request fuzz is in
tests/test_reliability.py.

`scripts/test -s tests/test_reliability_fuzz.py` prints the measured outcome.
"""
from __future__ import annotations

import itertools
import json
import random
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import psycopg
import pytest
import requests
from devstack.pg import free_port
from devstack.sample_invoices import finalized_invoice
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from chargeback.billing import month_close
from chargeback.capacity import tick as capacity_tick
from chargeback.core.responses import RequestError
from chargeback.core.settings import load
from chargeback.documents import delivery as invoice_delivery

from .conftest import ADMIN
from .billing_helpers import NS, event, send, settings_for
from .invoices import RecordingSmtp, start_smtp
from .billing_helpers import Recorder

FUZZ_REQUESTS = 4_500      # about 1,500 a function, on top of receive-usage's 10,000
FUZZ_BATCH = 30            # requests per hypothesis example
LIMIT = 1024 * 1024        # the template's default MAX_BODY_BYTES (these functions keep it)
DB_PASSWORD = "fuzz-bundle-db-password-51c9"  # trust auth ignores it; never to be echoed
SMTP_PASSWORD = "fuzz-smtp-password-0e77"
FUNCTIONS = ["meter-capacity", "aggregate-month", "email-invoice"]
KINDS = ["valid", "bad-body", "bad-field", "unknown-field", "method", "oversized", "headers"]
NOW = datetime.now(timezone.utc)

_DEEP = b"[" * 50_000 + b"]" * 50_000
HOSTILE_TEXT = ["", " ", "'; DROP TABLE openfaas_metering.invoices; --", "%s", "$1", "\\",
                "\x00", "a\x00b", "\u202eINV", "😀" * 50, "Zoë", "x" * 5000, "\r\nBcc: x@y.z",
                "../../etc/passwd", "<script>alert(1)</script>", "{{7*7}}", "${jndi:x}",
                "NaN", "-1", "1e999", "2026-09\n", "INV-2026-000001' OR '1'='1"]
HOSTILE_VALUES = HOSTILE_TEXT + [None, True, False, 0, -1, 10**30, 1.5, float("nan"),
                                 float("inf"), [], [1], {}, {"$gt": ""}, 10 ** 400]
BAD_TIMES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-13-01T00:00:00Z",
             "2026-10-01T00:00:00", "2026-10-01", "now", "9999-12-31T23:59:59Z",
             "2026-10-01T24:00:00Z", "１９７０-01-01T00:00:00Z", "2026-10-01T00:00:00+25:00"]
BAD_PERIODS = ["0000-01", "9999-12", "2026-00", "2026-13", "26-09", "2026-9", "2026/09",
               "9998-12", "1899-12", "September", "2026-09-01"]
OPTIONS = ["period", "tenant", "dry_run", "verify", "export"]
METHODS = ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "FOO"]


def _latin1(rng: random.Random, low: int = 1, high: int = 40) -> str:
    """Text an HTTP client can send as a header value."""
    text = "".join(chr(rng.randint(0x21, 0xff)) for _ in range(rng.randint(low, high)))
    text = text.replace("\x7f", "x")  # DEL: the server's parser refuses it (400)
    return "x" + text[1:] if text[:1].isspace() else text


def _json(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _bad_body(rng: random.Random, valid: bytes) -> bytes:
    body = rng.choice([
        lambda: valid[:rng.randrange(1, len(valid))] if len(valid) > 2 else b"{",
        lambda: b"{" + rng.randbytes(rng.randint(0, 200)),
        lambda: _DEEP[:rng.randint(200, 50_000)] + _DEEP[50_000:][:rng.randint(0, 50_000)],
        lambda: b'{"x": ' + b"7" * rng.randint(4301, 9000) + b"}",
        lambda: rng.choice([b"[]", b"[1]", b'"x"', b"null", b"1", b"true", b"\xff\xfe{}",
                            b'{"now": NaN', b"{'now': 1}", b"{}}", b"\x00"])])()
    if body in (b"[]", b"null"):
        return body  # JSON, but not an object: still never a valid request
    return body


def _valid(fn: str, rng: random.Random, known: dict) -> tuple[bytes, set[int]]:
    """A request that is valid for `fn`, and the statuses it may get."""
    if fn == "meter-capacity":
        return rng.choice([
            (b"", {200}), (b"{}", {200}),
            (_json({"now": f"2026-10-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
                           f"{rng.randint(0, 59):02d}:00Z"}), {200}),
            (_json({"now": "2099-01-01T00:00:00Z"}), {400})])  # ahead of the database clock
    if fn == "aggregate-month":
        return rng.choice([
            (_json({"dry_run": True}), {200}), (_json({"dry_run": True, "period": "2026-09"}),
                                                {200}),
            (_json({"dry_run": True, "tenant": rng.choice(["acme", "globex", "nobody"])}),
             {200}),
            (_json({"verify": known["number"]}), {200}), (_json({"export": known["number"]}),
                                                          {200}),
            (_json({rng.choice(["verify", "export"]): "INV-2026-999999"}), {404}),
            (_json({"period": "2099-01"}), {400})])  # not ended: refused, nothing closed
    return rng.choice([
        (_json({"invoice_id": known["sent"]}), {200}), (_json({"invoice_id": known["draft"]}),
                                                        {409}),
        (_json({"invoice_id": str(uuid.UUID(int=rng.getrandbits(128)))}), {404}),
        (_json({"invoice_id": known["sent"].upper()}), {200})])


def _field_body(fn: str, rng: random.Random, unknown: bool) -> bytes:
    if unknown:
        name = rng.choice(["colour", "now ", "Period", "__proto__", "invoice", _latin1(rng)])
        return _json({name: rng.choice(HOSTILE_VALUES)})
    value = rng.choice(HOSTILE_VALUES)
    if fn == "meter-capacity":
        return _json({"now": rng.choice([value] + BAD_TIMES)})
    if fn == "aggregate-month":
        key = rng.choice(OPTIONS)
        if key == "period":
            value = rng.choice([value] + BAD_PERIODS)
        if key == "dry_run" and isinstance(value, bool):
            value = "yes"  # {"dry_run": false} is a real close: valid, not hostile
        doc = {key: value}
        if key in ("verify", "export") and rng.random() < 0.3:
            doc["period"] = "2026-09"  # a look-up takes no other option
        return _json(doc)
    return _json({"invoice_id": value})


def build_request(spec) -> tuple:
    """(function, kind, method, body, headers, statuses the answer may have)."""
    fn, kind, seed, known = spec
    rng = random.Random(seed * 1_000_003 + next(_built))
    body, allowed = _valid(fn, rng, known)
    headers = {"Content-Type": "application/json"}
    if fn == "aggregate-month":
        headers.update(ADMIN)  # every option is the operator's
    if kind == "bad-body":
        body, allowed = _bad_body(rng, body or b'{"now": "x"}'), {400}
        if fn == "meter-capacity" and _parses(body):
            allowed = {200}  # any JSON but {"now": ...} is a plain tick (see below)
    elif kind in ("bad-field", "unknown-field"):
        body = _field_body(fn, rng, kind == "unknown-field")
        # a hostile value can be valid by chance (e.g. {"tenant": "x"}): any 2xx/4xx then;
        # meter-capacity reads only "now" and ticks the current minute for any other JSON
        # (cron-connector's body is not the function's to choose)
        allowed = ({400} if fn != "meter-capacity" else {200}) if kind == "unknown-field" \
            else {200, 400, 401, 403, 404, 409}
    elif kind == "method":
        return fn, kind, rng.choice(METHODS), body, headers, {405}
    elif kind == "oversized":
        body, allowed = b"{" + b" " * rng.randint(LIMIT, LIMIT + 4096) + b"}", {413}
    elif kind == "headers":  # injected headers on an otherwise valid request
        for _ in range(rng.randint(1, 4)):
            name = rng.choice(["X-Forwarded-For", "X-Call-Id", "Authorization", "Cookie",
                               "X-Openfaas-Signature-256", "Content-Type", "Accept",
                               "X-Topic", "X-Connector", "X-" + _latin1(rng, 1, 10).encode(
                                   "latin-1").hex()])
            headers[name] = _latin1(rng, 0, 200)
            if name == "Authorization" and fn == "aggregate-month":
                allowed = allowed | {401}  # the operator's token replaced
    return fn, kind, "POST", body, headers, allowed


def _parses(body: bytes) -> bool:
    try:
        json.loads(body)
        return True
    except (ValueError, RecursionError):
        return False


_built = itertools.count()


@pytest.fixture
def bundle(serve_function, database_url, kube_api, secrets_dir, tmp_path):
    """The three functions with test secrets, over a database holding a closed September."""
    billing = settings_for(database_url, tmp_path)
    send(billing, [event(ns, "2026-09-10T10:00:00Z", 100 * NS) for ns in ("acme", "globex")])
    closed = month_close.run(billing, month_close.Options(period="2026-09"),
                             datetime(2026, 10, 2, tzinfo=timezone.utc), Recorder())
    first, second = closed["periods"][0]["invoices"]
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE openfaas_metering.invoices SET status = 'sent', sent_at = now(),"
                     " message_id = '<fuzz@example.com>' WHERE invoice_id = %s",
                     (first["invoice_id"],))
    known = {"number": second["number"], "sent": first["invoice_id"],
             "draft": finalized_invoice(database_url, status="draft")}
    handler = RecordingSmtp()
    smtp = start_smtp(handler, free_port())
    url = database_url.replace("postgres@", f"postgres:{DB_PASSWORD}@")
    # GATEWAY_URL: nothing listens there, so no hand-off could reach another runtime
    common = {"DATABASE_URL": url, "DB_CONNECT_TIMEOUT": "5", "GATEWAY_URL": "http://127.0.0.1:9"}
    urls = {
        "meter-capacity": serve_function("meter-capacity", env={
            **common, "KUBECONFIG": str(kube_api.kubeconfig), "ALLOW_CLOCK_OVERRIDE": "true"}),
        "aggregate-month": serve_function("aggregate-month", env={
            **common, "PRICEBOOK_FILE": billing.pricebook_file,
            "SECRETS_DIR": str(secrets_dir)}),
        "email-invoice": serve_function("email-invoice", env={
            **common, "SMTP_URL": f"smtp://billing:{SMTP_PASSWORD}@127.0.0.1:{smtp.port}"}),
    }
    yield {name: fn.url for name, fn in urls.items()}, known, handler
    smtp.stop()


def _billing_state(database_url) -> tuple:
    with psycopg.connect(database_url) as conn:
        return tuple(conn.execute(sql).fetchall() for sql in (
            "SELECT * FROM openfaas_metering.invoices ORDER BY invoice_id",
            "SELECT * FROM openfaas_metering.invoice_lines ORDER BY invoice_id, line_no",
            "SELECT * FROM openfaas_metering.closed_periods ORDER BY period",
            "SELECT * FROM openfaas_metering.invoice_number_counters ORDER BY 1"))


def test_a_reproducible_fuzz_of_the_other_three_functions_never_gets_a_5xx(
        bundle, database_url, tmp_path):
    urls, known, smtp = bundle
    before = _billing_state(database_url)
    local = threading.local()

    def post(request):
        fn, _, method, body, headers, _ = request
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session.request(method, urls[fn], data=body, headers=headers, timeout=60)

    requests_ = st.tuples(st.sampled_from(FUNCTIONS), st.sampled_from(KINDS),
                          st.integers(0, 2**64), st.just(known)).map(build_request)
    senders = ThreadPoolExecutor(6)
    pending: list = []

    @settings(max_examples=FUZZ_REQUESTS // FUZZ_BATCH, derandomize=True, deadline=None,
              database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.lists(requests_, min_size=FUZZ_BATCH, max_size=FUZZ_BATCH))
    def run(batch):
        pending.extend((request, senders.submit(post, request)) for request in batch)
        if len(pending) > 300:
            pending[-300][1].result()

    try:
        run()
    finally:
        senders.shutdown()
    outcomes = Counter()
    for (fn, kind, method, body, headers, allowed), future in pending:
        r = future.result()
        outcomes[(fn, r.status_code)] += 1
        context = (fn, kind, method, body[:120], r.status_code, r.text[:300])
        assert r.status_code < 500 and r.status_code in allowed, context
        assert DB_PASSWORD not in r.text and SMTP_PASSWORD not in r.text, context
        assert "Traceback" not in r.text, context
        if r.status_code >= 400 and method != "HEAD":
            error = r.json()["error"]
            assert error and "\n" not in error, context
    assert sum(outcomes.values()) >= FUZZ_REQUESTS
    assert _billing_state(database_url) == before  # no invoice, line or number changed
    assert smtp.received == [] and smtp.rcpt_attempts == 0  # and no mail
    for fn in FUNCTIONS:
        log = (tmp_path / f"{fn}.log").read_text(errors="replace")
        assert DB_PASSWORD not in log and SMTP_PASSWORD not in log and "Traceback" not in log
    per_function = {fn: dict(sorted((s, n) for (f, s), n in outcomes.items() if f == fn))
                    for fn in FUNCTIONS}
    print(f"\nfuzz of the other three: {sum(outcomes.values()):,} requests, {per_function}; "
          "none 5xx, no traceback, invoices and numbers unchanged, 0 mails, no secret echoed")


# Regressions for the 500s the fuzz found ---------------------------------------------------

@pytest.mark.parametrize("parse", [
    month_close.parse_options, invoice_delivery.requested_invoice_id,
    lambda body: capacity_tick.requested_now(body, load({"ALLOW_CLOCK_OVERRIDE": "true"}))],
    ids=["aggregate-month", "email-invoice", "meter-capacity"])
def test_json_nested_too_deeply_is_a_400_not_a_recursion_error(parse):
    with pytest.raises(RequestError) as caught:
        parse(_DEEP)
    assert caught.value.status == 400 and caught.value.reason.startswith("body:")


@pytest.mark.parametrize("name", ["0000-01", "9999-12", "1899-12"])
def test_a_period_outside_the_calendar_is_a_400_naming_the_period(name):
    with pytest.raises(RequestError, match="^period: .* is out of range"):
        month_close.parse_options(_json({"period": name}))


@pytest.mark.parametrize("body", [b'{"verify": "a\\u0000b"}', b'{"export": "\\ud800"}',
                                  b'{"verify": "' + b"9" * 101 + b'"}'])
def test_an_invoice_number_postgres_cannot_hold_is_a_400_not_a_500(body):
    with pytest.raises(RequestError, match="^(verify|export): expected an invoice number"):
        month_close.parse_options(body)


@pytest.mark.parametrize("body, field", [(b'{"period": "2026-09\\n"}', "period"),
                                         (b'{"tenant": "acme\\n"}', "tenant")])
def test_a_trailing_line_break_does_not_pass_for_a_period_or_tenant(body, field):
    # a regex's $ matches before a final newline: "2026-09\n" passed as a second September
    with pytest.raises(RequestError, match=f"^{field}: "):
        month_close.parse_options(body)


@pytest.mark.parametrize("now", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_clock_override_with_no_utc_minute_is_a_400(now):
    with pytest.raises(RequestError, match="^now: expected an RFC 3339 time"):
        capacity_tick.requested_now(_json({"now": now}), load({"ALLOW_CLOCK_OVERRIDE": "true"}))


def test_a_method_no_route_takes_is_a_one_line_json_405(serve_function, database_url):
    fn = serve_function("email-invoice", env={"DATABASE_URL": database_url,
                                              "SMTP_URL": "smtp://127.0.0.1:9"})
    r = requests.request("TRACE", fn.url, timeout=10)
    assert r.status_code == 405 and r.headers["Content-Type"] == "application/json"
    assert r.json()["error"].startswith("405 Method Not Allowed")


RAW_HEADERS = [  # (headers after Host, body)
    (b"X-Call-Id: a\r\nX-Injected: 1", b"{}"),          # a second header smuggled in
    (b"X-Call-Id: a\nX-Injected: 1", b"{}"),            # a bare LF
    (b"X-Call-Id: a\x00b", b"{}"),                      # NUL
    (b"X-Call-Id: a\r\n folded", b"{}"),                # obsolete line folding
    (b"X Bad Name: 1", b"{}"),                          # a space in a header name
    (b": no name", b"{}"),
    (b"X-Long: " + b"a" * 70_000, b"{}"),               # one very long header
    (b"Content-Length: 2\r\nContent-Length: 3", None),  # two lengths: request smuggling
    (b"Transfer-Encoding: chunked\r\nContent-Length: 5", b"2\r\n{}\r\n0\r\n\r\n"),
]


def test_raw_header_injection_is_refused_or_ignored_never_a_5xx(bundle):
    """What a client library will not send: raw bytes on a socket to the template's server.
    (waitress quoted the offending line in its 400, line break included: now one line.)"""
    import socket
    from urllib.parse import urlsplit
    urls, _, _ = bundle
    for fn, (header, body) in itertools.product(FUNCTIONS, RAW_HEADERS):
        host, port = urlsplit(urls[fn]).hostname, urlsplit(urls[fn]).port
        length = b"" if body is None or b"Length" in header else b"Content-Length: 2\r\n"
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n" + length +
                         b"Connection: close\r\n\r\n" + (body or b"{}"))
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        status = int(answer.split(b" ", 2)[1])
        assert status < 500, (header[:40], answer[:300])
        head, content = answer.split(b"\r\n\r\n", 1)
        assert b"Traceback" not in answer and b"X-Injected" not in head
        if status >= 400:
            assert "\n" not in json.loads(content)["error"], answer[:300]
