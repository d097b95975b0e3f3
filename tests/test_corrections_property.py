"""The invariant of corrections, as a property: whatever arrives late, for every tenant
and month the documents billed (invoice, supplementary invoices, credit notes) add up
to that month with all its usage priced by hand from the price book (priced_by_hand, not
the code under test) less the credit grants as they stood for it, to the cent, no
document but a credit note is negative, and no grant gives more than it holds. Real
PostgreSQL, real ingest, the real hourly close."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chargeback.billing import month_close, payment_requests
from chargeback.billing.grant_store import GrantRequest
from chargeback.core import db

from .billing_helpers import NS, Recorder, event, on_plan, send, settings_for
from .conftest import fresh_database
from .corrections_helpers import BOOK

MONTHS = ("2026-08", "2026-09", "2026-10")
# close k runs on the 2nd of the month after MONTHS[k]; the last one only corrects
CLOSES = [datetime(2026, m, 2, tzinfo=timezone.utc) for m in (9, 10, 11, 12)]
PLANS = ("standard", "committed", "volume", "changing", "graduated", "euro")

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
# the operator's credit grants, given before the first close: tenant, amount, currency
# (one the tenant's plan may not have: it gives nothing then), the close it expires at
grants_strategy = st.lists(st.tuples(
    st.sampled_from(("a", "b")), st.sampled_from(("0.50", "3.00", "40.00")),
    st.sampled_from(("USD", "USD", "EUR")), st.sampled_from((None, 1, 2))), max_size=3)


CENT = Decimal("0.01")


def _cents(amount: Decimal, rounding=ROUND_HALF_EVEN) -> Decimal:
    return amount.quantize(CENT, rounding)


def priced_by_hand(plan: str, before: int, after: int) -> tuple[Decimal, Decimal]:
    """(subtotal, total) of a month on `plan` of corrections_helpers.BOOK, written out
    from the price book by hand: `before` GB-s used before the price change at
    2026-09-16T00:00Z (in its month), `after` from then on. Each line is rounded to the
    cent half-even; tax (19 % on euro, 0 elsewhere) once on the subtotal, half-up.
    Invocations are free on every price list."""
    used = before + after
    if plan == "standard":                           # 0.001 USD per GB-s
        lines = [_cents(used * Decimal("0.001"))]
    elif plan == "euro":                             # 0.001 EUR per GB-s, 19 % tax
        subtotal = _cents(used * Decimal("0.001"))
        return subtotal, subtotal + _cents(subtotal * Decimal("0.19"), ROUND_HALF_UP)
    elif plan == "committed":                        # 0.00011 + 250 fee, 300 minimum
        usage = _cents(used * Decimal("0.00011"))
        lines = [usage, Decimal("250.00"), max(Decimal(0), Decimal("300.00") - usage)]
    elif plan == "volume":                           # all at 2.95 up to 5000, else 2.60
        lines = [_cents(used * (Decimal("2.95") if used <= 5000 else Decimal("2.60")))]
    elif plan == "changing":                         # 1000 free a month, 0.001 then 0.002
        free_before = min(before, 1000)
        free_after = min(after, 1000 - free_before)
        lines = [_cents((before - free_before) * Decimal("0.001")),
                 _cents((after - free_after) * Decimal("0.002"))]
    elif plan == "graduated":                        # first 1000 at 0.01/0.02, rest 0.001/0.002
        first_tier_before = min(before, 1000)
        first_tier_after = max(0, min(used, 1000) - before)
        lines = [_cents(first_tier_before * Decimal("0.01")
                        + (before - first_tier_before) * Decimal("0.001")),
                 _cents(first_tier_after * Decimal("0.02")
                        + (after - first_tier_after) * Decimal("0.002"))]
    else:
        raise AssertionError(f"no hand pricing for plan {plan}")
    subtotal = sum(lines, Decimal(0))
    return subtotal, subtotal  # no tax on the USD plans


def less_credit(plan: str, priced: tuple[Decimal, Decimal], credit: Decimal
                ) -> tuple[Decimal, Decimal]:
    """(subtotal, total) after the grants' credit, taken before tax and never below zero."""
    subtotal = priced[0] - min(credit, priced[0])
    tax = _cents(subtotal * Decimal("0.19"), ROUND_HALF_UP) if plan == "euro" else 0
    return subtotal, subtotal + tax


@settings(max_examples=15, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(events=events_strategy, plans=plans_strategy, grants=grants_strategy)
# late units that move the month into the cheaper volume tier: a credit note
@example(events=[("a", 1, 10, 10, 4990, 0), ("a", 1, 17, 10, 60, 1)],
         plans=[("volume", "standard")] * 3, grants=[])
# the same with a grant that covered September: the late units lower the credit it gives
@example(events=[("a", 1, 10, 10, 4990, 0), ("a", 1, 17, 10, 60, 1)],
         plans=[("volume", "standard")] * 3, grants=[("a", "40.00", "USD", None)])
# late units before the price change push later ones into the cheaper graduated tier
# (a credit note), beside late usage under a commitment on a plan that changes currency
@example(events=[("a", 1, 17, 10, 1000, 0), ("a", 1, 3, 10, 1000, 1),
                 ("b", 1, 10, 0, 2500, 0), ("b", 1, 24, 0, 60, 2)],
         plans=[("graduated", "committed"), ("graduated", "committed"), ("changing", "euro")],
         grants=[("b", "3.00", "USD", 2), ("b", "0.50", "USD", None)])
def test_the_documents_of_a_month_add_up_to_pricing_it_from_scratch(
        pg_server, tmp_path, events, plans, grants):
    s = settings_for(fresh_database(pg_server), tmp_path, book=BOOK)
    for k, close_at in enumerate(CLOSES):
        batch = [event(t, f"{MONTHS[m]}-{day:02d}T{hour:02d}:00:00Z", gb * NS)
                 for t, m, day, hour, gb, late in events if min(m + late, 3) == k]
        if batch:
            send(s, batch)
        if k < len(plans):
            for tenant, plan in zip(("a", "b"), plans[k]):
                on_plan(s, tenant, plan)
        if k == 0:
            for tenant, amount, currency, expiry in grants:
                payment_requests.apply(s, payment_requests.GRANT, GrantRequest(
                    tenant, Decimal(amount), currency, "property",
                    None if expiry is None else CLOSES[expiry]), CLOSES[0])
        month_close.run(s, month_close.Options(), close_at, Recorder())
    with db.transaction(s) as conn:
        documents = conn.execute(
            """SELECT namespace, period, document_kind, number, total, subtotal
                 FROM openfaas_metering.invoices WHERE status <> 'draft'""").fetchall()
        drafts = conn.execute("SELECT count(*) FROM openfaas_metering.invoices"
                              " WHERE status = 'draft'").fetchone()[0]
        plans_billed = dict(((ns, p), plan) for ns, p, plan in conn.execute(
            """SELECT namespace, period, plan FROM openfaas_metering.invoices
                WHERE document_kind = 'invoice' AND status <> 'draft'"""))
        # what the grants gave each month at its first close (its inputs keep it): the
        # grants as they stood for the month
        given = {(ns, p): sum((Decimal(g["available"]) for g in grants_given or []),
                              Decimal(0))
                 for ns, p, grants_given in conn.execute(
                     """SELECT namespace, period, inputs -> 'grants'
                          FROM openfaas_metering.invoices
                         WHERE document_kind = 'invoice' AND status <> 'draft'""")}
    # each tenant-month with an invoice, priced by hand from the events this test sent
    # (GB-s before and after the price change on September 16th; August is before it,
    # October after) on the plan the month was billed on. Two events alike in tenant,
    # start and size are one invocation sent twice: counted once.
    invocations = {(t, m, day, hour, size) for t, m, day, hour, size, _ in events}
    months = {}
    for (ns, period_name), plan in plans_billed.items():
        gb = [(MONTHS[m] == "2026-08" or (MONTHS[m] == "2026-09" and day < 16), size)
              for t, m, day, _, size in invocations if (t, MONTHS[m]) == (ns, period_name)]
        months[(ns, period_name)] = less_credit(plan, priced_by_hand(
            plan, sum(size for early, size in gb if early),
            sum(size for early, size in gb if not early)), given[(ns, period_name)])
    assert drafts == 0
    with db.transaction(s) as conn:   # no grant ever gives more than it holds
        overdrawn = conn.execute(
            """SELECT g.amount, sum(u.amount) FROM openfaas_metering.credit_grants g
                 JOIN openfaas_metering.credit_grant_uses u USING (grant_id)
                GROUP BY g.grant_id HAVING sum(u.amount) > g.amount""").fetchall()
    assert overdrawn == []
    for ns, period_name, kind, number, total, _ in documents:
        assert (total < 0) == (kind == "credit_note"), (number, total)
        assert number.startswith("CN-") == (kind == "credit_note")
    for (ns, period_name), (subtotal, total) in months.items():
        mine = [d for d in documents if (d[0], d[1]) == (ns, period_name)]
        assert sum(d[4] for d in mine) == total, (ns, period_name, mine)
        assert sum(d[5] for d in mine) == subtotal
    # every tenant-month with usage has its documents
    used = {(t, MONTHS[m]) for t, m, *_ in events}
    assert used <= set(months)
