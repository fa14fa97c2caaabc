"""Config of reward sources beside the environment's own (AI feedback), Hydra group feedback/.

``build_feedback`` (selfplay.feedback.base) turns each source into a ``Feedback``; the combined
reward is ``env_weight * env_reward + sum(weight_i * source_i)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FeedbackSourceConfig:
    """One AI-feedback source; fields a kind does not use are ignored by it."""

    kind: str = "judge_pointwise"  # "judge_pointwise" | "judge_pairwise" | "reward_model" | "process_reward"
    weight: float = 1.0  # weight of this source in the combined reward
    path: str = ""  # judge: model dir served by an engine ("" = the policy's own); reward_model / process_reward(reward_model): a RewardModel dir
    template: str = ""  # judge prompt template ("" = built-in); pointwise uses {prompt} {response}, pairwise {prompt} {response_a} {response_b}
    max_response_chars: int = 2000  # judge: untrusted responses are cut to this many characters before token fitting
    max_opponents: int = 4  # judge_pairwise: each response is compared with at most this many others of its prompt
    batch_size: int = 32  # reward_model: sequences per forward when scoring
    step_scorer: str = "arithmetic"  # process_reward: "arithmetic" (checks a op b = c claims) or "reward_model" (scores prefixes, needs path)
    aggregate: str = "min"  # process_reward: how step scores become one reward: "min" | "last" | "mean"
    step_separator: str = "\n"  # process_reward: a response is split into reasoning steps at this string


@dataclass
class FeedbackConfig:
    env_weight: float = 1.0  # weight of the environment's own reward
    sources: list[FeedbackSourceConfig] = field(default_factory=list)  # extra reward sources
    retrain_every: str = ""  # train: retrain the reward_model source on the newest episodes' verifier pairs on this cadence ("<N>steps" or a period like "2h", "7d"; "" = never); selfplay/feedback/retrain.py
    retrain_episodes: int = 512  # retraining: the newest episodes its pairs come from
    retrain_steps: int = 50  # retraining: optimiser steps per retraining
    retrain_batch_size: int = 16  # retraining: preference pairs per step
    retrain_lr: float = 1e-4  # retraining: AdamW learning rate (from where the model stands)
    retrain_held_out: float = 0.2  # retraining: fraction of prompts (by a stable hash) whose pairs only measure accuracy
