"""Learner losses as pure functions over tensors, chosen by name from ``LOSSES``.

Every loss takes the policy's outputs for a batch of decisions and the targets the replay
sampler drew, and returns the scalar to minimise with its metrics. Decisions have different
numbers of candidate actions (legal moves, sampled reasoning steps), so action-shaped tensors are
padded to the widest decision in the batch and carry a mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar
    metrics: dict[str, float]


def pad_log_priors(log_priors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-decision log-priors into ``[B, A]`` (padding 0) and a validity mask ``[B, A]``."""
    width = max(int(lp.numel()) for lp in log_priors)
    padded = log_priors[0].new_zeros((len(log_priors), width))
    mask = torch.zeros((len(log_priors), width), dtype=torch.bool, device=padded.device)
    for row, lp in enumerate(log_priors):
        padded[row, : lp.numel()] = lp
        mask[row, : lp.numel()] = True
    return padded, mask


def alphazero_loss(
    log_priors: torch.Tensor,  # [B, A] log of the policy's prior over each decision's actions
    action_mask: torch.Tensor,  # [B, A] True where an action exists
    values: torch.Tensor,  # [B] value head, for the player to move
    target_policy: torch.Tensor,  # [B, A] root visit distribution (0 on padding)
    target_values: torch.Tensor,  # [B] final outcome for the player to move
    *,
    value_weight: float = 1.0,
    weights: torch.Tensor | None = None,  # [B] per-decision weight (e.g. merged duplicates)
) -> LossOutput:
    """Cross-entropy of the prior against the search's visit distribution plus value MSE,
    averaged over decisions (weighted when ``weights`` is given).

    Weight decay, the third AlphaZero term, is applied by the optimiser (AdamW, decoupled).
    """
    w = torch.ones_like(values) if weights is None else weights.to(values.dtype)
    w = w / w.sum()
    # Padding entries are zeroed before the product so 0 * -inf never turns into NaN.
    safe_log_priors = torch.where(action_mask, log_priors, torch.zeros_like(log_priors))
    policy_loss = -(w * (target_policy * safe_log_priors).sum(dim=-1)).sum()
    value_loss = (w * (values - target_values) ** 2).sum()
    # The entropy of the targets is the floor of the cross-entropy: reporting the gap (a KL)
    # shows how far the prior is from the search, independent of how peaked the search is.
    target_entropy = -(w * (target_policy * torch.log(target_policy.clamp_min(1e-12))).sum(-1)).sum()
    loss = policy_loss + value_weight * value_loss
    return LossOutput(
        loss=loss,
        metrics={
            "loss/total": float(loss.detach()),
            "loss/policy_ce": float(policy_loss.detach()),
            "loss/policy_kl": float((policy_loss - target_entropy).detach()),
            "loss/value_mse": float(value_loss.detach()),
        },
    )


def expert_iteration_loss(
    log_priors: torch.Tensor,
    action_mask: torch.Tensor,
    values: torch.Tensor,
    target_policy: torch.Tensor,
    target_values: torch.Tensor,
    *,
    value_weight: float = 1.0,
    weights: torch.Tensor | None = None,
) -> LossOutput:
    """Imitate the search's most-visited action only (expert iteration / rejection sampling's
    'keep the best'): the AlphaZero loss against a one-hot target."""
    best = torch.where(action_mask, target_policy, torch.full_like(target_policy, -1.0)).argmax(-1)
    one_hot = torch.nn.functional.one_hot(best, target_policy.shape[-1]).to(target_policy.dtype)
    return alphazero_loss(
        log_priors, action_mask, values, one_hot, target_values, value_weight=value_weight,
        weights=weights,
    )


LossFn = Callable[..., LossOutput]

LOSSES: dict[str, LossFn] = {
    "alphazero": alphazero_loss,
    "expert_iteration": expert_iteration_loss,
}


def get_loss(name: str) -> LossFn:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"learner.loss={name!r}: known losses are {sorted(LOSSES)}") from None
