"""Waiting on a condition with a deadline, instead of sleeping a fixed time and hoping."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def until(condition: Callable[[], T], what: str, timeout_s: float = 10.0,
          interval_s: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy and return that; fail the test
    naming `what` if it has not happened within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        time.sleep(interval_s)
