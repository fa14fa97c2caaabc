"""GRPO, SFT and expert iteration on numbers checked by hand; the token batch the learner builds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selfplay.learner.losses import LOSSES, TokenBatch, group_advantages, grpo_loss, sft_loss


def tokens(logprobs, sample, ref=None, mask=None, rewards=((1.0, 0.0),), index=(0,)):
    lp = torch.tensor(logprobs, dtype=torch.float32)
    return TokenBatch(
        logprobs=lp,
        sample_logprobs=torch.tensor(sample, dtype=torch.float32),
        ref_logprobs=None if ref is None else torch.tensor(ref, dtype=torch.float32),
        mask=torch.ones_like(lp, dtype=torch.bool) if mask is None else torch.tensor(mask),
        group_rewards=torch.tensor(rewards, dtype=torch.float32),
        group_index=torch.tensor(index),
        weights=torch.ones(lp.shape[0]),
    )


def test_group_advantages_by_hand():
    # group (1, 0, 0, 1): mean 0.5, sample std sqrt(4 * 0.25 / 3) = 0.57735
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]), eps=0.0)
    assert adv[0].tolist() == pytest.approx([0.8660254, -0.8660254, -0.8660254, 0.8660254], rel=1e-5)
    centred = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]), normalize=False)
    assert centred[0].tolist() == [0.5, -0.5, -0.5, 0.5]


def test_group_advantages_padding_equal_rewards_and_singletons():
    rewards = torch.tensor([[0.0, 1.0, float("nan")], [1.0, 1.0, 1.0], [0.5, float("nan"), float("nan")]])
    adv = group_advantages(rewards, eps=0.0)
    # group 0 has two samples: mean 0.5, std sqrt(0.5) -> +-0.7071; its padding stays NaN
    assert adv[0, :2].tolist() == pytest.approx([-0.70710678, 0.70710678], rel=1e-5)
    assert math.isnan(float(adv[0, 2]))
    assert adv[1].tolist() == [0.0, 0.0, 0.0]  # nothing to prefer in a group of equals
    assert float(adv[2, 0]) == 0.0  # a group of one teaches nothing


def test_grpo_clipped_loss_with_kl_by_hand():
    # One group of two samples, rewards (1, 0): advantages (+1/sqrt(2)*sqrt(2)...) computed below.
    # Sample 0 (A > 0): token ratios e^0.5 = 1.6487 (clipped to 1.2) and e^-0.5 = 0.6065 (kept).
    # Sample 1 (A < 0): ratio e^0.1 = 1.1052 (inside the clip range).
    lp = [[-1.0, -2.0], [-0.9, 0.0]]
    old = [[-1.5, -1.5], [-1.0, 0.0]]
    ref = [[-1.0, -1.0], [-1.0, 0.0]]
    mask = [[True, True], [True, False]]
    batch = tokens(lp, old, ref, mask, rewards=((1.0, 0.0), (1.0, 0.0)), index=(0, 1))
    out = grpo_loss(batch, clip_eps=0.2, kl_coef=0.1)
    a = 1 / (math.sqrt(0.5) + 1e-4) * 0.5  # (r - mean) / (std + eps), std of (1, 0) = sqrt(0.5)
    pg = [
        max(-a * math.exp(0.5), -a * 1.2),  # clipped: min of the two gains
        max(-a * math.exp(-0.5), -a * 0.8),  # ratio 0.6065 < 0.8: the unclipped term is larger
        max(a * math.exp(0.1), a * min(math.exp(0.1), 1.2)),
    ]

    def k3(ref_, lp_):
        d = ref_ - lp_
        return math.exp(d) - d - 1

    kl = [k3(-1.0, -1.0), k3(-1.0, -2.0), k3(-1.0, -0.9)]
    expected = sum(p + 0.1 * k for p, k in zip(pg, kl)) / 3
    assert float(out.loss) == pytest.approx(expected, rel=1e-5)
    assert out.metrics["loss/kl_ref"] == pytest.approx(sum(kl) / 3, rel=1e-5)
    assert out.metrics["grpo/clipfrac"] == pytest.approx(2 / 3)  # tokens 0 and 1 of sample 0


def test_grpo_gradient_raises_the_better_sample():
    logits = torch.zeros(2, 1, 3, requires_grad=True)
    lp = torch.log_softmax(logits, -1)[..., 0]  # both samples drew token 0
    batch = tokens([[0.0], [0.0]], [[math.log(1 / 3)]] * 2, None, None,
                   rewards=((1.0, 0.0), (1.0, 0.0)), index=(0, 1))
    batch.logprobs = lp
    grpo_loss(batch, kl_coef=0.0).loss.backward()
    assert logits.grad[0, 0, 0] < 0 < logits.grad[1, 0, 0]  # rewarded sample up, other down


def test_sft_loss_is_token_mean_nll():
    out = sft_loss(tokens([[-1.0, -3.0], [-2.0, 0.0]], [[0, 0], [0, 0]],
                          mask=[[True, True], [True, False]]))
    assert float(out.loss) == pytest.approx((1 + 3 + 2) / 3)
    assert out.metrics["sft/tokens"] == 3


def test_expert_iteration_trains_on_the_best_of_each_group():
    """The expert-iteration targets of a known group: only its verified-correct samples."""
    from selfplay.replay.groups import best_of_group
    from selfplay.replay.sampler import ReplaySampler
    from selfplay.types import Episode, SampledTokens, Step

    assert LOSSES["expert_iteration"].keep == "best_of_group"
    assert LOSSES["expert_iteration"].fn is sft_loss
    rewards = [0.0, 1.0, 0.0, 1.0]
    assert best_of_group(np.array(rewards)).tolist() == [False, True, False, True]
    episodes = [Episode(f"e{i}", "x", 0, 0, [Step("q", f"a{i}", 0, r, tokens=SampledTokens(
        [1, 2], [-0.5, -0.5], 0))], r, 0.0, 1.0, group_id="g") for i, r in enumerate(rewards)]
    sampler = ReplaySampler(keep="best_of_group")
    sampler.add(episodes)
    batch = sampler.sample(32, 0)
    assert set(batch.chosen) == {"a1", "a3"}


def test_token_batch_logprobs_match_the_engine():
    """The learner's log-probabilities of sampled tokens equal those the engine recorded."""
    from selfplay.learner.batches import token_batch
    from selfplay.policy.config import EngineConfig, PolicyConfig
    from selfplay.policy.engine import SamplingParams
    from selfplay.policy.model import build_policy
    from selfplay.policy.torch_engine import TorchEngine
    from selfplay.replay.sampler import ReplaySampler
    from selfplay.textgen.rollout import prompt_of
    from selfplay.types import Episode, SampledTokens, Step

    model, tok = build_policy(PolicyConfig(hidden_size=32, num_layers=1, num_heads=2,
                                           num_kv_heads=1, intermediate_size=64))
    engine = TorchEngine(model, tok, EngineConfig())
    (comps,) = engine.generate([prompt_of("What is 2 + 3?")],
                               SamplingParams(n=3, max_tokens=12, seed=1))
    episodes = [Episode(f"e{i}", "x", 0, 0, [Step("What is 2 + 3?", c.text, 0, float(i == 0),
                tokens=SampledTokens(c.token_ids, c.logprobs, 0))], float(i == 0), 0.0, 1.0,
                group_id="g") for i, c in enumerate(comps)]
    sampler = ReplaySampler(keep="sampled")
    sampler.add(episodes)
    batch = sampler.sample(6, 0)
    tb, _ = token_batch(model, tok, batch, None)
    for row in range(len(batch)):
        n = len(batch.token_ids[row])
        assert tb.logprobs[row, :n].tolist() == pytest.approx(batch.sample_logprobs[row].tolist(), abs=2e-4)
        assert not tb.mask[row, n:].any()
