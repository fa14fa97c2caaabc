"""The learner: one optimiser over the policy model, stepping on batches the replay sampler draws.

It owns the trainable copy of the weights. Policy versions are published from it (a state dict
and a version number) and engines on the actors load them; checkpoints are written from it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from selfplay.learner.config import LearnerConfig
from selfplay.learner.losses import get_loss, pad_log_priors
from selfplay.policy.model import PolicyModel, action_log_priors
from selfplay.replay.sampler import Batch


@dataclass
class StepResult:
    step: int
    metrics: dict[str, float]
    seconds: float


def warmup_schedule(warmup_steps: int):
    """Linear warm-up to the base learning rate, then constant (online training has no end)."""

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / max(1, warmup_steps))

    return factor


class Learner:
    def __init__(self, model: PolicyModel, tokenizer: Any, cfg: LearnerConfig):
        self.model = model
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.loss_fn = get_loss(cfg.loss)
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_schedule(cfg.warmup_steps)
        )
        self.step = 0

    def train_step(self, batch: Batch) -> StepResult:
        """One optimiser step on ``batch``; decisions without search targets are skipped."""
        start = time.perf_counter()
        keep = [i for i, t in enumerate(batch.target_visits) if len(t) > 0]
        if not keep:
            raise ValueError("batch has no decisions with search statistics")
        self.model.train()
        log_priors, values = action_log_priors(
            self.model,
            self.tokenizer,
            [batch.observations[i] for i in keep],
            [batch.actions[i] for i in keep],
        )
        padded, mask = pad_log_priors(log_priors)
        target = torch.zeros_like(padded)
        for row, i in enumerate(keep):
            visits = torch.tensor(batch.target_visits[i], dtype=padded.dtype)
            target[row, : visits.numel()] = visits
        target_values = torch.as_tensor(
            np.asarray(batch.value_targets)[keep], dtype=values.dtype
        )
        out = self.loss_fn(
            padded, mask, values, target, target_values, value_weight=self.cfg.value_weight
        )
        if not torch.isfinite(out.loss):
            # A non-finite loss would poison the weights every actor is about to load.
            self.optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(f"non-finite loss at learner step {self.step}: {out.metrics}")
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.model.eval()
        metrics = dict(out.metrics)
        metrics["learner/grad_norm"] = float(grad_norm)
        metrics["learner/lr"] = float(self.scheduler.get_last_lr()[0])
        ages = batch.policy_versions[keep]
        metrics["learner/sample_version_mean"] = float(np.mean(ages)) if len(ages) else math.nan
        return StepResult(self.step, metrics, time.perf_counter() - start)

    def weights(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the weights to publish (what ``Engine.load_weights`` takes)."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def optimizer_state(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
        }

    def load_optimizer_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
