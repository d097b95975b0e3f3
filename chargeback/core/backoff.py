"""How long to wait before trying again after the n-th failure: exponential, capped,
with jitter. Pure; every retrying sender (mail, webhooks) uses it."""
from __future__ import annotations

import random


def delay_s(failed_attempts: int, base_s: float, max_s: float,
            rng: random.Random | None = None) -> float:
    """base * 2^(n-1), at most max_s, scaled by a random factor in [0.5, 1) so that
    what failed together is not all tried again at the same instant."""
    exponent = min(max(failed_attempts, 1) - 1, 40)
    ceiling = min(base_s * 2 ** exponent, max_s)
    return ceiling * (rng or random).uniform(0.5, 1.0)
