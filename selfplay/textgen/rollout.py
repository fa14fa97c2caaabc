"""Sampling and rollouts on single-agent text environments (math, code), through the Engine.

Single-turn tasks: the observation is the problem and one action is the whole sampled solution.
Multi-step tasks (``MathSteps``): one action is one reasoning step, sampled up to a newline; the
episode goes on until the env ends it (a final answer, its own step limit), the step count
reaches the env's limit, or the growing text no longer fits the engine's context.

Every episode of every problem advances together, one ``engine.generate`` call per distinct group
size per round: episodes whose observations are identical (all k samples of a problem in the first
round) are one prompt with ``n = group size``, so they share a prefill and still get k different
samples (a per-request seed would make k copies of one prompt identical).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym

from selfplay.policy.engine import Completion, Engine, SamplingParams
from selfplay.types import Episode, SampledTokens, Step

STEP_STOP = "\n"  # a reasoning step is one line
DEFAULT_STEP_CAP = 64  # for a multi-step env that states no limit of its own

EnvFactory = Callable[[], gym.Env]


def prompt_of(observation: str) -> str:
    """What the policy is asked to continue: the observation and a newline, so a solution (or the
    next reasoning step) starts on a line of its own. The one definition, for sampling and
    training alike."""
    return observation + "\n"


def is_multi_step(env: gym.Env) -> bool:
    """Whether an action is one reasoning step (MathEnv ``mode="multi_step"``) rather than a whole
    solution."""
    return getattr(env.unwrapped, "mode", None) == "multi_step"


def step_limit(env: gym.Env) -> int:
    """The most actions an episode of ``env`` may take: its own ``max_steps``, or the registry's
    ``max_episode_steps``; 1 for a single-turn task."""
    if not is_multi_step(env):
        return 1
    own = getattr(env.unwrapped, "max_steps", None)
    if isinstance(own, int) and own > 0:
        return own
    spec_limit = env.spec.max_episode_steps if env.spec is not None else None
    return spec_limit if spec_limit else DEFAULT_STEP_CAP


def sample_solutions(
    engine: Engine, prompts: Sequence[str], n: int, sampling: SamplingParams
) -> list[list[str]]:
    """``n`` sampled completions of each prompt ([len(prompts)][n]), prompts used as given."""
    if n < 1:
        raise ValueError(f"sample_solutions: n must be >= 1, got {n}")
    results = engine.generate(list(prompts), replace(sampling, n=n))
    return [[c.text for c in comps] for comps in results]


# ---- rollouts ----------------------------------------------------------------------------------


@dataclass
class _Live:
    """An episode in progress. Its env is taken from the pool at its first action and held
    until it ends (a multi-step env keeps the episode's state between rounds)."""

    index: int  # position in the returned list: (seed, sample) order
    seed: int
    sample: int
    observation: str
    started_at: float
    group_id: str = ""  # shared by the k samples of one problem
    env: gym.Env | None = None
    steps: list[Step] = field(default_factory=list)
    policy_version: int | None = None


class _EnvPool:
    """Reuses envs across episodes: a single-turn episode needs its env only for one synchronous
    reset+step, so a whole rollout runs on one env; multi-step episodes hold one each."""

    def __init__(self, factory: EnvFactory):
        self.factory = factory
        self.free: list[gym.Env] = []
        self.made: list[gym.Env] = []

    def take(self) -> gym.Env:
        if self.free:
            return self.free.pop()
        env = self.factory()
        self.made.append(env)
        return env

    def give(self, env: gym.Env) -> None:
        self.free.append(env)

    def close(self) -> None:
        for env in self.made:
            env.close()


def rollout_text_env(
    env_factory: EnvFactory,
    engine: Engine,
    seeds: Sequence[int],
    n_samples: int,
    sampling: SamplingParams,
    *,
    actor: str = "",
) -> list[Episode]:
    """``n_samples`` episodes of each problem ``env.reset(seed=s)``, in (seed, sample) order.

    Steps carry ``search=None`` (sampled, not searched), the sampled tokens with their
    log-probabilities and version (``Step.tokens``) and the env's rewards; the samples of one
    problem share a ``group_id``; the episode's
    ``outcome`` is its final reward, ``policy_version`` the version that sampled its first action,
    and ``info`` the env's final info as strings plus "sample" and "termination" ("terminated",
    "truncated", or "step_cap" / "context" when the rollout had to stop it)."""
    if n_samples < 1:
        raise ValueError(f"rollout_text_env: n_samples must be >= 1, got {n_samples}")
    pool = _EnvPool(env_factory)
    try:
        probe = pool.take()
        multi, limit = is_multi_step(probe), step_limit(probe)
        env_id = probe.spec.id if probe.spec is not None else type(probe.unwrapped).__name__
        params = _with_step_stop(sampling) if multi else sampling
        first = {}
        for seed in dict.fromkeys(seeds):
            obs, _ = probe.reset(seed=int(seed))
            first[seed] = str(obs)
        pool.give(probe)

        now = time.time()
        groups = [uuid.uuid4().hex for _ in seeds]
        live = [
            _Live(i * n_samples + j, int(s), j, first[s], now, groups[i])
            for i, s in enumerate(seeds)
            for j in range(n_samples)
        ]
        done: list[tuple[_Live, Episode]] = []

        def finish(ep: _Live, termination: str, info: dict[str, Any]) -> None:
            if ep.env is not None:
                pool.give(ep.env)
                ep.env = None
            done.append((ep, _episode(ep, env_id, engine, actor, termination, info)))

        for round_ in range(limit):
            if not live:
                break
            if round_ > 0:  # the policy's own steps grew the prompt: past the context it stops
                fitting = []
                for ep in live:
                    if _fits(engine, prompt_of(ep.observation)):
                        fitting.append(ep)
                    else:
                        finish(ep, "context", {})
                live = fitting
                if not live:
                    break
            completions = _generate_grouped(
                engine, [e.observation for e in live], _round_seed(params, round_)
            )
            still: list[_Live] = []
            for ep, comp in zip(live, completions):
                action = comp.text
                if multi and action.endswith(STEP_STOP):
                    action = action[: -len(STEP_STOP)]  # the stop string is kept in the text
                ended, info = _act(ep, action, comp, pool)
                if ended:
                    finish(ep, info.pop("_termination"), info)
                else:
                    still.append(ep)
            live = still
        for ep in live:  # the step count reached the env's limit without the env ending it
            finish(ep, "step_cap", {})
    finally:
        pool.close()
    done.sort(key=lambda pair: pair[0].index)
    return [episode for _, episode in done]


def _act(ep: _Live, action: str, comp: Completion, pool: _EnvPool) -> tuple[bool, dict[str, Any]]:
    """Play ``action`` in the episode's env (taken and reset at its first action)."""
    if ep.env is None:
        ep.env = pool.take()
        obs, _ = ep.env.reset(seed=ep.seed)
        if str(obs) != ep.observation:
            raise RuntimeError(
                f"env reset(seed={ep.seed}) gave a different problem on a second call; a text "
                "env must be deterministic given its seed"
            )
    if ep.policy_version is None:
        ep.policy_version = comp.policy_version
    obs, reward, terminated, truncated, info = ep.env.step(action)
    tokens = SampledTokens(list(comp.token_ids), [float(x) for x in comp.logprobs],
                           int(comp.policy_version))
    ep.steps.append(Step(observation=ep.observation, action=action, player=0,
                         reward=float(reward), search=None, tokens=tokens))
    ep.observation = str(obs)
    if terminated or truncated:
        return True, {**info, "_termination": "terminated" if terminated else "truncated"}
    return False, {}


def _episode(
    ep: _Live, env_id: str, engine: Engine, actor: str, termination: str, info: dict[str, Any]
) -> Episode:
    version = ep.policy_version if ep.policy_version is not None else int(engine.policy_version)
    text_info = {k: _as_text(v) for k, v in info.items()}
    text_info.update(sample=str(ep.sample), termination=termination)
    return Episode(
        episode_id=uuid.uuid4().hex,
        env_id=env_id,
        seed=ep.seed,
        policy_version=int(version),
        steps=ep.steps,
        outcome=ep.steps[-1].reward if termination in ("terminated", "truncated") else 0.0,
        started_at=ep.started_at,
        finished_at=time.time(),
        actor=actor,
        info=text_info,
        group_id=ep.group_id,
    )


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)


def _generate_grouped(
    engine: Engine, observations: Sequence[str], sampling: SamplingParams
) -> list[Completion]:
    """One completion per observation; identical observations are one prompt with n = their
    count, and prompts with the same count share one generate call."""
    groups: dict[str, list[int]] = {}
    for i, obs in enumerate(observations):
        groups.setdefault(obs, []).append(i)
    by_size: dict[int, list[str]] = {}
    for obs, members in groups.items():
        by_size.setdefault(len(members), []).append(obs)
    out: list[Completion | None] = [None] * len(observations)
    for size, batch in sorted(by_size.items()):
        results = engine.generate([prompt_of(o) for o in batch], replace(sampling, n=size))
        for obs, comps in zip(batch, results):
            for i, comp in zip(groups[obs], comps):
                out[i] = comp
    assert all(c is not None for c in out)
    return out  # type: ignore[return-value]


def _with_step_stop(sampling: SamplingParams) -> SamplingParams:
    stops = tuple(sampling.stop)
    return sampling if STEP_STOP in stops else replace(sampling, stop=stops + (STEP_STOP,))


def _round_seed(sampling: SamplingParams, round_: int) -> SamplingParams:
    """A seeded request draws the same random numbers for its k-th completion on every call, so
    each round gets its own seed (reproducible, yet steps of different rounds independent)."""
    if sampling.seed is None or round_ == 0:
        return sampling
    return replace(sampling, seed=(sampling.seed * 1_000_003 + round_) % (2**63))


def _fits(engine: Engine, prompt: str) -> bool:
    """Whether at least one token can still be generated after ``prompt`` (known when the
    engine exposes its tokenizer and context, as both built-in engines do)."""
    tokenizer, max_len = getattr(engine, "tokenizer", None), getattr(engine, "max_len", None)
    if tokenizer is None or not isinstance(max_len, int):
        return True
    from selfplay.policy.tokenizer import encode_prompt

    return len(encode_prompt(tokenizer, prompt)) < max_len


__all__ = ["is_multi_step", "prompt_of", "rollout_text_env", "sample_solutions", "step_limit"]
