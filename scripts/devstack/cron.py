"""A stand-in for cron-connector: fires functions from their stack.yml annotations.

Like the real connector it picks functions with `topic: cron-function` and a
`schedule` (5 fields, @hourly-style macros or `@every <n>s|m|h`), evaluates it
in UTC, and calls `POST /function/<fn>.<namespace>` synchronously with an empty
body and the headers X-Topic and X-Connector. It does not retry and does not
catch up on missed slots. The clock is injectable so tests need not wait.
"""
from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from croniter import croniter

log = logging.getLogger("devstack.cron")
CRON_HEADERS = {"X-Topic": "cron-function", "X-Connector": "cron-connector"}
_EVERY = re.compile(r"^@every\s+(\d+)([smh])$")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Schedule:
    def __init__(self, expression: str):
        self.expression = expression
        every = _EVERY.match(expression.strip())
        if every:
            n, unit = int(every.group(1)), every.group(2)
            self.every = timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours"}[unit]: n})
        elif croniter.is_valid(expression):
            self.every = None
        else:
            raise ValueError(f"schedule {expression!r} is not a cron expression")

    def next_after(self, moment: datetime) -> datetime:
        if self.every is not None:
            return moment + self.every
        return croniter(self.expression, moment).get_next(datetime)


class CronRunner:
    """`run_due()` fires every job whose next time has come, then schedules the next."""

    def __init__(self, jobs: dict[str, str], fire: Callable[[str], None],
                 clock: Callable[[], datetime] = utcnow):
        self.fire = fire
        self.clock = clock
        self.schedules = {name: Schedule(expr) for name, expr in jobs.items()}
        start = clock()
        self.next_at = {name: s.next_after(start) for name, s in self.schedules.items()}
        self._stop = threading.Event()

    def run_due(self) -> list[str]:
        now = self.clock()
        fired = []
        for name, at in self.next_at.items():
            if now >= at:
                fired.append(name)
                # Missed slots are skipped, as cron-connector does.
                self.next_at[name] = self.schedules[name].next_after(now)
        for name in fired:
            threading.Thread(target=self._fire_logged, args=(name,), daemon=True).start()
        return fired

    def _fire_logged(self, name: str) -> None:
        try:
            self.fire(name)
        except Exception as exc:  # the connector logs and carries on
            log.warning("cron %s failed: %s", name, exc)

    def run_forever(self, poll_s: float = 1.0) -> None:
        while not self._stop.wait(poll_s):
            self.run_due()

    def stop(self) -> None:
        self._stop.set()
