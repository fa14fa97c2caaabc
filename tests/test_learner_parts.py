"""Learner losses on hand-computed values, cadences, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from selfplay.learner.cadence import Cadence
from selfplay.learner.losses import DecisionBatch, alphazero_loss, get_loss, pad_log_priors


def az(log_priors, mask, values, target, target_values, *, value_weight=1.0, weights=None):
    """The AlphaZero loss on a DecisionBatch of these tensors."""
    w = torch.ones_like(values) if weights is None else weights
    return alphazero_loss(DecisionBatch(log_priors, mask, values, target, target_values, w),
                          value_weight=value_weight)


def test_alphazero_loss_hand_computed():
    # decision 0: two actions, prior (0.25, 0.75), target (0.5, 0.5)
    # decision 1: three actions, prior uniform, target (1, 0, 0)
    log_priors, mask = pad_log_priors(
        [torch.log(torch.tensor([0.25, 0.75])), torch.log(torch.full((3,), 1 / 3))]
    )
    target = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    values = torch.tensor([0.5, -1.0])
    target_values = torch.tensor([1.0, 0.0])
    out = az(log_priors, mask, values, target, target_values, value_weight=2.0)
    ce0 = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    ce1 = -math.log(1 / 3)
    policy = (ce0 + ce1) / 2
    value = ((0.5 - 1.0) ** 2 + (-1.0 - 0.0) ** 2) / 2
    assert out.metrics["loss/policy_ce"] == pytest.approx(policy, rel=1e-6)
    assert out.metrics["loss/value_mse"] == pytest.approx(value, rel=1e-6)
    assert float(out.loss) == pytest.approx(policy + 2.0 * value, rel=1e-6)
    kl = policy - (math.log(2) + 0.0) / 2
    assert out.metrics["loss/policy_kl"] == pytest.approx(kl, rel=1e-5)


def test_padding_with_minus_inf_never_gives_nan():
    log_priors = torch.tensor([[0.0, -float("inf")]])
    mask = torch.tensor([[True, False]])
    out = az(log_priors, mask, torch.zeros(1), torch.tensor([[1.0, 0.0]]), torch.zeros(1))
    assert torch.isfinite(out.loss)


def test_alphazero_gradient_moves_prior_toward_target():
    logits = torch.zeros(1, 3, requires_grad=True)
    target = torch.tensor([[0.0, 1.0, 0.0]])
    out = az(torch.log_softmax(logits, -1), torch.ones(1, 3, dtype=torch.bool),
             torch.zeros(1), target, torch.zeros(1))
    out.loss.backward()
    assert logits.grad[0, 1] < 0 < logits.grad[0, 0]


def test_unknown_loss_lists_known_ones():
    with pytest.raises(ValueError, match="alphazero"):
        get_loss("ppo-typo")


@pytest.mark.parametrize(
    "text, steps, seconds",
    [("500steps", 500, 0.0), ("1step", 1, 0.0), ("30s", 0, 30.0), ("15m", 0, 900.0),
     ("2h", 0, 7200.0), ("7d", 0, 604800.0), ("1w", 0, 604800.0), ("1.5h", 0, 5400.0)],
)
def test_cadence_parse(text, steps, seconds):
    cadence = Cadence.parse(text)
    assert (cadence.every_steps, cadence.every_seconds) == (steps, seconds)


@pytest.mark.parametrize("text", ["", "weekly", "0steps", "1.5steps", "-3d", "10 years"])
def test_cadence_rejects_garbage(text):
    with pytest.raises(ValueError, match="publish_every"):
        Cadence.parse(text, key="publish_every")


def test_cadence_due():
    assert not Cadence.parse("10steps").due(9, 1e9)
    assert Cadence.parse("10steps").due(10, 0.0)
    assert not Cadence.parse("7d").due(10**9, 604799.0)
    assert Cadence.parse("7d").due(0, 604800.0)


def test_weighted_loss_equals_loss_over_duplicates():
    lp = torch.log_softmax(torch.tensor([[0.3, -0.2, 0.1], [1.0, 0.0, -1.0]]), -1)
    mask = torch.ones(2, 3, dtype=torch.bool)
    target = torch.tensor([[0.2, 0.5, 0.3], [0.9, 0.1, 0.0]])
    v, z = torch.tensor([0.1, -0.4]), torch.tensor([1.0, -1.0])
    merged = az(lp, mask, v, target, z, weights=torch.tensor([3.0, 1.0]))
    rows = torch.tensor([0, 0, 0, 1])
    copies = az(lp[rows], mask[rows], v[rows], target[rows], z[rows])
    assert float(merged.loss) == pytest.approx(float(copies.loss), rel=1e-6)


def test_merge_duplicates_groups_same_position():
    import numpy as np

    from selfplay.learner.learner import merge_duplicates
    from selfplay.replay.sampler import Batch

    obs = ["a", "b", "a", "c"]
    visits = [np.array([1.0, 0.0]), np.array([0.5, 0.5]), np.array([0.0, 1.0]), np.array([])]
    batch = Batch(obs, [["1", "2"]] * 4, visits, np.array([1.0, 0.0, -1.0, 0.0], np.float32),
                  np.zeros(4, np.int64), ["1"] * 4, np.zeros(4, np.int32),
                  np.zeros(4, np.float32), [("e", i) for i in range(4)], np.ones(4))
    groups = {g.observation: g for g in merge_duplicates(batch)}
    assert set(groups) == {"a", "b"}  # "c" has no search statistics
    assert groups["a"].count == 2 and groups["a"].value_target == 0.0
    assert groups["a"].target.tolist() == [0.5, 0.5]
