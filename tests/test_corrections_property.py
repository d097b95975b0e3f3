"""The invariant of corrections, as a property: whatever arrives late, for every tenant
and month the documents billed (invoice, supplementary invoices, credit notes) add up
to pricing that month from scratch with all its usage, to the cent, and no document
but a credit note is negative. Real PostgreSQL, real ingest, the real hourly close."""
from __future__ import annotations

import itertools
import os
from datetime import datetime, timezone

import psycopg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chargeback.billing import invoicing, month_close, pricebook_store
from chargeback.billing import store as billing_store
from chargeback.core import db

from .billing_helpers import NS, Recorder, event, on_plan, send, settings_for
from .conftest import _TEMPLATE_DB
from .corrections_helpers import BOOK

MONTHS = ("2026-08", "2026-09", "2026-10")
# close k runs on the 2nd of the month after MONTHS[k]; the last one only corrects
CLOSES = [datetime(2026, m, 2, tzinfo=timezone.utc) for m in (9, 10, 11, 12)]
PLANS = ("standard", "committed", "volume", "changing", "graduated", "euro")
_names = itertools.count()

events_strategy = st.lists(st.tuples(
    st.sampled_from(("a", "a", "b")),       # tenant
    st.sampled_from((0, 1, 1, 2)),          # month (September has the price change)
    st.sampled_from((3, 10, 17, 24)), st.integers(0, 23),  # day, hour (UTC)
    st.sampled_from((1, 60, 1000, 2500, 4990)),  # GB-s (seconds at 1 GiB): tier edges
    st.integers(0, 2)),                     # closes missed: 0 on time, 1 or 2 late
    min_size=2, max_size=10)
# each tenant's plan at each close: "a" always on a plan where late units move others
TIERED = ("volume", "graduated", "changing")
plans_strategy = st.lists(st.tuples(st.sampled_from(TIERED), st.sampled_from(PLANS)),
                          min_size=3, max_size=3)


def _fresh_database(pg_server) -> str:
    name = f"p{os.getpid()}_{next(_names)}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {_TEMPLATE_DB}")
    return pg_server.url.rsplit("/", 1)[0] + f"/{name}"


@settings(max_examples=15, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(events=events_strategy, plans=plans_strategy)
# late units that move the month into the cheaper volume tier: a credit note
@example(events=[("a", 1, 10, 10, 4990, 0), ("a", 1, 17, 10, 60, 1)],
         plans=[("volume", "standard")] * 3)
# late units before the price change push later ones into the cheaper graduated tier
# (a credit note), beside late usage under a commitment on a plan that changes currency
@example(events=[("a", 1, 17, 10, 1000, 0), ("a", 1, 3, 10, 1000, 1),
                 ("b", 1, 10, 0, 2500, 0), ("b", 1, 24, 0, 60, 2)],
         plans=[("graduated", "committed"), ("graduated", "committed"), ("changing", "euro")])
def test_the_documents_of_a_month_add_up_to_pricing_it_from_scratch(
        pg_server, tmp_path, events, plans):
    s = settings_for(_fresh_database(pg_server), tmp_path, book=BOOK)
    for k, close_at in enumerate(CLOSES):
        batch = [event(t, f"{MONTHS[m]}-{day:02d}T{hour:02d}:00:00Z", gb * NS)
                 for t, m, day, hour, gb, late in events if min(m + late, 3) == k]
        if batch:
            send(s, batch)
        if k < len(plans):
            for tenant, plan in zip(("a", "b"), plans[k]):
                on_plan(s, tenant, plan)
        month_close.run(s, month_close.Options(), close_at, Recorder())
    with db.transaction(s) as conn:
        documents = conn.execute(
            """SELECT namespace, period, document_kind, number, total, subtotal
                 FROM openfaas_metering.invoices WHERE status <> 'draft'""").fetchall()
        drafts = conn.execute("SELECT count(*) FROM openfaas_metering.invoices"
                              " WHERE status = 'draft'").fetchone()[0]
        months = {}
        for ns, period_name, inputs in conn.execute(
                """SELECT namespace, period, inputs FROM openfaas_metering.invoices
                    WHERE document_kind = 'invoice' AND status <> 'draft'"""):
            book = pricebook_store.version(conn, inputs["price_book_version"])
            raw = billing_store.quantities_raw(conn, invoicing.windows_of(inputs), [ns])
            months[(ns, period_name)] = invoicing.build(
                {**inputs, "quantities": invoicing.quantities_rows(raw.get(ns, {}))},
                {book.version: book})
    assert drafts == 0
    for ns, period_name, kind, number, total, _ in documents:
        assert (total < 0) == (kind == "credit_note"), (number, total)
        assert number.startswith("CN-") == (kind == "credit_note")
    for (ns, period_name), scratch in months.items():
        mine = [d for d in documents if (d[0], d[1]) == (ns, period_name)]
        assert sum(d[4] for d in mine) == scratch.total, (ns, period_name, mine)
        assert sum(d[5] for d in mine) == scratch.subtotal
    # every tenant-month with usage has its documents
    used = {(t, MONTHS[m]) for t, m, *_ in events}
    assert used <= set(months)
