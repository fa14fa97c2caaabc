"""``rollout.mode=step_search``: MCTS over reasoning steps as the rollout of a multi-step text task.

Each problem (``env.reset(seed)``) is solved by ``solve_with_search``: at every decision a
``StepSearch`` samples ``search.num_candidates`` candidate next steps per node (duplicates merged),
values leaves with the policy's value head and ends at a final answer, which the env judges. The
decision's statistics over its sibling steps are recorded like a game move's, so the same
``alphazero`` loss trains on them: cross-entropy of the policy's prior over the siblings against
the visits, and the value head regressed on the episode's reward (the value that guides the next
search). The chosen step's tokens are recorded too (as a reference solution's are: written, not
sampled, log-probability 0), so ``expert_iteration`` trains on the verified paths the search
found.

The env stays the judge, through its gymnasium API: a terminal node's reward is the env's own,
reached by resetting it to the problem and stepping it through the node's steps
(``env_reward_fn``), and each finished episode is that replay's steps and reward. So any
registered multi-step text env (``env=math_steps``, a user's) is searched without glue.

A decision's observation is the state (the problem and the steps so far), as in every text
episode; the learner reads it as ``prompt_of(state)`` (``Learner(text_decisions=True)``), the text
the search sampled its candidates from and read its value at, so the prior and the value the
learner trains are those the next search uses (each step's closing newline included, with the
default ``learner.step_prior=sequence``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np

from selfplay.errors import UserError
from selfplay.policy.engine import Engine
from selfplay.search.config import check_leaf_value
from selfplay.search.text_adapter import (
    SolvedProblem,
    StepSearch,
    final_step_rule,
    rollout_value_fn,
    solve_with_search,
)
from selfplay.textgen.rollout import STEP_STOP, is_multi_step, prompt_of, step_limit
from selfplay.types import Episode, SampledTokens, SearchStats, Step


def steps_of(problem: str, state: str) -> list[str]:
    """The reasoning steps of a text ``state`` that starts with ``problem`` (one per line)."""
    if not state.startswith(problem):
        raise ValueError("the state does not start with its problem")
    rest = state[len(problem):]
    return rest[1:].split("\n") if rest.startswith("\n") else []


def replay_steps(env: gym.Env, seed: int, steps: list[str]) -> tuple[float, bool, dict[str, Any]]:
    """(final reward, whether the env ended the episode, its last info): ``env`` reset to problem
    ``seed`` and stepped through ``steps`` until it ends."""
    env.reset(seed=seed)
    reward, info, ended = 0.0, {}, False
    for step in steps:
        _, reward, terminated, truncated, info = env.step(step)
        if terminated or truncated:
            ended = True
            break
    return float(reward), ended, info


def env_reward_fn(env: gym.Env, seeds: list[int], problems: list[str]) -> Callable[[int, str], float]:
    """The search's ``reward_fn``: the env's reward for problem ``b``'s terminal state."""

    def reward(b: int, state: str) -> float:
        return replay_steps(env, seeds[b], steps_of(problems[b], state))[0]

    return reward


class StepSearchRollout:
    """The rollout mode: problems solved step by step with MCTS, one batch of searches."""

    def __init__(self, cfg, engine: Engine):
        from selfplay.build import build_env
        from selfplay.rollout.modes import training_feedback

        self.cfg, self.engine = cfg, engine
        self.env = training_feedback(cfg, engine)(build_env(cfg.env))
        if not is_multi_step(self.env):
            raise UserError(f"rollout.mode=step_search searches over reasoning steps: "
                            f"{cfg.env.id} takes a whole solution per action (use a multi-step "
                            "task, e.g. env=math_steps or env=code_steps)")
        self.env_id = self.env.spec.id if self.env.spec is not None else cfg.env.id
        self.max_steps = step_limit(self.env)
        self.is_final_step = final_step_rule(self.env)  # e.g. code: a blank line ends the program
        check_leaf_value(cfg.search)

    def on_weights(self, version: int) -> None:
        pass  # each decision is a fresh search with the engine's current weights

    def search(self, reward_fn: Callable[[int, str], float], problems: list[str],
               seed: int = 0) -> StepSearch:
        s, sampling = self.cfg.search, self.cfg.sampling
        value_fn = None  # the value head
        if s.leaf_value == "rollouts":
            value_fn = rollout_value_fn(
                self.engine, reward_fn, problems, rollouts=s.leaf_rollouts,
                max_tokens=sampling.step_max_tokens * self.max_steps,
                temperature=sampling.temperature, top_p=sampling.top_p, seed=seed,
                is_final_step=self.is_final_step)
        return StepSearch(
            self.engine, reward_fn, value_fn=value_fn, is_final_step=self.is_final_step,
            num_candidates=s.num_candidates,
            max_step_tokens=sampling.step_max_tokens, temperature=sampling.temperature,
            top_p=sampling.top_p, max_steps=self.max_steps, num_simulations=s.num_simulations,
            c_puct=s.c_puct, dirichlet_alpha=s.dirichlet_alpha,
            dirichlet_fraction=s.dirichlet_fraction, leaves_per_tree=s.leaves_per_tree,
            virtual_loss=s.virtual_loss, record_nodes=s.record_nodes, root=s.root,
            max_considered=s.max_considered, gumbel_scale=s.gumbel_scale)

    def play(self, count: int, seed: int, actor: str) -> list[Episode]:
        from selfplay.rollout.modes import problem_seeds

        rng = np.random.default_rng(seed)
        seeds = problem_seeds(rng, count, self.cfg.rollout.problems)
        problems = [str(self.env.reset(seed=s)[0]) for s in seeds]
        started = time.time()
        search = self.search(env_reward_fn(self.env, seeds, problems), problems,
                             seed=int(rng.integers(0, 2**31 - 1)))
        solved = solve_with_search(search, problems, rng=rng, add_noise=True,
                                   temperature=self.cfg.search.temperature)
        version = int(self.engine.policy_version)
        return [self.episode(sp, s, problem, version, started, actor)
                for sp, s, problem in zip(solved, seeds, problems) if sp.steps]

    def episode(self, sp: SolvedProblem, seed: int, problem: str, version: int, started: float,
                actor: str) -> Episode:
        # The env's verdict on the chosen steps (what the search's reward_fn saw at the end).
        from selfplay.rollout.reference import action_token_ids

        reward, _, info = replay_steps(self.env, seed, sp.steps)
        tokenizer = getattr(self.engine, "tokenizer", None)
        steps = []
        for o, a, stats in zip(sp.observations, sp.steps, sp.stats):
            tokens = None
            if tokenizer is not None:
                ids = action_token_ids(tokenizer, a, multi_step=True)
                tokens = SampledTokens(ids, [0.0] * len(ids), version)
            steps.append(Step(observation=o, action=a, player=0, reward=0.0, tokens=tokens,
                              search=self.learnable(prompt_of(o), stats)))
        steps[-1].reward = reward
        return Episode(
            episode_id=uuid.uuid4().hex, env_id=self.env_id, seed=int(seed),
            policy_version=version, steps=steps, outcome=reward, started_at=started,
            finished_at=time.time(), actor=actor,
            info={"termination": sp.termination, **{k: str(v) for k, v in info.items()}})

    def learnable(self, prompt: str, stats: SearchStats) -> SearchStats | None:
        """The decision's statistics over the candidates the learner can score after ``prompt``:
        a step that is empty once stripped (the policy closed the line at once) or that the
        tokenizer cannot spell has no prior to train, so it leaves the targets (their visits
        renormalise over the rest); None when no candidate is left, or one would not fit the
        policy's context (the decision is kept, never trained on)."""
        from selfplay.policy.tokenizer import encode_continuations, encode_prompts, is_encodable

        tokenizer = getattr(self.engine, "tokenizer", None)
        if tokenizer is None or not stats.actions:
            return stats
        encoded = encode_continuations(tokenizer, [a if a else " " for a in stats.actions])
        keep = [j for j, (a, ids) in enumerate(zip(stats.actions, encoded))
                if a.strip() and is_encodable(tokenizer, ids)]
        if not keep:
            return None
        limit = getattr(self.engine, "max_len", None)
        if isinstance(limit, int):
            longest = max((stats.actions[j] for j in keep), key=len)
            # the learner scores a step with its closing newline (learner.step_prior=sequence)
            if len(encode_prompts(tokenizer, [prompt + longest + STEP_STOP])[0]) > limit:
                return None
        if len(keep) == len(stats.actions):
            return stats
        def pick(xs):
            return None if xs is None else [xs[j] for j in keep]

        target = pick(stats.policy_target)
        if target is not None:
            total = sum(target)
            target = [t / total for t in target] if total > 0 else None
        return replace(stats, actions=pick(stats.actions), visits=pick(stats.visits),
                       priors=pick(stats.priors), q_values=pick(stats.q_values),
                       policy_target=target)
