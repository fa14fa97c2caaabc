"""Cadences such as ``500steps``, ``30s``, ``15m``, ``2h``, ``7d`` or ``1w``.

A cadence says when something recurring is due — publishing a policy version, a checkpoint, an
evaluation — either every N learner steps or every wall-clock period (the "update weekly" of
online iterative training).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PERIOD_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(steps?|s|m|h|d|w)\s*$")


@dataclass(frozen=True)
class Cadence:
    every_steps: int = 0  # due every this many steps (0: not step-based)
    every_seconds: float = 0.0  # due every this many seconds (0: not time-based)

    @staticmethod
    def parse(text: str, key: str = "cadence") -> "Cadence":
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
