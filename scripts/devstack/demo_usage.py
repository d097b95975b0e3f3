"""Demo section: September 2026 of metering webhooks for five tenants, through the gateway.

Over 200,000 signed function_usage events in deliveries of 1 to 1,000, with
replayed deliveries, events re-sent inside other deliveries, a few invalid
events and some from the excluded openfaas-system namespace. Then the per-tenant
totals are read back from the database, beside the OpenFaaS docs' sample
monthly query run unmodified, and checked against what was sent.
"""
from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal

import psycopg
import requests

from chargeback.usage.events import OPENFAAS_DOCS_MONTHLY_QUERY

from .usage_sim import (
    TENANTS,
    Delivery,
    WebhookSender,
    invalid_events,
    plan_deliveries,
    simulate_month,
)

MONTH = date(2026, 9, 1)  # 30 days: the docs' "last 30 days" at its close is exactly the month
CLOSE = "2026-10-01 00:00:00+00"
INVOCATIONS = 210_000
INVALID = 24
EXCLUDED = 400
SENDERS = 4  # concurrent deliveries, as several event-worker replicas would send
SEED = 2026


class DemoFailed(RuntimeError):
    pass


# Read back per tenant: the rollup (what invoices use) for the month, what
# was ignored as duplicate, and what was rejected.
TENANT_TOTALS = """
SELECT t.namespace,
       coalesce(r.invocations, 0), coalesce(r.gb_seconds, 0),
       coalesce(d.duplicates, 0), coalesce(q.rejected, 0)
  FROM unnest(%(tenants)s::text[]) AS t(namespace)
  LEFT JOIN (SELECT namespace, sum(invocations) AS invocations, sum(gb_seconds) AS gb_seconds
               FROM openfaas_metering.function_usage_hourly
              WHERE hour_start >= %(month)s::timestamptz
                AND hour_start < %(month)s::timestamptz + interval '1 month'
              GROUP BY namespace) r USING (namespace)
  LEFT JOIN (SELECT namespace, sum(duplicates) AS duplicates
               FROM openfaas_metering.usage_delivery_namespaces GROUP BY namespace) d
       USING (namespace)
  LEFT JOIN (SELECT namespace, count(*) AS rejected
               FROM openfaas_metering.usage_rejected_events GROUP BY namespace) q
       USING (namespace)
 ORDER BY t.namespace"""


def docs_query_at(database_url: str, now: str) -> list[tuple]:
    """The docs' query, text unmodified, with now() pinned to `now`.

    Its window is "the last 30 days", relative to now(). To run it as of the
    simulated month's close, a now() in a throw-away schema is put before
    pg_catalog on the search_path, inside a transaction that is rolled back.
    """
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE SCHEMA demo_clock")
        conn.execute(f"""CREATE FUNCTION demo_clock.now() RETURNS timestamptz
                         LANGUAGE sql STABLE AS $$ SELECT timestamptz '{now}' $$""")
        conn.execute("SET LOCAL search_path = demo_clock, pg_catalog, public")
        rows = conn.execute(OPENFAAS_DOCS_MONTHLY_QUERY).fetchall()
        conn.rollback()
    return rows


def send(url: str, secret: str, deliveries: list[Delivery]) -> dict:
    """Post every delivery with SENDERS threads; show progress; tally the answers."""
    local = threading.local()
    tally = {"accepted": 0, "duplicates": 0, "excluded": 0, "rejected": 0, "replayed": 0,
             "events": 0}
    lock = threading.Lock()
    total = sum(len(d.events) for d in deliveries)
    started = time.monotonic()
    next_report = [total // 10]

    def post(delivery: Delivery) -> None:
        if not hasattr(local, "sender"):
            local.sender = WebhookSender(url, secret, requests.Session())
        r = local.sender.post(delivery.body, delivery_id=delivery.delivery_id)
        if r.status_code != 200:
            raise DemoFailed(f"delivery {delivery.delivery_id}: {r.status_code} {r.text[:300]}")
        summary = r.json()
        with lock:
            tally["events"] += len(delivery.events)
            if r.headers.get("X-Delivery-Replayed") == "true":
                tally["replayed"] += 1
            else:
                for key in ("accepted", "duplicates", "excluded"):
                    tally[key] += summary[key]
                tally["rejected"] += len(summary["rejected"])
            if tally["events"] >= next_report[0] or tally["events"] == total:
                next_report[0] += total // 10
                elapsed = time.monotonic() - started
                print(f"  {tally['events']:>9,} / {total:,} events sent "
                      f"({100 * tally['events'] // total:>3}%)  accepted {tally['accepted']:>9,}"
                      f"  duplicates {tally['duplicates']:>6,}  rejected {tally['rejected']:>3}"
                      f"  {elapsed:5.1f} s  {tally['events'] / elapsed:>8,.0f} events/s",
                      flush=True)

    with ThreadPoolExecutor(SENDERS) as pool:
        for future in [pool.submit(post, d) for d in deliveries]:
            future.result()
    tally["seconds"] = time.monotonic() - started
    return tally


def run(env) -> None:
    rng = random.Random(SEED)
    events = simulate_month(rng, MONTH, INVOCATIONS)
    deliveries, expected = plan_deliveries(rng, events, invalid=invalid_events(rng, MONTH, INVALID),
                                           excluded=EXCLUDED)
    functions = sum(len(t.functions) for t in TENANTS)
    print(f"simulating {MONTH:%B %Y}: {INVOCATIONS:,} invocations of {functions} functions "
          f"in {len(TENANTS)} tenants (128 MiB to 4 GiB, 1 ms to 15 min)\n"
          f"  -> {len(deliveries):,} signed deliveries of 1 to 1,000 events "
          f"({expected.events_sent:,} events): {expected.replays} replayed deliveries, "
          f"{sum(expected.duplicates.values()):,} events re-sent in other deliveries, "
          f"{INVALID} invalid events, {EXCLUDED} from openfaas-system")
    url = f"{env.gateway_url}/function/receive-usage.openfaas-system"
    print(f"sending to {url} with {SENDERS} concurrent senders", flush=True)
    tally = send(url, env.secret("webhook-secret"), deliveries)
    print(f"sent in {tally['seconds']:.1f} s ({tally['events'] / tally['seconds']:,.0f} events/s): "
          f"{tally['accepted']:,} accepted, {tally['duplicates']:,} duplicates ignored, "
          f"{tally['excluded']} excluded, {tally['rejected']} rejected, "
          f"{tally['replayed']} replays answered with their original summary")

    tenants = [t.namespace for t in TENANTS]
    with psycopg.connect(env.database_url) as conn:
        ours = {row[0]: row[1:] for row in conn.execute(
            TENANT_TOTALS, {"tenants": tenants, "month": MONTH}).fetchall()}
        unattributed = conn.execute("""
            SELECT count(*) FROM openfaas_metering.usage_rejected_events
             WHERE namespace IS NULL OR NOT namespace = ANY(%s)""", (tenants,)).fetchone()[0]
    docs = {}
    for namespace, _fn, invocations, _duration, gb_seconds in docs_query_at(env.database_url,
                                                                               CLOSE):
        n, g = docs.get(namespace, (0, 0.0))
        docs[namespace] = (n + invocations, g + gb_seconds)

    print(f"\nper tenant, read back from the database ({MONTH:%B %Y}; GB-seconds = GiB x s)")
    print(f"{'':<13} {'stored (hourly rollup)':^34}   {'docs query, unmodified':^30}")
    print(f"{'tenant':<13} {'invocations':>11} {'GB-seconds':>22}   {'invocations':>11} "
          f"{'GB-seconds':>18} {'duplicates':>10} {'rejected':>8}")
    total = [0, Decimal(0), 0, 0.0, 0, 0]
    for ns in tenants:
        invocations, gbs, duplicates, rejected = ours[ns]
        d_inv, d_gbs = docs.get(ns, (0, 0.0))
        print(f"{ns:<13} {invocations:>11,} {gbs:>22,.9f}   {d_inv:>11,} {d_gbs:>18,.6f} "
              f"{duplicates:>10,} {rejected:>8,}")
        for i, value in enumerate((invocations, gbs, d_inv, d_gbs, duplicates, rejected)):
            total[i] += value
    print(f"{'total':<13} {total[0]:>11,} {total[1]:>22,.9f}   {total[2]:>11,} "
          f"{total[3]:>18,.6f} {total[4]:>10,} {total[5]:>8,}")
    print(f"  + {unattributed} rejected events without a valid tenant name; "
          f"{tally['excluded']} events from openfaas-system counted as excluded, not billed")
    print(f"  docs' query: run unmodified with now() = {CLOSE[:16]}Z, so its "
          "\"last 30 days\" is the month; it reads the microsecond `duration`, the "
          "rollup the exact nanoseconds")

    problems, memory_gib = [], {ns: Decimal(0) for ns in tenants}
    for e in events:
        memory_gib[e["namespace"]] += Decimal(e["memory_bytes"]) / 2**30
    for ns in tenants:
        invocations, gbs, duplicates, _ = ours[ns]
        exact = expected.gb_seconds(ns)
        if invocations != expected.invocations[ns] or gbs != exact:
            problems.append(f"{ns}: stored {invocations} / {gbs}, sent {expected.invocations[ns]}"
                            f" / {exact}")
        if duplicates != expected.duplicates[ns]:
            problems.append(f"{ns}: {duplicates} duplicates ignored, {expected.duplicates[ns]} "
                            "re-sent")
        # DESIGN.md: at most half a microsecond per event times its memory (GiB),
        # plus the float arithmetic of the docs' power(1024, 3)
        bound = Decimal("0.5e-6") * memory_gib[ns] + gbs * Decimal("1e-12")
        if docs.get(ns, (0, 0))[0] != invocations or abs(Decimal(docs[ns][1]) - gbs) > bound:
            problems.append(f"{ns}: the docs' query disagrees beyond 0.5 µs per event")
    if not env.fresh_database:
        print("  (an existing database: totals include whatever it held before)")
    elif problems:
        raise DemoFailed("the database does not hold what was sent: " + "; ".join(problems))
    else:
        print(f"  check: every tenant's invocations and exact GB-seconds equal the "
              f"{INVOCATIONS:,} unique events sent, each counted once; the docs' query "
              "agrees within 0.5 µs x memory per event")
