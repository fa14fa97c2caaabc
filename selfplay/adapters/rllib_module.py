"""PPO's default torch RLModule with the legal-action mask applied to its logits.

The env's observation is ``Dict({"observations": Box, "action_mask": Box})`` (rllib_env.py). The
networks are built for the "observations" Box alone; every forward pass splits the mask off and
adds ``log(mask)`` (clamped to the most negative float) to the action logits, so an illegal
action has probability zero when sampling, at inference and in the PPO loss alike. This is RLlib's
``ActionMaskingTorchRLModule`` example rebuilt on ``DefaultPPOTorchRLModule`` (the example's base,
``PPOTorchRLModule``, is deprecated in Ray 2.60) and without mutating the caller's batch.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.utils.torch_utils import FLOAT_MIN


def split_masked_obs(batch: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor]:
    """(a shallow copy of ``batch`` whose OBS is the observations alone, the mask [B, A])."""
    obs = batch[Columns.OBS]
    if not isinstance(obs, dict) or set(obs) != {"observations", "action_mask"}:
        raise ValueError("MaskedPPOTorchRLModule needs observations of the form "
                         "{'observations': ..., 'action_mask': ...} (selfplay.adapters.rllib_env)")
    inner = dict(batch)
    inner[Columns.OBS] = obs["observations"]
    return inner, obs["action_mask"]


def mask_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """logits [B, A] + log(mask [B, A]), with log(0) clamped to FLOAT_MIN (finite, so no NaN)."""
    return logits + torch.clamp(torch.log(mask.to(logits.dtype)), min=FLOAT_MIN)


class MaskedPPOTorchRLModule(DefaultPPOTorchRLModule):
    def __init__(self, *, observation_space: gym.Space | None = None, **kwargs: Any):
        if not (isinstance(observation_space, gym.spaces.Dict)
                and set(observation_space.spaces) == {"observations", "action_mask"}):
            raise ValueError(f"MaskedPPOTorchRLModule: observation space {observation_space} "
                             "must be Dict(observations=Box, action_mask=Box)")
        space_with_mask = observation_space
        super().__init__(observation_space=observation_space["observations"], **kwargs)
        # The networks are built; keep the full space so that RLModuleSpec.from_module (league
        # snapshots) and checkpoints rebuild this module with its mask.
        self.observation_space = space_with_mask

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        inner, mask = split_masked_obs(batch)
        out = super()._forward(inner, **kwargs)
        out[Columns.ACTION_DIST_INPUTS] = mask_logits(out[Columns.ACTION_DIST_INPUTS], mask)
        return out

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        inner, mask = split_masked_obs(batch)
        out = super()._forward_train(inner, **kwargs)
        out[Columns.ACTION_DIST_INPUTS] = mask_logits(out[Columns.ACTION_DIST_INPUTS], mask)
        return out

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        if embeddings is None:
            batch, _ = split_masked_obs(batch)
        return super().compute_values(batch, embeddings)
