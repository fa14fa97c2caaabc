"""The AlphaZero loss: cross-entropy of the prior against the search's visits, plus value MSE."""

from __future__ import annotations

import torch

from selfplay.learner.losses.base import DecisionBatch, LossOutput


def pad_log_priors(log_priors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-decision log-priors into ``[B, A]`` (padding 0) and a validity mask ``[B, A]``."""
    width = max(int(lp.numel()) for lp in log_priors)
    padded = log_priors[0].new_zeros((len(log_priors), width))
    mask = torch.zeros((len(log_priors), width), dtype=torch.bool, device=padded.device)
    for row, lp in enumerate(log_priors):
        padded[row, : lp.numel()] = lp
        mask[row, : lp.numel()] = True
    return padded, mask


def alphazero_loss(batch: DecisionBatch, *, value_weight: float = 1.0) -> LossOutput:
    """Cross-entropy of the prior against the search's visit distribution plus value MSE,
    averaged over decisions with ``batch.weights``.

    The weights are per decision: merged duplicates count as many draws, and prioritised replay's
    importance-sampling weights scale each draw (replay/sampler.py), so the average estimates the
    loss under uniform draws. Dividing by their sum keeps the loss on the scale of a uniform batch
    (the learning rate means the same whether the replay draws by priority or not).

    Weight decay, the third AlphaZero term, is applied by the optimiser (AdamW, decoupled).
    """
    w = batch.weights.to(batch.values.dtype)
    w = w / w.sum()
    # Padding entries are zeroed before the product so 0 * -inf never turns into NaN.
    safe = torch.where(batch.action_mask, batch.log_priors, torch.zeros_like(batch.log_priors))
    target = batch.target_policy
    policy_loss = -(w * (target * safe).sum(dim=-1)).sum()
    value_loss = (w * (batch.values - batch.target_values) ** 2).sum()
    # The entropy of the targets is the floor of the cross-entropy: reporting the gap (a KL)
    # shows how far the prior is from the search, independent of how peaked the search is.
    target_entropy = -(w * (target * torch.log(target.clamp_min(1e-12))).sum(-1)).sum()
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
