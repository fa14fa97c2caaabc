"""GRPO (DeepSeekMath): group-relative advantages and a clipped, KL-regularised token loss.

Each problem is sampled k times (a group); a sample's advantage is its reward against the
group's: ``(r - mean) / (std + eps)`` (std the sample standard deviation, as DeepSeekMath and TRL
compute it), or ``r - mean`` with ``normalize_advantages=False`` (Dr. GRPO). Every token of a
sample, or of every reasoning step of an episode, carries the sample's advantage.

Per token, with ``ratio = exp(logp - logp_sampled)`` against the log-probability recorded when the
token was sampled (the replay's off-policyness is corrected by it):

    policy = max(-A * ratio, -A * clip(ratio, 1 - clip_eps, 1 + clip_eps))     (PPO clipping)
    kl     = exp(ref - logp) - (ref - logp) - 1                                 (k3 estimator)
    loss   = token mean of (policy + kl_coef * kl)

averaged over every real token of the batch (long samples count per token, as in DAPO).
"""

from __future__ import annotations

import torch

from selfplay.learner.losses.base import LossOutput, TokenBatch


def group_advantages(
    group_rewards: torch.Tensor,  # [G, K] rewards per group, NaN where a group is shorter
    *,
    normalize: bool = True,
    eps: float = 1e-4,
) -> torch.Tensor:
    """[G, K] advantages (NaN stays NaN); a group of one, or of equal rewards, gets 0."""
    valid = ~torch.isnan(group_rewards)
    count = valid.sum(-1, keepdim=True).clamp_min(1)
    filled = torch.where(valid, group_rewards, torch.zeros_like(group_rewards))
    mean = filled.sum(-1, keepdim=True) / count
    centred = torch.where(valid, group_rewards - mean, group_rewards)
    if not normalize:
        return centred
    sq = torch.where(valid, centred**2, torch.zeros_like(centred)).sum(-1, keepdim=True)
    std = torch.sqrt(sq / (count - 1).clamp_min(1))
    # A group of equal rewards (or of one sample) has nothing to prefer: 0, even with eps=0.
    flat = torch.where(valid, torch.zeros_like(centred), centred)
    return torch.where(std > 0, centred / (std + eps), flat)


def grpo_loss(
    batch: TokenBatch,
    *,
    clip_eps: float = 0.2,
    kl_coef: float = 0.04,
    normalize_advantages: bool = True,
) -> LossOutput:
    adv_all = group_advantages(batch.group_rewards, normalize=normalize_advantages)  # [B, K]
    rows = torch.arange(adv_all.shape[0], device=adv_all.device)
    advantages = adv_all[rows, batch.group_index].to(batch.logprobs.dtype)  # [B]
    mask = batch.mask.to(batch.logprobs.dtype) * batch.weights[:, None].to(batch.logprobs.dtype)
    denom = mask.sum().clamp_min(1.0)

    log_ratio = batch.logprobs - batch.sample_logprobs  # [B, T]
    ratio = torch.exp(log_ratio)
    a = advantages[:, None]
    pg_loss1 = -a * ratio
    pg_loss2 = -a * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    policy = torch.maximum(pg_loss1, pg_loss2)  # [B, T]
    per_token = policy
    kl_value = torch.zeros((), dtype=ratio.dtype)
    if batch.ref_logprobs is not None and kl_coef != 0.0:
        d = batch.ref_logprobs - batch.logprobs
        kl = torch.exp(d) - d - 1.0
        per_token = per_token + kl_coef * kl
        kl_value = (kl * mask).sum() / denom
    loss = (per_token * mask).sum() / denom

    with torch.no_grad():
        approx_kl = (((ratio - 1.0) - log_ratio) * mask).sum() / denom
        clipped = ((ratio - 1.0).abs() > clip_eps).to(mask.dtype)
        clipfrac = (clipped * mask).sum() / denom
    return LossOutput(
        loss=loss,
        metrics={
            "loss/total": float(loss.detach()),
            "loss/policy": float(((policy * mask).sum() / denom).detach()),
            "loss/kl_ref": float(kl_value.detach()),
            "grpo/approx_kl": float(approx_kl),
            "grpo/clipfrac": float(clipfrac),
            "grpo/advantage_abs_mean": float(advantages.abs().mean()),
            "grpo/zero_advantage_fraction": float((advantages == 0).to(torch.float32).mean()),
        },
    )
