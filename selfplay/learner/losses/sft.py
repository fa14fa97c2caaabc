"""Supervised fine-tuning on chosen samples: the token negative log-likelihood.

``sft`` trains on every decision the replay holds (a warm start on reference solutions);
``expert_iteration`` (rejection-sampling fine-tuning, Llama 2's "keep the best of K") is the same
loss on the decisions the replay keeps with ``keep="best_of_group"``: the verified-correct, or
best-scored, samples of each group. Which samples are chosen is the replay's job
(``selfplay.replay.groups.best_of_group``), so the loss stays one line of arithmetic.
"""

from __future__ import annotations

from selfplay.learner.losses.base import LossOutput, TokenBatch


def sft_loss(batch: TokenBatch) -> LossOutput:
    """Mean over every real token (weighted by ``batch.weights``) of -log p(token)."""
    mask = batch.mask.to(batch.logprobs.dtype) * batch.weights[:, None].to(batch.logprobs.dtype)
    tokens = mask.sum().clamp_min(1.0)
    nll = -(batch.logprobs * mask).sum() / tokens
    return LossOutput(
        loss=nll,
        metrics={"loss/total": float(nll.detach()), "loss/nll": float(nll.detach()),
                 "sft/tokens": float(batch.mask.sum())},
    )
