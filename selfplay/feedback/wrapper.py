"""AI feedback on a single-agent text environment, as a gymnasium wrapper.

At the end of an episode (terminated or truncated) the reward becomes

    combine_rewards(env_reward, sources, [prompt], [response], env_weight)

where ``prompt`` is the episode's first observation (the problem as the policy read it) and
``response`` is every action of the episode joined by ``separator`` (a reasoning step is one line,
so a process reward model sees the same steps the env saw). Rewards of earlier steps are left
alone: AI feedback judges a whole answer, not a prefix.

``info["env_reward"]`` keeps the environment's own reward and ``info["feedback"]`` each source's
score (name -> float), so the replay shows why an episode got its reward. A feedback source is an
engine call that can fail (a judge's context, a reward model's file, a NaN): a failure must not
lose the episode, so the reward falls back to the env's, ``info["feedback_error"]`` says why, and
the failure is logged once per wrapper (not once per episode, which would flood the log).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from selfplay.feedback.base import EngineFactory, Feedback, build_feedback, combine_rewards
from selfplay.feedback.config import FeedbackConfig

log = logging.getLogger(__name__)


class _Recording:
    """A Feedback that remembers what the source it wraps returned, so that the per-source scores
    come from the very call ``combine_rewards`` made (each source is asked once)."""

    def __init__(self, source: Feedback):
        self.source = source
        self.last: np.ndarray | None = None

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        self.last = np.asarray(self.source.score(prompts, responses), dtype=np.float64)
        return self.last


def unique_names(bases: Sequence[str]) -> list[str]:
    """``bases`` with "#2", "#3", ... added to repeats, so every source has its own key."""
    names, seen = [], {}
    for base in bases:
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names


class FeedbackRewardWrapper(gym.Wrapper):
    """Replaces the final reward of each episode by the env reward combined with AI feedback."""

    def __init__(
        self,
        env: gym.Env,
        sources: Sequence[tuple[Feedback, float]],
        env_weight: float = 1.0,
        names: Sequence[str] | None = None,
        separator: str = "\n",
    ):
        super().__init__(env)
        names = (
            list(names)
            if names is not None
            else unique_names([type(s).__name__ for s, _ in sources])
        )
        if len(names) != len(sources):
            raise ValueError(f"FeedbackRewardWrapper: {len(sources)} sources, {len(names)} names")
        if len(set(names)) != len(names):
            raise ValueError(f"FeedbackRewardWrapper: source names repeat: {names}")
        self.sources = [(_Recording(s), float(w)) for s, w in sources]
        self.names = names
        self.env_weight = float(env_weight)
        self.separator = separator
        self._prompt: str | None = None
        self._actions: list[str] = []
        self._warned = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._prompt, self._actions = str(obs), []
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        # Actions are untrusted: a non-string one (the env has already judged it) is judged as "".
        self._actions.append(action if isinstance(action, str) else "")
        if not (terminated or truncated):
            return obs, reward, terminated, truncated, info
        info = dict(info)
        info["env_reward"] = float(reward)
        response = self.separator.join(self._actions)
        try:
            reward = self._combined(float(reward), response)
            info["feedback"] = {
                name: float(rec.last[0])
                for name, (rec, _) in zip(self.names, self.sources)
                if rec.last is not None
            }
        except Exception as err:  # noqa: BLE001 - any failing source falls back to the env reward
            message = f"{type(err).__name__}: {err}"
            if not self._warned:
                log.warning("feedback failed (env reward used instead; logged once): %s", message)
                self._warned = True
            info["feedback"] = {}
            info["feedback_error"] = message
        return obs, reward, terminated, truncated, info

    def _combined(self, env_reward: float, response: str) -> float:
        if self._prompt is None:
            raise RuntimeError("FeedbackRewardWrapper: step() before reset()")
        for rec, _ in self.sources:
            rec.last = None  # a weight-0 source is not called; it must not report a stale score
        total = combine_rewards(
            np.array([env_reward]), self.sources, [self._prompt], [response], self.env_weight
        )
        value = float(total[0])
        if not math.isfinite(value):
            raise ValueError(f"combined reward is {value}")
        return value


def wrap_with_feedback(
    env: gym.Env, feedback_cfg: FeedbackConfig, engine_factory: EngineFactory
) -> gym.Env:
    """``env`` with the configured AI feedback on its final reward; ``env`` itself when
    ``feedback.sources`` is empty (then ``env_weight`` does not apply: the env reward is the
    reward). Sources are named by their kind ("judge_pointwise", "reward_model#2", ...)."""
    if not feedback_cfg.sources:
        return env
    sources = build_feedback(feedback_cfg, engine_factory)
    names = unique_names([src.kind for src in feedback_cfg.sources])
    return FeedbackRewardWrapper(env, sources, feedback_cfg.env_weight, names=names)


__all__ = ["FeedbackRewardWrapper", "unique_names", "wrap_with_feedback"]
