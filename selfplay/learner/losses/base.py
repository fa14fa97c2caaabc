"""What a loss reads and returns: typed batches of tensors, and the loss with its metrics.

Two kinds of batch, built by the learner from what the replay sampler drew:

- ``DecisionBatch``: a policy over each decision's candidate actions (legal moves, sibling
  reasoning steps) and a value, against search targets (AlphaZero) or the candidates' Q (DPO);
- ``TokenBatch``: the tokens a policy sampled, their log-probabilities now, at sampling time and
  under a reference version, and the rewards of each sample's group (GRPO, expert iteration, SFT).

A ``Loss`` names its pure function, the batch it reads, which decisions the replay keeps for it,
and the learner-config keys it takes as keyword arguments, so the learner needs no per-loss code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar
    metrics: dict[str, float]


@dataclass
class DecisionBatch:
    """B decisions, each over up to A candidate actions (padded, masked)."""

    log_priors: torch.Tensor  # [B, A] log of the policy's prior over each decision's actions
    action_mask: torch.Tensor  # [B, A] True where an action exists
    values: torch.Tensor  # [B] value head, for the player to move
    target_policy: torch.Tensor  # [B, A] root visit distribution (0 on padding)
    target_values: torch.Tensor  # [B] final outcome for the player to move
    weights: torch.Tensor  # [B] per-decision weight (e.g. merged duplicates)
    target_q: torch.Tensor | None = None  # [B, A] each candidate's Q from the mover's view (nan: none)
    ref_log_priors: torch.Tensor | None = None  # [B, A] the priors under a reference version (DPO)


@dataclass
class TokenBatch:
    """B sampled actions of up to T tokens each (right-padded, masked)."""

    logprobs: torch.Tensor  # [B, T] log p of each sampled token under the current weights (grad)
    sample_logprobs: torch.Tensor  # [B, T] recorded when the token was sampled
    ref_logprobs: torch.Tensor | None  # [B, T] under the reference version (None: no KL term)
    mask: torch.Tensor  # [B, T] True on real tokens
    group_rewards: torch.Tensor  # [B, K] rewards of each sample's group (NaN pads smaller groups)
    group_index: torch.Tensor  # [B] long: the sample's own position in its group
    weights: torch.Tensor  # [B] per-sample weight (1 unless the replay says otherwise)


@dataclass(frozen=True)
class Loss:
    """A registry entry: ``fn(batch, **{key: learner_cfg.key for key in options})``."""

    fn: Callable[..., LossOutput]
    batch: str  # "decisions" | "tokens": which batch the learner builds
    keep: str  # which replay decisions it trains on: "searched" | "sampled" | "best_of_group"
    options: tuple[str, ...] = ()  # LearnerConfig fields passed as keyword arguments
    reference: bool = False  # needs log-probabilities under a reference version (KL)
    demonstrations: bool = False  # imitates what it is given: written solutions train it as sampled ones do (rollout.reference_mix)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the True entries of ``mask`` (0 when there are none)."""
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)
