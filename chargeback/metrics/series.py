"""A window of one Prometheus series' raw samples made into a quantity, exactly. Pure.

PromQL's increase() and rate() extrapolate to the window's edges and guess
over missing scrapes; a bill must not. Here a quantity is what the samples
prove and nothing more:

- a counter's increase in (start, end] is the sum of the differences between
  consecutive samples whose later sample lies in the window (so each difference
  belongs to exactly one window); a drop is a reset (an exporter restarted):
  the counter counted from zero, so the later value itself is the difference;
- a gauge in percent (GPU utilisation) is held from one sample until the next,
  and its integral over the window, divided by 100, is in unit-seconds;
- two samples further apart than `max_gap_s` leave a gap: nothing is counted
  across it, and the gap is reported (billed as nothing, in the customer's
  favour). So is a series whose last sample is too long before the window's
  end (an exporter that stopped).

Times and values are Decimals made from Prometheus' own text, never floats.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

Sample = tuple[Decimal, Decimal]   # (unix seconds, value)


@dataclass(frozen=True)
class Gap:
    after_s: Decimal | None    # the last sample before the hole (None: none in reach)
    before_s: Decimal | None   # the first sample after it (None: none yet)

    def as_json(self) -> dict:
        return {"after": None if self.after_s is None else str(self.after_s),
                "before": None if self.before_s is None else str(self.before_s)}


def counter_increase(samples: list[Sample], start_s: Decimal, end_s: Decimal,
                     max_gap_s: Decimal) -> tuple[Decimal, list[Gap]]:
    """The counter's increase in (start, end] and the gaps in it."""
    total, gaps = Decimal(0), []
    for (t0, v0), (t1, v1) in zip(samples, samples[1:]):
        if not start_s < t1 <= end_s:
            continue
        if t1 - t0 > max_gap_s:
            gaps.append(Gap(t0, t1))
            continue
        total += v1 - v0 if v1 >= v0 else v1
    gaps += _edges(samples, start_s, end_s, max_gap_s)
    return total, gaps


def gauge_percent_seconds(samples: list[Sample], start_s: Decimal, end_s: Decimal,
                          max_gap_s: Decimal) -> tuple[Decimal, list[Gap]]:
    """The integral over [start, end] of a percent gauge held from sample to sample,
    / 100 (so unit-seconds), and the gaps in it."""
    total, gaps = Decimal(0), []
    for (t0, v0), (t1, _v1) in zip(samples, samples[1:]):
        lo, hi = max(t0, start_s), min(t1, end_s)
        if hi <= lo:
            continue
        if t1 - t0 > max_gap_s:
            if start_s < t1 <= end_s or start_s <= t0 < end_s:
                gaps.append(Gap(t0, t1))
            continue
        total += v0 * (hi - lo) / 100
    gaps += _edges(samples, start_s, end_s, max_gap_s)
    return total, gaps


def _edges(samples: list[Sample], start_s: Decimal, end_s: Decimal,
           max_gap_s: Decimal) -> list[Gap]:
    """The holes at the window's edges no pair of samples shows: nothing near the
    start before the first sample, nothing near the end after the last."""
    gaps = []
    before = [t for t, _ in samples if t <= start_s]
    inside = [t for t, _ in samples if start_s < t <= end_s]
    after = [t for t, _ in samples if t > end_s]
    if not inside and not (before and after):
        return [Gap(before[-1] if before else None, after[0] if after else None)]
    if not before and inside and inside[0] - start_s > max_gap_s:
        gaps.append(Gap(None, inside[0]))
    if not after and inside and end_s - inside[-1] > max_gap_s:
        gaps.append(Gap(inside[-1], None))
    return gaps
