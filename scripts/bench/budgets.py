"""scripts/bench/budgets: time one budget evaluation over the close benchmark's month.

The data: scripts/bench/close's generator (`--events` function events across
`--tenants` tenants and `--functions` functions in September 2026, stored with
receive-usage's own insert, and a month of hourly capacity ticks), every
tenant with a monthly budget (a spread from 50 to 1,000 USD, so that some
cross some thresholds and others none), in an embedded PostgreSQL in var/bench/.

Timed: budgets' evaluation (chargeback.budgets.evaluate.fire_crossings: every
budgeted tenant's month to date priced by the month close's code, thresholds
decided, crossings and their webhook events written) at September's last microsecond,
first when every crossing fires, then as every later minute runs it (nothing
new to fire). The mails are not timed (they go once per crossing, not once a
minute). Baseline, in the same run: the naive evaluation, the month to date
asked tenant by tenant (one estimate.month_to_date per tenant), measured on
`--naive-sample` tenants and scaled to all.

Checked: the month is then closed; every tenant's crossings must be exactly
the thresholds its invoice total reaches, at that very total, and one webhook
event per crossing.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from bench.close import PERIOD, NoGateway, generated_month, month_options

from chargeback.billing import estimate, month_close
from chargeback.billing.month_close import Options
from chargeback.budgets import evaluate
from chargeback.core import db

GOAL_S = 2.0
# the month's last microsecond: its month to date is the invoice (less a microsecond of
# capacity, far below a cent), which the check compares it with
NOW = PERIOD.end - timedelta(microseconds=1)


def set_budgets(settings, tenants: int) -> None:
    with db.transaction(settings) as conn:
        conn.execute("""INSERT INTO openfaas_metering.tenants (namespace, budget_override)
                        SELECT 'tenant-' || t, 50 + (t %% 20) * 50
                          FROM generate_series(0, %s - 1) AS t
                        ON CONFLICT (namespace) DO UPDATE
                           SET budget_override = excluded.budget_override""", (tenants,))


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def naive_per_tenant(settings, sample: int) -> float:
    """Seconds to evaluate `sample` tenants one query set each."""
    with db.transaction(settings) as conn:
        started = time.perf_counter()
        for t in range(sample):
            estimate.month_to_date(conn, settings, NOW, [f"tenant-{t}"])
        return time.perf_counter() - started


def check(settings, thresholds: tuple[int, ...]) -> int:
    """Close the month; compare every tenant's crossings with its invoice. Returns the
    number of crossings checked; exits on any difference."""
    month_close.run(settings, Options(period=PERIOD.name),
                    datetime(2026, 11, 1, tzinfo=timezone.utc), NoGateway())
    with db.transaction(settings) as conn:
        invoices = {ns: total for ns, total in conn.execute(
            "SELECT namespace, total FROM openfaas_metering.invoices WHERE period = %s"
            " AND status = 'finalized'", (PERIOD.name,))}
        budgets = dict(conn.execute("SELECT namespace, budget_override FROM "
                                    "openfaas_metering.tenants WHERE budget_override > 0"))
        got: dict[str, set] = {}
        for ns, percent, mtd in conn.execute(
                "SELECT namespace, threshold_percent, month_to_date FROM "
                "openfaas_metering.budget_crossings WHERE kind = 'threshold'"):
            if mtd != invoices[ns]:
                raise SystemExit(f"bench: {ns} crossed at {mtd}, its invoice says {invoices[ns]}")
            got.setdefault(ns, set()).add(percent)
        events = conn.execute("SELECT count(*) FROM openfaas_metering.webhook_events WHERE "
                              "type LIKE 'budget.%%'").fetchone()[0]
        crossings = conn.execute("SELECT count(*) FROM openfaas_metering.budget_crossings"
                                 ).fetchone()[0]
    for ns, total in invoices.items():
        want = {t for t in thresholds if total >= budgets[ns] * Decimal(t) / 100}
        if got.get(ns, set()) != want:
            raise SystemExit(f"bench: {ns} (total {total}, budget {budgets[ns]}) crossed "
                             f"{sorted(got.get(ns, ()))}, expected {sorted(want)}")
    if events != crossings:
        raise SystemExit(f"bench: {crossings} crossings but {events} webhook events")
    return crossings


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench/budgets",
                                     description=__doc__.split("\n")[0])
    month_options(parser)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--naive-sample", type=int, default=100)
    args = parser.parse_args()
    with generated_month(args, "bench_budgets", DB_STATEMENT_TIMEOUT="120") as settings:
        set_budgets(settings, args.tenants)
        first_s, first = timed(lambda: evaluate.fire_crossings(settings, NOW))
        print(f"first evaluation: {first_s:5.2f} s ({first['budgets']:,} budgets, "
              f"{first['crossed']:,} crossings fired, {first['not_priced']} not priced)",
              flush=True)
        steady = []
        for run in range(args.runs):
            seconds, out = timed(lambda: evaluate.fire_crossings(settings, NOW))
            if out["crossed"]:
                raise SystemExit(f"bench: run {run + 1} fired {out['crossed']} again")
            steady.append(seconds)
            print(f"run {run + 1}: {seconds:5.2f} s (nothing new to fire)", flush=True)
        sample = min(args.naive_sample, args.tenants)
        naive_s = naive_per_tenant(settings, sample) * args.tenants / sample
        checked = check(settings, settings.budget_thresholds)
        per_minute = statistics.median(steady)
        print(f"\nbudget evaluation of {args.tenants:,} tenants (median of {args.runs}): "
              f"{per_minute:.2f} s, first (firing {first['crossed']:,}) {first_s:.2f} s "
              f"(goal <= {GOAL_S:.0f} s: "
              f"{'reached' if max(per_minute, first_s) <= GOAL_S else 'NOT reached'})")
        print(f"baseline, the month to date asked tenant by tenant: {naive_s:.2f} s "
              f"({sample} tenants measured, scaled to {args.tenants:,})")
        print(f"ratio: {naive_s / per_minute:.1f}x")
        print(f"check: {checked:,} crossings, each at its tenant's invoice total, exactly the "
              "thresholds that total reaches, one webhook event each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
