"""Config of reward sources beside the environment's own (AI feedback)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FeedbackSourceConfig:
    kind: str = "judge_pointwise"  # "judge_pointwise" | "judge_pairwise" | "reward_model" | "process_reward"
    weight: float = 1.0  # weight of this source in the combined reward
    path: str = ""  # checkpoint of the judge or reward model (empty: the policy's own engine)


@dataclass
class FeedbackConfig:
    env_weight: float = 1.0  # weight of the environment's own reward
    sources: list[FeedbackSourceConfig] = field(default_factory=list)  # extra reward sources
