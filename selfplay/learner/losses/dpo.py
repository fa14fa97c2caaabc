"""DPO on sibling actions: at each searched decision, the candidate the search valued most is
preferred to the one it valued least, when their Q values differ by at least a margin.

The pair comes from one tree, so it shares its state: the two candidates are sibling reasoning
steps under the same prefix, or two moves from the same position. Their log-probabilities are
the policy's priors over the decision's candidates (``action_log_priors``); the normaliser over
the candidates is common to both, so it cancels in the difference DPO takes, and the loss is
exactly DPO's on the two sequences (Rafailov et al., 2023):

    -log sigmoid(beta * ((log pi(w) - log pi(l)) - (log ref(w) - log ref(l))))

``value_weight`` keeps the value head regressing to the outcome as AlphaZero's loss does: it
guides the next search, and preferences alone would leave it untrained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfplay.learner.losses.base import DecisionBatch, LossOutput


def preference_pairs(batch: DecisionBatch, margin: float) -> tuple[torch.Tensor, torch.Tensor,
                                                                   torch.Tensor]:
    """(chosen [B], rejected [B], valid [B]): per decision the index of the candidate with the
    highest and the lowest Q among those the search visited (target > 0, Q known); a row is
    valid when the two differ by at least ``margin``."""
    known = batch.action_mask & (batch.target_policy > 0)
    if batch.target_q is not None:
        known &= torch.isfinite(batch.target_q)
        q = torch.nan_to_num(batch.target_q.detach(), nan=0.0)
    else:
        q = torch.zeros_like(batch.log_priors)
        known &= False
    inf = torch.tensor(float("inf"), dtype=q.dtype)
    chosen = torch.where(known, q, -inf).argmax(dim=-1)
    rejected = torch.where(known, q, inf).argmin(dim=-1)
    gap = q.gather(1, chosen[:, None]).squeeze(1) - q.gather(1, rejected[:, None]).squeeze(1)
    valid = (known.sum(dim=-1) >= 2) & (gap >= margin) & (chosen != rejected)
    return chosen, rejected, valid


def dpo_loss(batch: DecisionBatch, *, dpo_beta: float = 0.1, dpo_margin: float = 0.1,
             value_weight: float = 1.0) -> LossOutput:
    """DPO over each decision's best and worst visited candidates by Q, plus value MSE; decisions
    weighted by ``batch.weights`` (normalised over the decisions that form a pair)."""
    if batch.ref_log_priors is None:
        raise ValueError("dpo needs the priors under a reference version (ref_log_priors)")
    w = batch.weights.to(batch.values.dtype)
    chosen, rejected, valid = preference_pairs(batch, dpo_margin)

    def pick(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return t.gather(1, index[:, None]).squeeze(1)

    policy_margin = pick(batch.log_priors, chosen) - pick(batch.log_priors, rejected)
    ref_margin = pick(batch.ref_log_priors, chosen) - pick(batch.ref_log_priors, rejected)
    logits = dpo_beta * (policy_margin - ref_margin.detach())
    pair_w = torch.where(valid, w, torch.zeros_like(w))
    # Rows without a pair contribute 0 (not NaN: -logsigmoid of a padding row is finite anyway).
    dpo = (pair_w * -F.logsigmoid(logits)).sum() / pair_w.sum().clamp_min(1e-12)
    value_loss = ((w / w.sum()) * (batch.values - batch.target_values) ** 2).sum()
    loss = dpo + value_weight * value_loss
    pairs = valid.to(w.dtype)
    accuracy = ((logits > 0).to(w.dtype) * pairs).sum() / pairs.sum().clamp_min(1.0)
    return LossOutput(
        loss=loss,
        metrics={
            "loss/total": float(loss.detach()),
            "loss/dpo": float(dpo.detach()),
            "loss/dpo_pair_fraction": float(pairs.mean()),
            "loss/dpo_reward_accuracy": float(accuracy),
            "loss/value_mse": float(value_loss.detach()),
        },
    )
