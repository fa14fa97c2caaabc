"""The text arena: how the evaluator judges each published version of a text run (math, code).

Two measurements, both on held-out problems (``env_factory`` builds the env's ``split="test"``,
seeds pick the problems):

- ``evaluate_version``: pass@k, maj@k and the mean reward of one version (``evaluate_text_policy``);
- ``compare_on_prompts``: the candidate against the incumbent on the same prompts, as a
  ``MatchResult`` the Elo ladder records unchanged, and ``gate_on_prompts``: that comparison
  played ``batch`` prompts at a time under the sequential test of ``selfplay.arena.gating``
  stopping as soon as the test decides. With p = P(the candidate wins a prompt that separates
  the two) and the defaults (gating's docstring has the table): an equal candidate (p = 0.5) is
  accepted about 3% of the time, never above alpha / (1 - beta) = 5.6%; one with p = 0.65 is
  rejected 4-10% of the time (more with more drawn prompts), beta = 10% nominal.

A prompt is one game. Each side samples ``k`` completions of it; its score on the prompt is the
mean reward of those k episodes by the env (its verifier, or a judge / reward model when the env
is wrapped with AI feedback: the same factory serves both sides, so both are judged alike). The
candidate wins the prompt when its mean is higher, draws when the two are equal (within 1e-9),
loses otherwise. Prompts both sides solve (or both fail) every time are draws, which the
sequential test does not count: only prompts that separate the versions move it.

Sampling must be seeded (``sampling.seed``): each prompt is sampled with its own seed, drawn
from (``sampling.seed``, the problem's seed), the same for both sides. So a comparison is
reproducible, playing prompts in batches gives the prompt-by-prompt outcomes of one big call,
both sides use the same random numbers on a prompt (common random numbers: the same weights
sample the same texts, so only a difference in the policies separates them), and different
prompts use different ones. The last point is why each prompt is its own rollout: the engines
draw a completion from (request seed, completion index), so one seed shared by a batch of
prompts gives every prompt the same uniforms, and a near-uniform (e.g. untrained) policy then
writes nearly the same text for every problem — outcomes correlated across prompts, which the
sequential test assumes independent. The price is batching across prompts (a generate call
serves one prompt's k samples); an Engine taking a seed per prompt would remove it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from selfplay.arena.gating import SequentialDecision, SequentialGate, run_sequential
from selfplay.arena.match import MatchResult
from selfplay.evaluate_text import TextEvalResult, evaluate_text_policy, problem_results
from selfplay.policy.engine import Engine, SamplingParams
from selfplay.textgen.rollout import rollout_text_env

EnvFactory = Callable[[], object]  # () -> gymnasium.Env, a held-out (split="test") text env

# Mean rewards of k samples are sums of a few floats: equal policies give equal sums exactly,
# a judge's score may differ in the last bits between two calls of the same text.
DRAW_TOLERANCE = 1e-9


def evaluate_version(
    env_factory: EnvFactory,
    engine: Engine,
    seeds: Sequence[int],
    k: int,
    sampling: SamplingParams,
    *,
    batch_problems: int = 32,
) -> TextEvalResult:
    """pass@j, maj@k and the mean reward of ``engine``'s version on the held-out ``seeds``."""
    if not seeds:
        raise ValueError("evaluate_version: no seeds (held-out problems) to evaluate on")
    return evaluate_text_policy(
        env_factory, engine, seeds, k, sampling, batch_problems=batch_problems
    )


def prompt_scores(
    env_factory: EnvFactory, engine: Engine, seeds: Sequence[int], k: int, sampling: SamplingParams
) -> list[float]:
    """[len(seeds)] the mean reward of ``engine``'s k samples of each problem, in seed order, in
    one rollout (the engines key each completion's random numbers by the seed, the prompt and the
    completion index, so problems of one seeded call are sampled independently)."""
    _check(k, sampling)
    episodes = rollout_text_env(env_factory, engine, list(seeds), k, sampling)
    return [sum(p.rewards) / k for p in problem_results(episodes, k)]


def tally_prompts(
    candidate: Sequence[float], incumbent: Sequence[float], *, names: tuple[str, str]
) -> MatchResult:
    """Per prompt a win (candidate's score higher), a draw (equal) or a loss, as a MatchResult.

    A text match has no sides (no one moves first): every count is in the ``*_as_first`` fields
    and the ``*_as_second`` ones are 0; ``wins``/``draws``/``losses``/``score`` read as for games.
    """
    if len(candidate) != len(incumbent):
        raise ValueError(f"{len(candidate)} candidate scores but {len(incumbent)} incumbent scores")
    wins = draws = losses = 0
    for c, i in zip(candidate, incumbent):
        if not (math.isfinite(c) and math.isfinite(i)):
            raise ValueError(f"a prompt score is not finite: candidate {c}, incumbent {i}")
        if abs(c - i) <= DRAW_TOLERANCE:
            draws += 1
        elif c > i:
            wins += 1
        else:
            losses += 1
    a, b = names
    return MatchResult(a, b, wins, draws, losses, 0, 0, 0)


def compare_on_prompts(
    env_factory: EnvFactory,
    candidate_engine: Engine,
    incumbent_engine: Engine,
    seeds: Sequence[int],
    k: int,
    sampling: SamplingParams,
    *,
    names: tuple[str, str] | None = None,
) -> MatchResult:
    """Both versions sample ``k`` completions of every prompt (same seeds, same seeded
    sampling); one game per prompt, scored as the module docstring says. ``names`` default to
    ``v<policy_version>`` of each engine (how the Elo ladder names versions)."""
    _check(k, sampling)
    names = names or (f"v{candidate_engine.policy_version}", f"v{incumbent_engine.policy_version}")
    seeds = list(seeds)
    cand = prompt_scores(env_factory, candidate_engine, seeds, k, sampling)
    inc = prompt_scores(env_factory, incumbent_engine, seeds, k, sampling)
    return tally_prompts(cand, inc, names=names)


def gate_on_prompts(
    env_factory: EnvFactory,
    candidate_engine: Engine,
    incumbent_engine: Engine,
    seeds: Sequence[int],
    k: int,
    sampling: SamplingParams,
    gate: SequentialGate,
    batch: int,
    *,
    names: tuple[str, str] | None = None,
) -> tuple[SequentialDecision, MatchResult]:
    """``compare_on_prompts`` ``batch`` prompts at a time, in seed order, until ``gate`` decides;
    at ``gate.max_games`` prompts, or when the seeds run out, undecided rejects (the incumbent
    stays). Returns the decision and the match over the prompts played (for the Elo ladder)."""
    _check(k, sampling)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("gate_on_prompts: no seeds (held-out prompts) to gate on")
    names = names or (f"v{candidate_engine.policy_version}", f"v{incumbent_engine.policy_version}")

    def play(start: int, n: int) -> MatchResult:
        chunk = seeds[start : start + n]
        return compare_on_prompts(
            env_factory, candidate_engine, incumbent_engine, chunk, k, sampling, names=names
        )

    return run_sequential(play, gate, batch, available=len(seeds))


def _check(k: int, sampling: SamplingParams) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if sampling.seed is None:
        raise ValueError(
            "comparing versions on prompts needs seeded sampling (SamplingParams.seed): "
            "unseeded, the same version would not give the same samples twice"
        )


__all__ = [
    "DRAW_TOLERANCE",
    "compare_on_prompts",
    "evaluate_version",
    "gate_on_prompts",
    "prompt_scores",
    "tally_prompts",
]
