"""DPO on sibling actions: the pairs a tree gives, the loss on hand-computed values, and a learner
step that moves the policy toward the better sibling, for reasoning steps and game moves alike."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selfplay.learner.config import LearnerConfig
from selfplay.learner.learner import Learner
from selfplay.learner.losses import DecisionBatch, dpo_loss, get_loss, preference_pairs
from selfplay.policy.config import PolicyConfig
from selfplay.policy.model import action_log_priors, build_policy
from selfplay.replay.sampler import ReplaySampler
from selfplay.types import Episode, SearchStats, Step


def hand_batch(q, target, ref=None) -> DecisionBatch:
    q = torch.tensor(q, dtype=torch.float32)
    log_priors = torch.log_softmax(torch.tensor([[0.0, 1.0, 2.0], [0.5, 0.0, -0.5]]), dim=-1)
    return DecisionBatch(
        log_priors=log_priors,
        action_mask=torch.tensor([[True, True, True], [True, True, False]]),
        values=torch.tensor([0.2, -0.4]),
        target_policy=torch.tensor(target, dtype=torch.float32),
        target_values=torch.tensor([1.0, -1.0]),
        weights=torch.tensor([1.0, 1.0]),
        target_q=q,
        ref_log_priors=torch.log_softmax(torch.zeros(2, 3), dim=-1) if ref is None else ref,
    )


def test_pairs_are_the_best_and_worst_visited_siblings_and_need_the_margin():
    # Row 0: the unvisited candidate 2 has the highest Q (an unvisited child's Q means nothing);
    # row 1: the two visited ones differ by 0.05, under the margin.
    batch = hand_batch(q=[[0.5, -0.3, 0.9], [0.10, 0.05, float("nan")]],
                       target=[[0.6, 0.4, 0.0], [0.5, 0.5, 0.0]])
    chosen, rejected, valid = preference_pairs(batch, margin=0.1)
    assert chosen[0] == 0 and rejected[0] == 1 and bool(valid[0])
    assert not bool(valid[1])
    _, _, valid = preference_pairs(batch, margin=0.01)
    assert bool(valid[1])


def test_dpo_loss_matches_the_formula_on_hand_values():
    batch = hand_batch(q=[[0.5, -0.3, 0.9], [0.10, 0.05, float("nan")]],
                       target=[[0.6, 0.4, 0.0], [0.5, 0.5, 0.0]])
    out = dpo_loss(batch, dpo_beta=0.5, dpo_margin=0.1, value_weight=2.0)
    lp = batch.log_priors[0]
    ref = batch.ref_log_priors[0]
    logit = 0.5 * ((lp[0] - lp[1]) - (ref[0] - ref[1]))
    expected_dpo = -math.log(1 / (1 + math.exp(-float(logit))))  # only row 0 forms a pair
    expected_value = 0.5 * ((0.2 - 1.0) ** 2 + (-0.4 + 1.0) ** 2)
    assert out.metrics["loss/dpo"] == pytest.approx(expected_dpo, rel=1e-5)
    assert out.metrics["loss/value_mse"] == pytest.approx(expected_value, rel=1e-5)
    assert float(out.loss) == pytest.approx(expected_dpo + 2.0 * expected_value, rel=1e-5)
    assert out.metrics["loss/dpo_pair_fraction"] == pytest.approx(0.5)
    # the prior prefers candidate 1 over 0 (logit < 0): the implicit reward ranks the pair wrong
    assert out.metrics["loss/dpo_reward_accuracy"] == 0.0


def test_a_batch_without_pairs_trains_the_value_alone():
    batch = hand_batch(q=[[0.0, 0.0, 0.0], [0.0, 0.0, float("nan")]],
                       target=[[0.6, 0.4, 0.0], [0.5, 0.5, 0.0]])
    batch.log_priors.requires_grad_(True)
    out = dpo_loss(batch, dpo_beta=0.1, dpo_margin=0.1)
    assert out.metrics["loss/dpo"] == 0.0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert float(batch.log_priors.grad.abs().sum()) == 0.0


def test_dpo_without_a_reference_is_refused():
    batch = hand_batch(q=[[0.5, -0.3, 0.9], [0.1, 0.0, float("nan")]],
                       target=[[0.6, 0.4, 0.0], [0.5, 0.5, 0.0]])
    batch.ref_log_priors = None
    with pytest.raises(ValueError, match="reference"):
        dpo_loss(batch)


def step_episode(prompt: str, actions: list[str], visits: list[float], q: list[float],
                 episode_id: str) -> Episode:
    """One searched decision, as a step search over sibling reasoning steps records it."""
    search = SearchStats(actions=actions, visits=visits, priors=[1 / len(actions)] * len(actions),
                         q_values=q, root_value=float(np.dot(visits, q) / sum(visits)),
                         simulations=int(sum(visits)))
    step = Step(observation=prompt, action=actions[int(np.argmax(visits))], player=0, reward=1.0,
                legal_actions=actions, search=search)
    return Episode(episode_id=episode_id, env_id="test/Steps-v0", seed=0, policy_version=0,
                   steps=[step], outcome=1.0, started_at=0.0, finished_at=1.0)


@pytest.mark.parametrize("text_decisions", [True, False])
def test_a_dpo_step_from_a_known_tree_moves_the_prior_to_the_better_sibling(text_decisions):
    """Through the replay sampler (Q stored per candidate, as the Parquet store keeps it) and the
    learner's decision batch: the sibling the tree valued most gains prior over the worst one."""
    torch.manual_seed(0)
    model, tokenizer = build_policy(PolicyConfig(hidden_size=32, num_layers=1, num_heads=2,
                                                 num_kv_heads=1, intermediate_size=64,
                                                 max_seq_len=128))
    prompt = "Compute 17 + 25.\n" if text_decisions else "board 1\n"
    actions = ["17 + 25 = 42\n", "17 + 25 = 32\n", "25 + 17 = 41\n"]
    good, bad = 0, 2
    sampler = ReplaySampler(window=64, keep="searched")
    sampler.add([step_episode(prompt, actions, visits=[5, 2, 1], q=[0.9, 0.1, -0.8],
                              episode_id="e0")])
    batch = sampler.sample(8, rng=0)
    assert [list(q) for q in batch.q_values[:1]] == [pytest.approx([0.9, 0.1, -0.8])]
    cfg = LearnerConfig(loss="dpo", lr=3e-3, warmup_steps=1, dpo_beta=1.0, dpo_margin=0.1,
                        value_weight=0.0)
    learner = Learner(model, tokenizer, cfg, text_decisions=text_decisions)
    assert get_loss("dpo").reference
    learner.set_reference()

    def margin() -> float:
        obs = learner.decisions_view(batch).observations[0]
        with torch.no_grad():
            (lp,), _ = action_log_priors(model, tokenizer, [obs], [actions])
        return float(lp[good] - lp[bad])

    before = margin()
    for _ in range(5):
        result = learner.train_step(batch)
    assert result.metrics["loss/dpo_pair_fraction"] == 1.0
    assert margin() > before + 0.1
