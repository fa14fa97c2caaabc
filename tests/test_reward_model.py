"""Reward model: the Bradley–Terry-with-margin loss on hand-computed values, a tiny model that
learns a synthetic preference (held-out accuracy), preference pairs from a verifier and a judge,
and a save/load round trip."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from selfplay.feedback.base import Feedback, build_feedback
from selfplay.feedback.config import FeedbackConfig, FeedbackSourceConfig
from selfplay.feedback.process_reward import PrefixScorer
from selfplay.feedback.reward_model import (
    REWARD_HEAD_FILE,
    PreferencePair,
    RewardModel,
    RewardModelFeedback,
    accuracy,
    bradley_terry_loss,
    build_reward_model,
    pairs_from_judge,
    pairs_from_verifier,
    train_reward_model,
)
from selfplay.policy.config import PolicyConfig

TINY = PolicyConfig(
    hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64, max_seq_len=32
)


# ---- the loss ----------------------------------------------------------------------------------


def _t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def test_bradley_terry_loss_known_values():
    # -log sigmoid(1 - 0 - 0) = log(1 + e^-1)
    assert bradley_terry_loss(_t(1.0), _t(0.0), _t(0.0)).item() == pytest.approx(
        math.log(1 + math.exp(-1))
    )
    # a margin of 0.5 leaves a gap of 0.5: log(1 + e^-0.5)
    assert bradley_terry_loss(_t(1.0), _t(0.0), _t(0.5)).item() == pytest.approx(
        math.log(1 + math.exp(-0.5))
    )
    # equal rewards, no margin: log 2; no margin given means margin 0
    assert bradley_terry_loss(_t(3.0), _t(3.0)).item() == pytest.approx(math.log(2))
    # the mean over the batch
    want = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1))) / 2
    assert bradley_terry_loss(_t(2.0, 0.0), _t(0.0, 1.0), _t(0.0, 0.0)).item() == pytest.approx(
        want
    )
    # a huge wrong-way gap stays finite (logsigmoid, not log(sigmoid))
    assert bradley_terry_loss(_t(-1000.0), _t(1000.0), _t(0.0)).item() == pytest.approx(2000.0)


def test_bradley_terry_gradient_signs_and_margin():
    r_c = _t(1.0, -0.5).requires_grad_()
    r_r = _t(0.0, 0.5).requires_grad_()
    bradley_terry_loss(r_c, r_r, _t(0.3, 0.0)).backward()
    assert torch.all(r_c.grad < 0)  # descending raises the chosen reward
    assert torch.all(r_r.grad > 0)  # and lowers the rejected one
    # gradient magnitude: d/dr_c = -sigmoid(-(gap - m)) / B
    assert r_c.grad[0].item() == pytest.approx(-torch.sigmoid(_t(-0.7)).item() / 2)
    # a larger margin never lowers the loss
    base = bradley_terry_loss(_t(1.0), _t(0.0), _t(0.0))
    assert bradley_terry_loss(_t(1.0), _t(0.0), _t(1.0)) > base


def test_bradley_terry_shape_errors():
    with pytest.raises(ValueError, match="expected three equal"):
        bradley_terry_loss(_t(1.0, 2.0), _t(0.0), _t(0.0))
    with pytest.raises(ValueError, match="expected three equal"):
        bradley_terry_loss(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 2))


# ---- learning a synthetic preference -----------------------------------------------------------


def _synthetic_pairs(rng: np.random.Generator, n: int, exclude: set[str]) -> list[PreferencePair]:
    """Prompt "n=<digits>" (noise); two 8-letter responses over "abcd"; the one with more 'a's is
    preferred (ties skipped). Responses in ``exclude`` are never used (held-out disjointness)."""
    out: list[PreferencePair] = []
    while len(out) < n:
        prompt = "n=" + "".join(rng.choice(list("0123456789"), size=rng.integers(1, 5)))
        a, b = ("".join(rng.choice(list("abcd"), size=8)) for _ in range(2))
        if a.count("a") == b.count("a") or a in exclude or b in exclude:
            continue
        chosen, rejected = (a, b) if a.count("a") > b.count("a") else (b, a)
        gap = chosen.count("a") - rejected.count("a")
        out.append(PreferencePair(prompt, chosen, rejected, margin=0.1 * gap))
    return out


@pytest.fixture(scope="module")
def trained():
    """A tiny reward model trained once for the tests below (seconds, not minutes)."""
    train = _synthetic_pairs(np.random.default_rng(0), 400, exclude=set())
    seen = {p.chosen for p in train} | {p.rejected for p in train}
    held_out = _synthetic_pairs(np.random.default_rng(1), 200, exclude=seen)
    model, tokenizer = build_reward_model(TINY)
    before = accuracy(model, held_out)
    start = time.perf_counter()
    metrics = train_reward_model(model, tokenizer, train, steps=30, batch_size=32, lr=5e-3, seed=0)
    seconds = time.perf_counter() - start
    return model, tokenizer, train, held_out, metrics, before, seconds


def test_reward_model_learns_a_held_out_preference(trained):
    model, _, train, held_out, metrics, before, seconds = trained
    assert not ({p.chosen for p in held_out} & {p.chosen for p in train})  # disjoint
    held = accuracy(model, held_out)
    print(
        f"\nreward model: held-out accuracy {held:.3f} (before training {before:.3f}), "
        f"train {metrics.train_accuracy:.3f}, loss {metrics.loss:.4f}, "
        f"{metrics.steps} steps in {metrics.seconds:.1f}s ({seconds:.1f}s with the accuracy pass)"
    )
    assert held >= 0.9
    assert metrics.loss < math.log(2)  # better than a coin


def test_rewards_are_a_batch_of_floats_and_batch_size_does_not_matter(trained):
    model = trained[0]
    prompts, responses = ["n=1", "n=22", "n=3"], ["aaaaaaaa", "bbbbbbbb", ""]
    r1 = model.rewards(prompts, responses, batch_size=1)
    r3 = model.rewards(prompts, responses, batch_size=3)
    assert r1.shape == (3,) and r1.dtype == np.float64
    np.testing.assert_allclose(r1, r3, atol=1e-5)  # padding is masked
    assert r1[0] > r1[1]  # all 'a' beats no 'a'


def test_save_load_round_trip_gives_identical_rewards(trained, tmp_path):
    model = trained[0]
    prompts, responses = ["n=7", "n=88"], ["abcaaaad", "dddcbbba"]
    target = tmp_path / "rm"
    model.save(target)
    assert (target / REWARD_HEAD_FILE).exists() and (target / "config.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # atomic: no leftovers
    loaded, _tokenizer = RewardModel.load(target)
    np.testing.assert_array_equal(
        loaded.rewards(prompts, responses), model.rewards(prompts, responses)
    )
    # and through the config path, as a Feedback
    cfg = FeedbackConfig(sources=[FeedbackSourceConfig(kind="reward_model", path=str(target))])
    ((source, _weight),) = build_feedback(cfg, engine_factory=None)
    assert isinstance(source, RewardModelFeedback) and isinstance(source, Feedback)
    np.testing.assert_array_equal(
        source.score(prompts, responses), model.rewards(prompts, responses)
    )
    # a process reward over prefixes, from the same reward model
    steps = PrefixScorer(source).score_steps("n=7", ["aa", "aa", "bb"])
    assert steps.shape == (3,)


def test_loading_a_directory_without_a_reward_head_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved RewardModel"):
        RewardModel.load(tmp_path)


def test_an_overlong_response_is_cut_to_the_context(trained):
    model = trained[0]
    assert len(model.encode("n=1", "a" * 500)) == TINY.max_seq_len
    assert model.rewards(["n=1"], ["a" * 500]).shape == (1,)


# ---- where pairs come from ---------------------------------------------------------------------


def test_pairs_from_verifier():
    prompts = ["p1", "p1", "p1", "p1", "p2", "p2", "p3"]
    responses = ["right", "wrong", "wrong", "half", "a", "b", "only"]
    rewards = [1.0, 0.0, 0.0, 0.5, 1.0, 1.0, 0.0]
    pairs = pairs_from_verifier(prompts, responses, rewards, margin_scale=2.0)
    got = {(p.prompt, p.chosen, p.rejected, p.margin) for p in pairs}
    # the duplicate "wrong" counts once; p2 has no reward gap; p3 has one response
    assert got == {
        ("p1", "right", "wrong", 2.0),
        ("p1", "right", "half", 1.0),
        ("p1", "half", "wrong", 1.0),
    }
    assert len(pairs_from_verifier(prompts, responses, rewards, min_gap=0.5)) == 1
    capped = pairs_from_verifier(prompts, responses, rewards, max_pairs_per_prompt=2, seed=3)
    assert len(capped) == 2 and all(p.prompt == "p1" for p in capped)
    with pytest.raises(ValueError, match="rewards"):
        pairs_from_verifier(["p"], ["r"], [1.0, 0.0])


def test_pairs_from_judge_orients_pairs_and_drops_near_ties():
    class Scripted:
        def compare(self, prompts, a, b):
            return np.array([0.9, 0.2, 0.55, 0.5])

    pairs = pairs_from_judge(
        Scripted(),
        ["q"] * 4,
        ["a1", "a2", "a3", "a4"],
        ["b1", "b2", "b3", "b4"],
        min_confidence=0.1,
    )
    assert [(p.chosen, p.rejected) for p in pairs] == [("a1", "b1"), ("b2", "a2")]
    assert [p.margin for p in pairs] == pytest.approx([0.8, 0.6])
