"""MCTS over reasoning steps (``selfplay.search.text_adapter``) against known answers.

A scripted engine stands in for the policy: each prompt maps to a fixed list of candidate steps
with fixed log-probabilities, so the search's priors, values and choices are known exactly. One
smoke test runs a real tiny TorchEngine on a math problem.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Callable

import numpy as np
import pytest

from selfplay.policy.engine import ActionEvaluation, Completion, SamplingParams
from selfplay.search.text_adapter import (
    StepSearch,
    candidate_priors,
    engine_value_fn,
    last_step,
    rollout_value_fn,
    solve_with_search,
)

Options = list[tuple[str, float]]  # (completion text, summed log-probability)


class ScriptedEngine:
    """Deterministic Engine: ``options(prompt)`` gives the candidate completions, repeated in
    order to fill ``n``; ``value(prompt)`` the value head. Records every call."""

    policy_version = 0

    def __init__(self, options: Callable[[str], Options],
                 value: Callable[[str], float] = lambda prompt: 0.0):
        self.options = options
        self.value = value
        self.generate_calls: list[list[str]] = []
        self.evaluate_calls: list[list[str]] = []

    def generate(self, prompts, sampling: SamplingParams) -> list[list[Completion]]:
        self.generate_calls.append(list(prompts))
        out = []
        for p in prompts:
            opts = itertools.islice(itertools.cycle(self.options(p)), sampling.n)
            out.append([_completion(text, lp) for text, lp in opts])
        return out

    def evaluate(self, states, actions) -> list[ActionEvaluation]:
        self.evaluate_calls.append(list(states))
        return [ActionEvaluation(np.full(len(a), 1.0 / len(a)), self.value(s), 0)
                for s, a in zip(states, actions)]


def _completion(text: str, logprob: float) -> Completion:
    """A completion whose token log-probabilities (one per character) sum to ``logprob``."""
    return Completion(text, [ord(c) for c in text], [logprob / len(text)] * len(text), "stop", 0)


def _last_line(prompt: str) -> str:
    return last_step(prompt.rstrip("\n"))


def two_branches(prompt: str) -> Options:
    """From "Q": a likely step "a" and an unlikely "b"; each then has one answer."""
    return {"Q": [("a\n", -0.1), ("b\n", -2.3)],
            "a": [("Answer: 1\n", -0.5)],
            "b": [("Answer: 2\n", -0.5)]}[_last_line(prompt)]


def rewards_answer(*answers: str):
    return lambda b, state: 1.0 if last_step(state) in answers else 0.0


def endless(prompt: str) -> Options:
    """Two steps from every state, never a final answer."""
    return [("x\n", -0.7), ("y\n", -0.7)]


def search_of(engine, reward_fn, **kw) -> StepSearch:
    kw = {"num_candidates": 2, "num_simulations": 32, "dirichlet_fraction": 0.0, **kw}
    return StepSearch(engine, reward_fn, **kw)


# ------------------------------------------------------------------------------------------------
# Known answers


def test_search_finds_the_rewarded_low_prior_step():
    # "a" (prior 0.9) takes the first ~15 simulations before PUCT tries "b" (prior 0.1), and "b"
    # needs two visits to show its reward (value head 0 first): 64 simulations leave no doubt
    engine = ScriptedEngine(two_branches)
    result = search_of(engine, rewards_answer("Answer: 2"), num_simulations=64).run(["Q"])
    stats = result.stats[0]
    assert stats.actions == ["a", "b"]
    prior_a = math.exp(-0.1) / (math.exp(-0.1) + math.exp(-2.3))
    np.testing.assert_allclose(stats.priors, [prior_a, 1 - prior_a])
    assert sum(stats.visits) == 64 and stats.simulations == 64
    assert result.chosen == ["b"] and result.chosen_index == [1]
    assert stats.visits[1] > stats.visits[0]
    assert stats.q_values[0] == 0.0 and stats.q_values[1] > 0.8
    # the first visit of "b" is the value head's 0, every later one backs up the verified 1
    assert stats.q_values[1] == pytest.approx((stats.visits[1] - 1) / stats.visits[1])


def test_rollout_leaf_values_find_the_rewarded_step_where_the_value_head_is_blind():
    # 32 simulations: with the value head (0 everywhere) "b" needs two visits to show its reward
    # and "a" keeps the most visits; valued by rollouts to the end, "b" shows its verified 1 on
    # its first visit and takes over.
    reward = rewards_answer("Answer: 2")
    blind = search_of(ScriptedEngine(two_branches), reward, num_simulations=32).run(["Q"])
    assert blind.chosen == ["a"]
    engine = ScriptedEngine(two_branches)
    value_fn = rollout_value_fn(engine, reward, ["Q"], rollouts=2, max_tokens=16)
    result = search_of(engine, reward, num_simulations=32, value_fn=value_fn).run(["Q"])
    stats = result.stats[0]
    assert result.chosen == ["b"] and stats.visits[1] > stats.visits[0]
    assert stats.q_values[1] == pytest.approx(1.0) and stats.q_values[0] == 0.0
    # the rollouts went through the engine: prompts of the leaves "Q\na" and "Q\nb", n=2 each
    assert ["Q\na\n"] in engine.generate_calls and ["Q\nb\n"] in engine.generate_calls


def test_a_rollout_value_names_a_state_of_no_problem():
    value_fn = rollout_value_fn(ScriptedEngine(two_branches), rewards_answer("x"), ["Q"],
                                rollouts=1, max_tokens=4)
    with pytest.raises(ValueError, match="none of the problems"):
        value_fn(["another\na"])


def test_too_few_simulations_follow_the_prior():
    result = search_of(ScriptedEngine(two_branches), rewards_answer("Answer: 2"),
                       num_simulations=2).run(["Q"])
    assert result.chosen == ["a"] and result.stats[0].visits == [2.0, 0.0]


def test_equal_rewards_prefer_the_likely_step():
    result = search_of(ScriptedEngine(two_branches),
                       rewards_answer("Answer: 1", "Answer: 2")).run(["Q"])
    stats = result.stats[0]
    # both answers verify: "a" is as good and likelier, so "b" is never worth a visit
    assert result.chosen == ["a"] and stats.visits == [32.0, 0.0]
    assert stats.q_values[0] == pytest.approx(31 / 32)


def test_one_generate_and_one_value_call_per_wave():
    engine = ScriptedEngine(endless)
    search_of(engine, rewards_answer(), num_simulations=5, max_steps=10).run(["P", "Q", "R"])
    # the roots, then one call per wave holding that wave's new leaf of each of the 3 trees
    assert [len(c) for c in engine.generate_calls] == [3] * 6
    assert [len(c) for c in engine.evaluate_calls] == [3] * 6
    assert engine.generate_calls[0] == ["P\n", "Q\n", "R\n"]

    engine = ScriptedEngine(endless)
    search_of(engine, rewards_answer(), num_simulations=6, leaves_per_tree=2,
              max_steps=10).run(["P", "Q", "R"])
    assert len(engine.generate_calls) == 1 + 3  # 3 waves of 2 leaves per tree
    assert all(len(c) <= 6 for c in engine.generate_calls)


def test_terminal_leaves_are_not_expanded():
    engine = ScriptedEngine(two_branches)
    search_of(engine, rewards_answer("Answer: 2"), num_simulations=32).run(["Q"])
    prompts = [p for call in engine.generate_calls for p in call]
    assert sorted(prompts) == ["Q\n", "Q\na\n", "Q\nb\n"]  # answers end the search there
    assert not any("Answer" in p for p in prompts)


def test_duplicate_candidates_are_one_action():
    def dupes(prompt: str) -> Options:
        if _last_line(prompt) == "Q":  # "a" three times (once with a trailing space), "b" once
            return [("a\n", -0.1), ("a\n", -0.1), ("b\n", -2.3), ("a \n", -3.0)]
        return [("Answer: 1\n", -0.5)]

    engine = ScriptedEngine(dupes)
    result = search_of(engine, rewards_answer(), num_candidates=4,
                       num_simulations=8).run(["Q"])
    stats = result.stats[0]
    assert stats.actions == ["a", "b"]
    # each distinct token sequence once: "a\n" and "a \n" add up, the repeated "a\n" does not
    mass_a = math.exp(-0.1) + math.exp(-3.0)
    np.testing.assert_allclose(stats.priors, [mass_a / (mass_a + math.exp(-2.3)),
                                              math.exp(-2.3) / (mass_a + math.exp(-2.3))])
    legal = result.output.tree.legal[0, 0]
    assert legal.tolist() == [True, True, False, False]
    assert result.output.visit_counts[0, 2:].sum() == 0
    assert "Q\na\n" in engine.generate_calls[1]  # the merged step is one child, not three

    steps, p = candidate_priors([_completion("a\n", -0.1), _completion("a\n", -0.1),
                                 _completion("b\n", -2.3)], count_duplicates=True)
    twice = 2 * math.exp(-0.1)
    assert steps == ["a", "b"]
    np.testing.assert_allclose(p, [twice / (twice + math.exp(-2.3)),
                                   math.exp(-2.3) / (twice + math.exp(-2.3))])


def test_length_normalised_priors():
    long_step, short_step = _completion("abcd\n", -2.0), _completion("x\n", -1.0)
    _, summed = candidate_priors([long_step, short_step])
    _, normalised = candidate_priors([long_step, short_step], length_normalise=True)
    assert summed[1] > summed[0]  # "x" is the likelier sequence
    assert normalised[0] > normalised[1]  # but "abcd" the likelier per token (-0.4 vs -0.5)
    np.testing.assert_allclose(normalised, np.exp([-0.4, -0.5]) / np.exp([-0.4, -0.5]).sum())


def test_depth_limit_terminates():
    engine = ScriptedEngine(endless)
    result = search_of(engine, rewards_answer(), num_simulations=30, max_steps=2,
                       truncated_value=-0.5).run(["Q"])
    prompts = [p for call in engine.generate_calls for p in call]
    assert sorted(prompts) == ["Q\n", "Q\nx\n", "Q\ny\n"]  # depth-2 states are never expanded
    assert result.stats[0].root_value < 0  # the truncations' value backs up
    assert result.output.tree.num_nodes[0] == 7  # root, 2 steps, 4 truncated leaves

    with pytest.raises(ValueError, match="already over"):
        search_of(engine, rewards_answer(), max_steps=2).run(["Q\nx\ny"], depths=[2])

    solved = solve_with_search(search_of(ScriptedEngine(endless), rewards_answer(),
                                         num_simulations=4, max_steps=3), ["Q"], add_noise=False)
    assert solved[0].termination == "max_steps" and len(solved[0].steps) == 3
    assert solved[0].reward == 0.0 and solved[0].text.count("\n") == 3


def test_batch_equals_single_searches():
    def tree(prompt: str) -> Options:
        lines = prompt.rstrip("\n").split("\n")
        h = zlib.crc32(prompt.encode())
        if len(lines) >= 3:
            return [(f"Answer: {h % 3}\n", -0.2)]
        return [(f"s{(h >> s) % 5}\n", -((h >> (4 * s)) % 7) / 3) for s in range(3)]

    def value(prompt: str) -> float:
        return (zlib.crc32(prompt.encode()) % 200) / 100 - 1

    def reward(b: int, state: str) -> float:
        return float(last_step(state) == f"Answer: {b % 3}")

    problems = ["P0", "P1", "P2"]
    kw = {"num_candidates": 3, "num_simulations": 20, "leaves_per_tree": 2}
    batch = search_of(ScriptedEngine(tree, value), reward, **kw).run(problems)
    for b, p in enumerate(problems):
        single = search_of(ScriptedEngine(tree, value), reward, **kw).run([p], problem_ids=[b])
        assert single.stats[0] == batch.stats[b]
        assert single.chosen[0] == batch.chosen[b]


def test_solve_with_search_reaches_the_verified_answer():
    engine = ScriptedEngine(two_branches)
    search = search_of(engine, rewards_answer("Answer: 2"), num_simulations=64)
    solved = solve_with_search(search, ["Q", "Q"], add_noise=False)
    for sp in solved:
        assert sp.text == "Q\nb\nAnswer: 2" and sp.steps == ["b", "Answer: 2"]
        assert sp.observations == ["Q", "Q\nb"] and sp.reward == 1.0
        assert sp.termination == "answer" and len(sp.stats) == 2
        steps = sp.as_steps()
        assert [s.reward for s in steps] == [0.0, 1.0] and steps[0].search is sp.stats[0]
    assert solved[0].stats[1].actions == ["Answer: 2"]  # the only candidate after "b"

    # self-play style: root noise and sampled steps still give a complete, valid solution
    rng = np.random.default_rng(0)
    solved = solve_with_search(search_of(ScriptedEngine(two_branches), rewards_answer()),
                               ["Q"], rng=rng, temperature=1.0)
    assert solved[0].termination == "answer" and len(solved[0].steps) == 2


def test_engine_value_fn_asks_the_value_head_on_prompts():
    engine = ScriptedEngine(endless, value=lambda prompt: len(prompt) / 10)
    values = engine_value_fn(engine)(["Q", "Q\nx"])
    np.testing.assert_allclose(values, [0.2, 0.4])
    assert engine.evaluate_calls == [["Q\n", "Q\nx\n"]]


# ------------------------------------------------------------------------------------------------
# A real tiny engine


def test_smoke_tiny_torch_engine_on_a_math_problem():
    from envs.math.tasks import generate
    from selfplay.policy.config import EngineConfig, PolicyConfig
    from selfplay.policy.factory import make_engine
    from selfplay.search.text_adapter import math_reward_fn

    engine = make_engine(PolicyConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                      intermediate_size=64), EngineConfig())
    problem = generate("addition", 1, seed=0)
    search = StepSearch(engine, math_reward_fn([problem]), num_candidates=3, max_step_tokens=6,
                        max_steps=2, num_simulations=6)
    result = search.run([problem.question], rng=np.random.default_rng(0))
    stats = result.stats[0]
    assert 1 <= len(stats.actions) <= 3 and len(set(stats.actions)) == len(stats.actions)
    assert sum(stats.visits) == 6 and stats.simulations == 6
    assert sum(stats.priors) == pytest.approx(1.0) and all(p > 0 for p in stats.priors)
    assert all(math.isfinite(q) for q in stats.q_values) and math.isfinite(stats.root_value)
    assert result.chosen[0] in stats.actions

    search.num_simulations = 2  # the driver end to end, cheaply
    sp = solve_with_search(search, [problem.question], add_noise=False)[0]
    assert sp.termination in ("answer", "max_steps", "context") and 1 <= len(sp.steps) <= 2
    assert sp.reward in (0.0, 1.0) and all(sum(s.visits) == 2 for s in sp.stats)
    assert sp.text.startswith(problem.question)
