"""The text arena (selfplay.arena.text): a version on held-out problems, and candidate against
incumbent on the same prompts, counted per prompt and gated by the sequential test.

Real parts: the registered ``selfplay/MathArithmetic-v0`` env (test split) and, besides a scripted
engine for exact counts, the embedded torch engine on tiny fresh policies.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from selfplay.arena.elo import EloLadder
from selfplay.arena.gating import SequentialGate
from selfplay.arena.match import MatchResult
from selfplay.arena.text import (
    compare_on_prompts,
    evaluate_version,
    gate_on_prompts,
    prompt_scores,
    tally_prompts,
)
from selfplay.build import build_env
from selfplay.config import EnvConfig
from selfplay.evaluate_text import evaluate_text_policy
from selfplay.feedback.wrapper import FeedbackRewardWrapper
from selfplay.policy.config import EngineConfig, PolicyConfig
from selfplay.policy.engine import Completion, SamplingParams
from selfplay.policy.factory import make_engine

MATH = "selfplay/MathArithmetic-v0"
SEEDED = SamplingParams(temperature=1.0, max_tokens=20, seed=11)


def math_env():
    return build_env(EnvConfig(id=MATH), split="test")


def answers(seeds) -> dict[str, str]:
    """question -> reference answer of the held-out problems behind ``seeds``."""
    env, out = math_env(), {}
    for s in seeds:
        obs, _ = env.reset(seed=s)
        out[str(obs)] = env.unwrapped.problem.answer
    return out


class Scripted:
    """An Engine answering each problem from the reference: ``right`` of every k samples are
    correct (the first ones), the rest off by a digit. Records the prompts it was asked."""

    def __init__(self, reference: dict[str, str], right: int, version: int):
        self.reference, self.right, self.policy_version = reference, right, version
        self.prompts: list[str] = []

    def generate(self, prompts, sampling):
        out = []
        for p in prompts:
            self.prompts.append(p)
            answer = self.reference[p.removesuffix("\n")]
            texts = [f"Answer: {answer}" if j < self.right else f"Answer: {answer}1"
                     for j in range(sampling.n)]  # fmt: skip
            out.append([Completion(t, [], [], "stop", self.policy_version) for t in texts])
        return out

    def score(self, prompts, continuations):  # pragma: no cover
        raise AssertionError("not used")

    def evaluate(self, states, actions):  # pragma: no cover
        raise AssertionError("not used")

    def load_weights(self, weights, version):  # pragma: no cover
        self.policy_version = version


class HashJudge:
    """AI feedback that tells any two texts apart (a CRC of the response, in [0, 1)): an untrained
    policy never solves a problem, so the verifier alone would make every prompt a 0-0 draw."""

    def score(self, prompts, responses):
        return np.array([zlib.crc32(r.encode()) / 2**32 for r in responses])


def judged_env():
    return FeedbackRewardWrapper(math_env(), [(HashJudge(), 1.0)])


def tiny_engine(seed: int):
    cfg = PolicyConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2,
                       intermediate_size=64, max_seq_len=256, seed=seed)  # fmt: skip
    return make_engine(cfg, EngineConfig(max_batch_size=64))


@pytest.fixture(scope="module")
def engines():
    return {"a": tiny_engine(0), "a_again": tiny_engine(0), "b": tiny_engine(1)}


# ---- counting ----------------------------------------------------------------------------------


def test_tally_prompts_by_hand():
    match = tally_prompts(
        [1.0, 0.5, 0.0, 0.25, 0.75], [0.0, 0.5, 1.0, 0.25 + 1e-12, 0.5], names=("v3", "v2")
    )
    assert (match.a, match.b) == ("v3", "v2")
    assert (match.wins, match.draws, match.losses) == (2, 2, 1)
    # a text match has no sides: everything is "as first"
    assert (match.wins_as_first, match.draws_as_first, match.losses_as_first) == (2, 2, 1)
    assert match.games_as_second == 0 and match.score == pytest.approx(0.6)
    with pytest.raises(ValueError, match="2 candidate scores but 1"):
        tally_prompts([1.0, 0.0], [1.0], names=("v1", "v0"))
    with pytest.raises(ValueError, match="not finite"):
        tally_prompts([float("nan")], [1.0], names=("v1", "v0"))


def test_a_text_match_goes_on_the_elo_ladder_unchanged():
    ladder = EloLadder()
    ratings = ladder.record(tally_prompts([1.0] * 8 + [0.0] * 2, [0.0] * 10, names=("v3", "v2")),
                            version=3)  # fmt: skip
    assert ratings["v3"] > ratings["v2"]
    assert ladder.matches()[0].wins == 8 and ladder.history()[0].player == "v3"


# ---- scripted engines: exact outcomes ----------------------------------------------------------


def test_compare_counts_wins_draws_and_losses_per_prompt():
    seeds = list(range(6))
    ref = answers(seeds)
    all_right, half, none = Scripted(ref, 4, 5), Scripted(ref, 2, 4), Scripted(ref, 0, 3)
    match = compare_on_prompts(math_env, all_right, half, seeds, 4, SEEDED)
    assert (match.a, match.b) == ("v5", "v4")  # named by policy version
    assert (match.wins, match.draws, match.losses) == (6, 0, 0)
    assert prompt_scores(math_env, half, seeds, 4, SEEDED) == [0.5] * 6  # the verifier's reward
    match = compare_on_prompts(math_env, none, half, seeds, 4, SEEDED, names=("x", "y"))
    assert (match.a, match.wins, match.draws, match.losses) == ("x", 0, 0, 6)
    match = compare_on_prompts(math_env, half, Scripted(ref, 2, 9), seeds, 4, SEEDED)
    assert (match.wins, match.draws, match.losses) == (0, 6, 0)


def test_gate_on_prompts_stops_as_soon_as_the_test_decides():
    seeds = list(range(40))
    ref = answers(seeds)
    better, worse = Scripted(ref, 2, 1), Scripted(ref, 0, 0)
    decision, match = gate_on_prompts(math_env, better, worse, seeds, 2, SEEDED,
                                      SequentialGate(), batch=5)  # fmt: skip
    # 12 straight wins cross ln 18: three looks of 5 prompts
    assert decision.accepted and match.games == 15 and match.wins == 15
    assert len(set(better.prompts)) == 15  # the other 25 problems were never sampled
    decision, match = gate_on_prompts(math_env, worse, better, seeds, 2, SEEDED,
                                      SequentialGate(), batch=5)  # fmt: skip
    assert decision.state == "reject" and match.games == 10  # 7 losses cross ln(0.1 / 0.95)


def test_evaluate_version_is_evaluate_text_policy():
    seeds = list(range(5))
    ref = answers(seeds)
    result = evaluate_version(math_env, Scripted(ref, 1, 0), seeds, 4, SEEDED)
    assert result.problems == 5 and result.pass_at[1] == pytest.approx(0.25)
    assert result.pass_at[4] == 1.0 and result.mean_reward == pytest.approx(0.25)
    assert result == evaluate_text_policy(math_env, Scripted(ref, 1, 0), seeds, 4, SEEDED)
    with pytest.raises(ValueError, match="no seeds"):
        evaluate_version(math_env, Scripted(ref, 1, 0), [], 4, SEEDED)


def test_comparisons_need_seeded_sampling_and_k():
    ref = answers([0])
    a, b = Scripted(ref, 1, 1), Scripted(ref, 1, 0)
    with pytest.raises(ValueError, match="seeded sampling"):
        compare_on_prompts(math_env, a, b, [0], 2, SamplingParams())
    with pytest.raises(ValueError, match="k must be"):
        gate_on_prompts(math_env, a, b, [0], 0, SEEDED, SequentialGate(), 5)
    with pytest.raises(ValueError, match="no seeds"):
        gate_on_prompts(math_env, a, b, [], 2, SEEDED, SequentialGate(), 5)


# ---- the embedded engine on tiny fresh policies -------------------------------------------------


def test_one_seeded_call_samples_each_prompt_independently(engines):
    """The engine keys a completion's random numbers by (seed, prompt, index): two prompts of one
    seeded call do not share them, and the same prompt gives the same samples in any batch."""
    params = SamplingParams(temperature=1.0, max_tokens=24, seed=5)
    both = engines["a"].generate(["What is 1 + 2?\n", "What is 3 + 4?\n"], params)
    alone = engines["a"].generate(["What is 3 + 4?\n"], params)
    assert both[1][0].token_ids == alone[0][0].token_ids
    assert both[0][0].logprobs != both[1][0].logprobs


SEEDS = list(range(8))
SHORT = SamplingParams(temperature=1.0, max_tokens=8, seed=11)  # untrained text: a few tokens do


def test_untrained_samples_differ_across_prompts(engines):
    """With one seed shared by every prompt an untrained policy writes nearly the same text for
    each problem; per-prompt seeds make the prompts independent."""
    scores = prompt_scores(judged_env, engines["a"], SEEDS, 2, SHORT)
    assert len(set(scores)) == len(SEEDS)
    assert scores[3:5] == prompt_scores(judged_env, engines["a"], SEEDS[3:5], 2, SHORT)


def test_a_version_against_itself_draws_every_prompt(engines):
    """Seeded identically, the same weights (here two engines built from one config) sample the
    same texts: only draws, even under a judge that tells every text apart. All draws never move
    the test: the seeds run out and the incumbent stays."""
    decision, match = gate_on_prompts(judged_env, engines["a"], engines["a_again"], SEEDS, 2,
                                      SHORT, SequentialGate(), batch=5)  # fmt: skip
    assert (match.wins, match.draws, match.losses) == (0, len(SEEDS), 0)
    assert decision.state == "reject" and decision.llr == 0.0
    assert "no more games" in decision.reason


def test_different_versions_separate_reproducibly_and_batches_change_nothing(engines):
    first = compare_on_prompts(judged_env, engines["b"], engines["a"], SEEDS, 2, SHORT)
    assert first.wins + first.losses > 0  # different weights give different samples
    swapped = compare_on_prompts(judged_env, engines["a"], engines["b"], SEEDS, 2, SHORT)
    assert (swapped.wins, swapped.draws, swapped.losses) == (first.losses, first.draws, first.wins)
    # played 3 prompts at a time under a gate that cannot decide, a second run gives the counts
    # of the first, one-call comparison: seeded, and a prompt's samples are its own
    never = SequentialGate(p1=0.51, alpha=0.01, beta=0.01)
    decision, batched = gate_on_prompts(judged_env, engines["b"], engines["a"], SEEDS, 2, SHORT,
                                        never, batch=3)  # fmt: skip
    assert decision.state == "reject" and "no more games" in decision.reason
    assert isinstance(batched, MatchResult) and batched.games == len(SEEDS)
    assert (batched.wins, batched.draws, batched.losses) == (first.wins, first.draws, first.losses)
