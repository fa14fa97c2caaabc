"""The learner: one optimiser over the policy model, stepping on batches the replay sampler draws.

It owns the trainable copy of the weights. Policy versions are published from it (a state dict
and a version number) and engines on the actors load them; checkpoints are written from it.

A step whose loss or gradient norm is not finite is skipped (no optimiser step: the weights every
actor loads next stay as they were) and counted; ``max_nonfinite_steps`` of them in a row mean
the run has diverged, and it stops with a ``NonFiniteTrainingError``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import torch

from selfplay.errors import UserError
from selfplay.learner.batches import BUILDERS, merge_duplicates, mixed_value_targets  # noqa: F401 (re-exported)
from selfplay.learner.config import LearnerConfig
from selfplay.learner.losses import Loss, get_loss
from selfplay.policy.model import PolicyModel
from selfplay.replay.sampler import Batch


@dataclass
class StepResult:
    step: int
    metrics: dict[str, float]
    seconds: float


class NonFiniteTrainingError(UserError):
    """Too many learner steps in a row had a non-finite loss or gradient norm."""


def warmup_schedule(warmup_steps: int, schedule: str = "constant", decay_steps: int = 0,
                    min_factor: float = 0.1):
    """The learning-rate factor at each step: a linear warm-up to the base rate, then constant
    (online training has no end) or a cosine from 1 down to ``min_factor`` over ``decay_steps``,
    flat at the floor after that (a long run keeps learning at the floor)."""

    def factor(step: int) -> float:
        if step + 1 < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule != "cosine":
            return 1.0
        done = min(1.0, (step + 1 - max(1, warmup_steps)) / max(1, decay_steps))
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * done))

    return factor


class Learner:
    """``loss`` overrides ``cfg.loss`` (which may be "auto", resolved by the caller).
    ``text_decisions``: searched decisions are reasoning steps of a text task, whose state the
    policy reads as ``prompt_of(observation)`` (as it samples and as step search values it)."""

    def __init__(self, model: PolicyModel, tokenizer: Any, cfg: LearnerConfig,
                 loss: str | None = None, text_decisions: bool = False):
        self.text_decisions = text_decisions
        # Reasoning steps are sampled from an open space: their own LM probabilities, not a
        # softmax over the few that were sampled (learner.step_prior).
        self.sequence_priors = text_decisions and cfg.step_prior == "sequence"
        self.model = model
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.loss: Loss = get_loss(loss or cfg.loss)
        # The KL anchor of a policy-gradient loss: a frozen copy, set by set_reference.
        self.reference: PolicyModel | None = None
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_schedule(cfg.warmup_steps, cfg.lr_schedule,
                                            cfg.lr_decay_steps, cfg.lr_min_factor)
        )
        self.step = 0
        self.nonfinite_skipped = 0  # steps skipped for a non-finite loss or gradient, in all
        self.nonfinite_streak = 0  # ... in a row, up to the last step

    def set_reference(self, weights: dict[str, torch.Tensor] | None = None) -> None:
        """Freeze ``weights`` (default: the current ones) as the reference version of the KL
        term; a loss without one ignores it."""
        if not self.loss.reference:
            return
        import copy

        if self.reference is None:
            self.reference = copy.deepcopy(self.model).eval()
            for p in self.reference.parameters():
                p.requires_grad_(False)
        if weights is not None:
            self.reference.load_state_dict(weights)
        else:
            self.reference.load_state_dict(self.model.state_dict())

    def train_step(self, batch: Batch) -> StepResult:
        """One optimiser step of the configured loss on ``batch`` (skipped when non-finite)."""
        start = time.perf_counter()
        self.model.train()
        try:
            if self.loss.batch == "decisions":
                batch = self.decisions_view(batch)
            build = BUILDERS[self.loss.batch]
            if self.sequence_priors and self.loss.batch == "decisions":
                build = partial(build, sequence_priors=True)
            inputs, extra = build(self.model, self.tokenizer, batch, self.reference)
            options = {key: getattr(self.cfg, key) for key in self.loss.options}
            out = self.loss.fn(inputs, **options)
        finally:
            self.model.eval()
        self.optimizer.zero_grad(set_to_none=True)
        grad_norm = torch.tensor(float("nan"))
        if torch.isfinite(out.loss):
            out.loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.step += 1  # a skipped step counts too: the budget and the cadences count draws
        metrics: dict[str, float] = {}
        if torch.isfinite(grad_norm):
            self.optimizer.step()
            self.scheduler.step()
            self.nonfinite_streak = 0
            metrics.update(out.metrics)
            metrics.update(extra)
            metrics["learner/grad_norm"] = float(grad_norm)
        else:
            # Applying it would poison the weights every actor is about to load: skip the step
            # (its loss metrics are left out too, so one NaN does not blank a logged mean).
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite_skipped += 1
            self.nonfinite_streak += 1
            if self.nonfinite_streak >= self.cfg.max_nonfinite_steps:
                raise NonFiniteTrainingError(
                    f"learner: {self.nonfinite_streak} consecutive steps (to step {self.step}) "
                    f"had a non-finite loss or gradient norm (last: loss={float(out.loss.detach()):g}, "
                    f"grad_norm={float(grad_norm):g}), the limit learner.max_nonfinite_steps="
                    f"{self.cfg.max_nonfinite_steps}; the run has diverged: lower learner.lr "
                    "or check the rewards and targets it trains on")
        metrics["learner/nonfinite_skipped"] = float(self.nonfinite_skipped)
        metrics["learner/lr"] = float(self.scheduler.get_last_lr()[0])
        metrics["learner/sample_version_mean"] = float(np.mean(batch.policy_versions))
        return StepResult(self.step, metrics, time.perf_counter() - start)

    def decisions_view(self, batch: Batch) -> Batch:
        """``batch`` as a decision loss reads it: a text step's state as its prompt, and value
        targets mixed with the root values (``learner.value_target_mix``)."""
        if self.text_decisions:
            from selfplay.textgen.rollout import STEP_STOP, prompt_of

            batch = replace(batch, observations=[prompt_of(o) for o in batch.observations])
            if self.sequence_priors:  # a step's probability includes ending its line
                batch = replace(batch, actions=[[a + STEP_STOP for a in acts]
                                                for acts in batch.actions])
        if self.cfg.value_target_mix > 0:
            batch = replace(batch, value_targets=mixed_value_targets(
                batch.value_targets, batch.root_values, self.cfg.value_target_mix))
        return batch

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
