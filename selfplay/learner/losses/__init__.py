"""The loss registry: ``learner.loss`` names one entry; each is a small pure function in its own
file, over a typed batch (``base.DecisionBatch`` or ``base.TokenBatch``)."""

from __future__ import annotations

from selfplay.learner.losses.alphazero import alphazero_loss, pad_log_priors
from selfplay.learner.losses.base import DecisionBatch, Loss, LossOutput, TokenBatch
from selfplay.learner.losses.dpo import dpo_loss, preference_pairs
from selfplay.learner.losses.grpo import group_advantages, grpo_loss
from selfplay.learner.losses.sft import sft_loss

LOSSES: dict[str, Loss] = {
    "alphazero": Loss(alphazero_loss, batch="decisions", keep="searched", options=("value_weight",)),
    "grpo": Loss(grpo_loss, batch="tokens", keep="sampled",
                 options=("clip_eps", "kl_coef", "normalize_advantages"), reference=True),
    "expert_iteration": Loss(sft_loss, batch="tokens", keep="best_of_group", demonstrations=True),
    "sft": Loss(sft_loss, batch="tokens", keep="sampled", demonstrations=True),
    "dpo": Loss(dpo_loss, batch="decisions", keep="searched",
                options=("dpo_beta", "dpo_margin", "value_weight"), reference=True),
}

# What "auto" resolves to: AlphaZero for games (search targets), GRPO for text tasks.
DEFAULT_LOSS = {"game": "alphazero", "text": "grpo"}


def get_loss(name: str) -> Loss:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"learner.loss={name!r}: known losses are {sorted(LOSSES)}") from None


__all__ = ["DEFAULT_LOSS", "LOSSES", "DecisionBatch", "Loss", "LossOutput", "TokenBatch",
           "alphazero_loss", "dpo_loss", "get_loss", "group_advantages", "grpo_loss",
           "pad_log_priors", "preference_pairs", "sft_loss"]
