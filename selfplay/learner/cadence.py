"""Cadences such as ``500steps``, ``30s``, ``15m``, ``2h``, ``7d`` or ``1w``.

A cadence says when something recurring is due — publishing a policy version, a checkpoint, an
evaluation — either every N learner steps or every wall-clock period (the "update weekly" of
online iterative training). ``Schedule`` keeps when one last fired and ``Deadline`` the session's
budget, both on an injected ``Clock`` (selfplay.clock), so a test simulates weeks in seconds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from selfplay.clock import SYSTEM_CLOCK, Clock

_PERIOD_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(steps?|s|m|h|d|w)\s*$")


@dataclass(frozen=True)
class Cadence:
    every_steps: int = 0  # due every this many steps (0: not step-based)
    every_seconds: float = 0.0  # due every this many seconds (0: not time-based)

    @staticmethod
    def parse(text: str, key: str = "cadence") -> Cadence:
        match = _PATTERN.match(str(text))
        if not match:
            raise ValueError(
                f"{key}={text!r}: expected '<N>steps' or a period like '30s', '15m', '2h', '7d', '1w'"
            )
        amount, unit = float(match.group(1)), match.group(2)
        if amount <= 0:
            raise ValueError(f"{key}={text!r}: must be positive")
        if unit.startswith("step"):
            if amount != int(amount):
                raise ValueError(f"{key}={text!r}: a step count must be a whole number")
            return Cadence(every_steps=int(amount))
        return Cadence(every_seconds=amount * _PERIOD_SECONDS[unit])

    def due(self, steps_since: int, seconds_since: float) -> bool:
        """Whether the thing is due, given the steps and seconds since it last happened."""
        if self.every_steps:
            return steps_since >= self.every_steps
        return seconds_since >= self.every_seconds


@dataclass
class Schedule:
    """When a cadence last fired, and whether it is due again, on an injected clock.

    A period counts from the boundary it fell due on, not from the moment the thing finally
    happened: a weekly publish that waited an hour for a learner call to finish does not push
    every later one an hour back, so ``7d`` publishes on the run's week boundaries. A step count
    counts from the step it happened at. ``last_time``/``last_step`` None: it never fired and is
    due at once (the first mark anchors the grid).
    """

    cadence: Cadence
    clock: Clock = SYSTEM_CLOCK
    last_step: int | None = None
    last_time: float | None = None

    def due(self, step: int) -> bool:
        if self.last_step is None or self.last_time is None:
            return True
        return self.cadence.due(step - self.last_step, self.clock.now() - self.last_time)

    def mark(self, step: int) -> None:
        """It happened now, at learner step ``step``."""
        now = self.clock.now()
        period = self.cadence.every_seconds
        if self.last_time is None or not period:
            self.last_time = now
        elif now - self.last_time >= period:
            # Skip to the latest boundary passed (a run that slept through three periods fires
            # once, not three times in a row).
            self.last_time += math.floor((now - self.last_time) / period) * period
        self.last_step = step

    def state(self) -> dict[str, float | int | None]:
        return {"last_step": self.last_step, "last_time": self.last_time}


@dataclass(frozen=True)
class Deadline:
    """The wall-clock budget of a session: ``at`` None means no limit."""

    clock: Clock
    at: float | None

    @staticmethod
    def after_minutes(clock: Clock, minutes: float, start: float | None = None) -> Deadline:
        """``minutes`` from ``start`` (default: now); 0 or less is no limit."""
        begin = clock.now() if start is None else start
        return Deadline(clock, begin + 60.0 * minutes if minutes > 0 else None)

    def passed(self) -> bool:
        return self.at is not None and self.clock.now() >= self.at
