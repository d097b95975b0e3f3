"""Which crossings a budget evaluation fires and which it re-arms. Pure.

A threshold of T percent is crossed when the month-to-date total reaches
budget * T / 100 (exactly, in Decimal). Each threshold fires once a month
while it stays armed. When the budget is raised so that a fired threshold is
no longer reached, that threshold is re-armed and fires again if spending
reaches the new level; when the budget is lowered, thresholds it now crosses
fire (once), and those already fired do not fire again. The forecast (the
projected month total reaching the budget) fires at most once a month and is
never re-armed; once the month to date has reached the budget it is no
longer a forecast, and the 100 % threshold says so instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

THRESHOLD = "threshold"
FORECAST = "forecast"
FORECAST_PERCENT = 100


@dataclass(frozen=True)
class Fired:
    """A crossing fired this month and still armed."""
    kind: str
    threshold_percent: int
    budget: Decimal  # the budget it crossed


@dataclass(frozen=True)
class Crossing:
    kind: str
    threshold_percent: int
    amount: Decimal  # month to date (threshold) or projected total (forecast)


def level(budget: Decimal, percent: int) -> Decimal:
    return budget * percent / 100


def decide(budget: Decimal, month_to_date: Decimal, projected_total: Decimal | None,
           thresholds: tuple[int, ...], fired: list[Fired]) -> tuple[list[Crossing], list[Fired]]:
    """(crossings to fire now, fired crossings to re-arm) for one tenant."""
    rearm = [f for f in fired if f.kind == THRESHOLD and budget > f.budget
             and month_to_date < level(budget, f.threshold_percent)]
    armed = {(f.kind, f.threshold_percent) for f in fired if f not in rearm}
    fire = [Crossing(THRESHOLD, t, month_to_date) for t in thresholds
            if month_to_date >= level(budget, t) and (THRESHOLD, t) not in armed]
    if (projected_total is not None and projected_total >= budget > month_to_date
            and (FORECAST, FORECAST_PERCENT) not in armed):
        fire.append(Crossing(FORECAST, FORECAST_PERCENT, projected_total))
    return fire, rearm
