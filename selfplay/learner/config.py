"""Config of the learner: loss, optimiser, replay sampling and the publishing cadence."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LearnerConfig:
    loss: str = "auto"  # alphazero | grpo | expert_iteration | sft (selfplay/learner/losses); auto: alphazero for games, grpo for text tasks
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    warmup_steps: int = 20  # linear learning-rate warm-up
    batch_size: int = 256  # decisions per learner step
    value_weight: float = 1.0  # weight of the value loss beside the policy loss
    grad_clip: float = 1.0  # max gradient norm
    publish_every: str = "50steps"  # cadence of new policy versions: "<N>steps" or a period like "30s", "2h", "7d"
    checkpoint_every: str = "50steps"  # cadence of checkpoints (same grammar)
    min_replay_steps: int = 512  # decisions in the store before the first learner step
    replay_window: int = 20000  # sample from the most recent decisions only
    max_staleness: int = 0  # drop decisions played more than this many versions ago (0 = keep all)
    prioritized: bool = False  # sample in proportion to the stored priorities
    samples_per_decision: float = 4.0  # times the learner draws each self-play decision on average; the side ahead waits (0 = no pacing)
    steps_per_call: int = 8  # learner steps per remote call (fewer round trips; publishing waits for a call to end)
    num_threads: int = 1  # torch threads of the learner process
    clip_eps: float = 0.2  # grpo: PPO clip range of the token importance ratio
    kl_coef: float = 0.02  # grpo: weight of the KL penalty to the reference version (0 = none)
    kl_reference: str = "start"  # grpo: the KL anchor: start (the version the run started from, the warm start's) | incumbent (follows each accepted version)
    normalize_advantages: bool = True  # grpo: divide group-relative advantages by the group's reward std (False: Dr. GRPO)
