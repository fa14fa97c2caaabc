"""The run's clock: wall-clock time behind one seam.

Week-long cadences (``learner.publish_every=7d``, ``run.eval_every=1d``, ``run.budget_minutes``)
read time through a ``Clock`` rather than ``time.time()``, so a test can simulate weeks in
seconds with a ``FakeClock`` and run the very code the driver runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time in unix seconds, and a way to let it pass."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The machine's clock (the default everywhere)."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


@dataclass
class FakeClock:
    """A clock that moves only when told: ``advance`` (or ``sleep``) adds seconds at once."""

    t: float = 1_700_000_000.0  # unix seconds: a plausible date, so timestamps format sanely

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock does not run backwards (advance by {seconds})")
        self.t += seconds
        return self.t


SYSTEM_CLOCK = SystemClock()
