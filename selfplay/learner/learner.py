"""The learner: one optimiser over the policy model, stepping on batches the replay sampler draws.

It owns the trainable copy of the weights. Policy versions are published from it (a state dict
and a version number) and engines on the actors load them; checkpoints are written from it.
"""

from __future__ import annotations

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


@dataclass
class MergedDecision:
    """Identical decisions of one batch, merged: one forward pass, weighted by ``count``."""

    observation: str
    actions: list[str]
    target: np.ndarray  # [A] mean visit distribution of the merged decisions
    value_target: float  # mean value target
    count: int


def merge_duplicates(batch: Batch) -> list[MergedDecision]:
    """Group decisions with the same observation and candidate actions.

    Games revisit positions constantly (every game starts from the same board), so a batch
    often holds one position many times; the loss over the merged group with weight ``count`` is
    the same as over the copies, at the price of one forward pass. Decisions without search
    statistics are left out.
    """
    groups: dict[tuple, list[int]] = {}
    for i, visits in enumerate(batch.target_visits):
        if len(visits) > 0:
            groups.setdefault((batch.observations[i], tuple(batch.actions[i])), []).append(i)
    merged = []
    for (observation, actions), rows in groups.items():
        merged.append(MergedDecision(
            observation=observation,
            actions=list(actions),
            target=np.mean([batch.target_visits[i] for i in rows], axis=0),
            value_target=float(np.mean([batch.value_targets[i] for i in rows])),
            count=len(rows),
        ))
    return merged


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
        groups = merge_duplicates(batch)
        if not groups:
            raise ValueError("batch has no decisions with search statistics")
        self.model.train()
        log_priors, values = action_log_priors(
            self.model, self.tokenizer, [g.observation for g in groups], [g.actions for g in groups]
        )
        padded, mask = pad_log_priors(log_priors)
        target = torch.zeros_like(padded)
        for row, g in enumerate(groups):
            target[row, : len(g.target)] = torch.tensor(g.target, dtype=padded.dtype)
        target_values = torch.tensor([g.value_target for g in groups], dtype=values.dtype)
        weights = torch.tensor([g.count for g in groups], dtype=values.dtype)
        out = self.loss_fn(
            padded, mask, values, target, target_values,
            value_weight=self.cfg.value_weight, weights=weights,
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
        metrics["learner/sample_version_mean"] = float(np.mean(batch.policy_versions))
        metrics["learner/unique_fraction"] = len(groups) / len(batch)
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
