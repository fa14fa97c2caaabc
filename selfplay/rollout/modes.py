"""The rollout modes: what a rollout actor does with the incumbent on each ``play`` call.

- ``game_selfplay``: both sides of ``count`` games by the incumbent with MCTS (AlphaZero);
- ``sample_groups``: ``count`` problems, ``sampling.k`` samples each (a GRPO group), one prefill
  shared per problem, every token's sampling log-probability and version recorded; with
  ``rollout.reference_mix`` a share of the groups also carries the problem's reference solution;
- ``reference``: ``count`` of the env's reference solutions (SFT continued on them: the control
  of an RL run on text).

Each mode is built once per actor from the actor's typed config and its engine, told when the
engine's weights change (``on_weights``), and asked for episodes (``play``).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Protocol

import numpy as np

from selfplay.build import build_env, game_of
from selfplay.errors import UserError
from selfplay.policy.engine import Engine, SamplingParams
from selfplay.rollout.games import cached_evaluator, play_selfplay_games
from selfplay.types import Episode

SEED_SPACE = 2**31 - 1


class RolloutMode(Protocol):
    def on_weights(self, version: int) -> None: ...

    def play(self, count: int, seed: int, actor: str) -> list[Episode]: ...


def problem_seeds(rng: np.random.Generator, count: int, problems: int) -> list[int]:
    """``count`` problem seeds: from 0..problems-1 when the set is limited, else any."""
    high = problems if problems > 0 else SEED_SPACE
    return [int(s) for s in rng.integers(0, high, size=count)]


class GameSelfPlay:
    def __init__(self, cfg, engine: Engine):
        from selfplay.search.game_adapter import GameSearch, engine_evaluator

        self.cfg, self.engine = cfg, engine
        self.game = game_of(build_env(cfg.env))
        if self.game is None:
            raise UserError(f"rollout.mode=game_selfplay: env.id={cfg.env.id} is not a "
                            "two-player game (text tasks: rollout.mode=sample_groups)")
        self._engine_evaluator = lambda: engine_evaluator(engine, self.game)
        self._search_of = GameSearch.from_config
        self.search = self.fast_search = None

    def on_weights(self, version: int) -> None:
        # New weights, new evaluations: the cache must not outlive the version it was built on.
        # The fast search of playout-cap randomisation shares it (same weights, same positions).
        evaluate = cached_evaluator(self._engine_evaluator())
        search = self.cfg.search
        self.search = self._search_of(self.game, evaluate, search)
        self.fast_search = None
        if search.full_search_prob < 1.0:
            self.fast_search = self._search_of(self.game, evaluate, replace(
                search, num_simulations=search.fast_simulations, dirichlet_fraction=0.0))

    def play(self, count: int, seed: int, actor: str) -> list[Episode]:
        return play_selfplay_games(
            self.game, self.search, num_games=count, env_id=self.cfg.env.id,
            policy_version=int(self.engine.policy_version), seed=seed,
            temperature=self.cfg.search.temperature,
            temperature_moves=self.cfg.search.temperature_moves, actor=actor,
            fast_search=self.fast_search, full_search_prob=self.cfg.search.full_search_prob,
        )


def text_sampling(sampling, multi_step: bool, seed: int | None = None) -> SamplingParams:
    """The engine's sampling parameters of ``sampling`` (a TextSamplingConfig)."""
    return SamplingParams(
        temperature=sampling.temperature, top_p=sampling.top_p,
        max_tokens=sampling.step_max_tokens if multi_step else sampling.max_tokens, seed=seed,
    )


def training_feedback(cfg, engine: Engine):
    """How a rollout wraps its text env: with the AI feedback of ``cfg.feedback`` (a judge with no
    path of its own judges with the rollout's engine, the incumbent), added to the env's reward
    with the configured weights, as the text arena does; unwrapped when no source is set."""
    if not getattr(cfg, "feedback", None) or not cfg.feedback.sources:
        return lambda env: env
    from selfplay.evaluate_text import feedback_wrapper

    return feedback_wrapper(cfg, engine)


class SampleGroups:
    def __init__(self, cfg, engine: Engine):
        from selfplay.textgen.rollout import is_multi_step

        self.cfg, self.engine = cfg, engine
        wrap = training_feedback(cfg, engine)
        self.env_factory = lambda: wrap(build_env(cfg.env))
        self.probe = self.env_factory()
        self.multi_step = is_multi_step(self.probe)
        self.params = text_sampling(cfg.sampling, self.multi_step)
        self.skipped = 0  # problems longer than the policy's context, left out
        self.reference_mix = float(getattr(cfg.rollout, "reference_mix", 0.0))
        if self.reference_mix > 0 and getattr(self.probe.unwrapped, "reference_actions", None) is None:
            raise UserError(f"rollout.reference_mix={self.reference_mix}: {cfg.env.id} has no "
                            "reference solutions (reference_actions()) to mix in")

    def on_weights(self, version: int) -> None:
        pass  # sampling keeps no state of its own between versions

    def play(self, count: int, seed: int, actor: str) -> list[Episode]:
        from selfplay.textgen.rollout import rollout_text_env

        rng = np.random.default_rng(seed)
        seeds = self.readable(problem_seeds(rng, count, self.cfg.rollout.problems))
        if not seeds:
            return []
        params = replace(self.params, seed=int(rng.integers(0, SEED_SPACE)))
        episodes = rollout_text_env(self.env_factory, self.engine, seeds, self.cfg.sampling.k,
                                    params, actor=actor)
        if self.reference_mix > 0:
            episodes = self.with_references(episodes, rng, actor)
        return episodes

    def with_references(self, episodes: list[Episode], rng: np.random.Generator,
                        actor: str) -> list[Episode]:
        """``episodes`` with each group, at the rate ``reference_mix``, followed by its problem's
        reference solution as one more member of the group (the env's own verdict as its reward,
        without the AI feedback the samples get; log-probability 0 on its tokens: written, not
        sampled). With ``rollout.reference_problems`` the references come instead from that set
        of problems, as many, each a group of one, so the samples can range over problems the
        references do not cover. A reference the verifier rejects is left out, as in the warm
        start."""
        from selfplay.rollout.reference import reference_episodes

        groups: dict[str, list[Episode]] = {}
        for ep in episodes:
            groups.setdefault(ep.group_id, []).append(ep)
        chosen = [gid for gid in groups if rng.random() < self.reference_mix]
        apart = int(getattr(self.cfg.rollout, "reference_problems", 0))
        if apart > 0:  # references of a set of their own, each a group of one
            seeds = problem_seeds(rng, len(chosen), apart)
            try:
                extra = reference_episodes(lambda: build_env(self.cfg.env), seeds,
                                           self.engine.tokenizer,
                                           policy_version=int(self.engine.policy_version),
                                           actor=actor)
            except ValueError:
                extra = []
            return [*episodes, *(replace(ep, group_id=uuid.uuid4().hex) for ep in extra)]
        written: dict[int, list[Episode]] = {}
        if chosen:
            seeds = [groups[gid][0].seed for gid in chosen]
            try:  # one env for the whole batch; ValueError: the verifier rejects all of them
                for ep in reference_episodes(lambda: build_env(self.cfg.env), seeds,
                                             self.engine.tokenizer,
                                             policy_version=int(self.engine.policy_version),
                                             actor=actor):
                    written.setdefault(ep.seed, []).append(ep)
            except ValueError:
                pass
        carried = set(chosen)
        out: list[Episode] = []
        for gid, members in groups.items():
            out.extend(members)
            if written.get(members[0].seed) and gid in carried:
                out.append(replace(written[members[0].seed].pop(), group_id=gid))
        return out

    def readable(self, seeds: list[int]) -> list[int]:
        """The seeds whose problem fits the policy's context with room to answer: a dataset's
        overlong problem is skipped (and counted), not a failed actor."""
        from selfplay.policy.tokenizer import encode_prompts
        from selfplay.textgen.rollout import prompt_of

        limit = getattr(self.engine, "max_len", None)
        if not isinstance(limit, int):
            return seeds
        if self.probe is None:
            self.probe = self.env_factory()
        prompts = [prompt_of(str(self.probe.reset(seed=s)[0])) for s in seeds]
        lengths = [len(ids) for ids in encode_prompts(self.engine.tokenizer, prompts)]
        kept = [s for s, n in zip(seeds, lengths) if n < limit]
        self.skipped += len(seeds) - len(kept)
        return kept


class ReferenceSolutions:
    def __init__(self, cfg, engine: Engine):
        self.cfg, self.engine = cfg, engine
        if cfg.rollout.problems <= 0:
            raise UserError("rollout.mode=reference needs rollout.problems > 0: the size of the "
                            "set of reference solutions it trains on")

    def on_weights(self, version: int) -> None:
        pass

    def play(self, count: int, seed: int, actor: str) -> list[Episode]:
        from selfplay.rollout.reference import reference_episodes

        seeds = problem_seeds(np.random.default_rng(seed), count, self.cfg.rollout.problems)
        return reference_episodes(lambda: build_env(self.cfg.env), seeds, self.engine.tokenizer,
                                  policy_version=int(self.engine.policy_version), actor=actor)


def _step_search(cfg, engine: Engine):
    from selfplay.rollout.step_search import StepSearchRollout

    return StepSearchRollout(cfg, engine)


ROLLOUT_MODES = {
    "game_selfplay": GameSelfPlay,
    "sample_groups": SampleGroups,
    "reference": ReferenceSolutions,
    "step_search": _step_search,
}

# What rollout.mode=auto resolves to, by the kind of env.
DEFAULT_MODE = {"game": "game_selfplay", "text": "sample_groups"}


def make_rollout(mode: str, cfg, engine: Engine) -> RolloutMode:
    try:
        cls = ROLLOUT_MODES[mode]
    except KeyError:
        raise UserError(f"rollout.mode={mode!r}: known modes are {sorted(ROLLOUT_MODES)} "
                        "or auto") from None
    return cls(cfg, engine)
