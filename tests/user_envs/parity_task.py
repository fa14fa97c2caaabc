"""A text task for the reward-model retraining test: the reward is 1 when the answer's length is
even, so even an untrained policy's samples of one prompt differ in verdict (pairs to train on).
Registered the way a user's module registers its env (``env.module=parity_task``)."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
from gymnasium import spaces

import selfplay

CHARSET = "".join(chr(c) for c in range(32, 127)) + "\n"


class ParityTask(gym.Env):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, split: str = "train"):
        self.split = split
        self.observation_space = spaces.Text(256, min_length=1, charset=CHARSET)
        self.action_space = spaces.Text(4096, min_length=0, charset=CHARSET)
        self.prompt = ""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        number = int(self.np_random.integers(1000)) * 2 + (self.split == "test")
        self.prompt = f"Problem {number}: answer with an even number of characters.\n"
        return self.prompt, {}

    def step(self, action: Any):
        text = action if isinstance(action, str) else ""
        return self.prompt, float(len(text) % 2 == 0), True, False, {}


selfplay.register_env("usertest/Parity-v0", entry_point=ParityTask,
                      summary="reward 1 for an even-length answer")
