"""Config of the learner: loss, optimiser, replay sampling and the publishing cadence."""

from __future__ import annotations

from dataclasses import dataclass

from selfplay.errors import UserError


@dataclass
class LearnerConfig:
    loss: str = "auto"  # alphazero | grpo | expert_iteration | sft | dpo (selfplay/learner/losses); auto: alphazero for games, grpo for text tasks
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    warmup_steps: int = 20  # linear learning-rate warm-up
    lr_schedule: str = "constant"  # after the warm-up: constant (online training has no end) | cosine (down to lr * lr_min_factor at lr_decay_steps, then flat)
    lr_decay_steps: int = 0  # cosine: learner steps from the end of the warm-up to the floor (required > 0 with cosine)
    lr_min_factor: float = 0.1  # cosine: the floor, as a fraction of lr
    batch_size: int = 256  # decisions per learner step
    value_weight: float = 1.0  # weight of the value loss beside the policy loss
    value_target_mix: float = 0.0  # alphazero: value target = (1 - m) * game outcome + m * the search's root value (0: the outcome alone, as AlphaZero; decisions without a root value keep the outcome)
    grad_clip: float = 1.0  # max gradient norm
    publish_every: str = "50steps"  # cadence of new policy versions: "<N>steps" or a period like "30s", "2h", "7d"
    keep_optimizer_states: int = 2  # keep the optimiser state (~2x the weights) of the newest N checkpoints only; resume needs the newest (0 = keep all); every version's weights stay
    max_nonfinite_steps: int = 20  # a step with a non-finite loss or gradient norm is skipped (counted as learner/nonfinite_skipped); this many in a row stop the run
    min_replay_steps: int = 512  # decisions in the store before the first learner step
    replay_window: int = 20000  # sample from the most recent decisions only
    augment_symmetries: bool = False  # games: each draw sees a decision through a random symmetry the game declares (connect four's mirror, tic-tac-toe's 8), the original included
    max_staleness: int = 0  # drop decisions played more than this many accepted incumbents ago; rejected candidates do not count (0 = keep all)
    prioritized: bool = False  # sample in proportion to the stored priorities
    priority_beta: float = 1.0  # prioritized: importance-sampling exponent of the weights (N*P(i))^-beta/max that undo the draw's bias in the loss (1 = fully, 0 = not at all)
    replay_compact_fanout: int = 16  # the replay store merges each run of this many adjacent same-size shards into one (0 = keep one shard per play call)
    samples_per_decision: float = 4.0  # times the learner draws each self-play decision (each training target: with search.full_search_prob < 1, each full search) on average; the side ahead waits (0 = no pacing)
    steps_per_call: int = 8  # learner steps per remote call (fewer round trips; publishing waits for a call to end)
    num_threads: int = 1  # torch threads of the learner process
    clip_eps: float = 0.2  # grpo: PPO clip range of the token importance ratio
    kl_coef: float = 0.02  # grpo: weight of the KL penalty to the reference version (0 = none)
    kl_reference: str = "start"  # grpo, dpo: the reference version: start (the version the run started from, the warm start's) | incumbent (follows each accepted version)
    dpo_beta: float = 0.1  # dpo: inverse temperature of the preference between the best and the worst sibling by Q
    dpo_margin: float = 0.1  # dpo: a pair is formed only where the two siblings' Q differ by at least this
    step_prior: str = "sequence"  # alphazero, dpo on reasoning steps (rollout.mode=step_search): sequence = each sibling step's own log-probability under the LM, its closing newline included, so the cross-entropy -sum(target * log p(step)) raises the searched steps' likelihood and DPO is DPO on whole steps | siblings = a softmax over the sampled siblings only (as a game's legal moves), which lets mass drift to steps never sampled (it undid the warm start in learn_arithmetic); games always use the softmax
    normalize_advantages: bool = True  # grpo: divide group-relative advantages by the group's reward std (False: Dr. GRPO)


LR_SCHEDULES = ("constant", "cosine")
STEP_PRIORS = ("sequence", "siblings")


def check_learner_config(cfg: LearnerConfig) -> None:
    """A UserError naming the key for a value no learner can run with."""
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise UserError(f"learner.lr_schedule={cfg.lr_schedule!r}: must be one of "
                        f"{', '.join(LR_SCHEDULES)}")
    if cfg.lr_schedule == "cosine" and cfg.lr_decay_steps <= 0:
        raise UserError(f"learner.lr_schedule=cosine needs learner.lr_decay_steps > 0 (the steps "
                        f"from the warm-up's end to the floor), not {cfg.lr_decay_steps}")
    if cfg.step_prior not in STEP_PRIORS:
        raise UserError(f"learner.step_prior={cfg.step_prior!r}: must be one of "
                        f"{', '.join(STEP_PRIORS)}")
    if not 0.0 <= cfg.lr_min_factor <= 1.0:
        raise UserError(f"learner.lr_min_factor={cfg.lr_min_factor}: must be in [0, 1]")
    if not 0.0 <= cfg.value_target_mix <= 1.0:
        raise UserError(f"learner.value_target_mix={cfg.value_target_mix}: must be in [0, 1] "
                        "(0: the game outcome alone, 1: the search's root value alone)")
    if cfg.dpo_beta <= 0:
        raise UserError(f"learner.dpo_beta={cfg.dpo_beta}: must be > 0")
    if cfg.dpo_margin < 0:
        raise UserError(f"learner.dpo_margin={cfg.dpo_margin}: must be >= 0 (the least Q gap "
                        "between the two siblings of a pair)")
    if cfg.keep_optimizer_states < 0:
        raise UserError(f"learner.keep_optimizer_states={cfg.keep_optimizer_states}: must be "
                        ">= 0 (0 keeps every checkpoint's optimiser state)")
    if cfg.max_nonfinite_steps < 1:
        raise UserError(f"learner.max_nonfinite_steps={cfg.max_nonfinite_steps}: must be >= 1 "
                        "(the number of non-finite steps in a row that stops the run)")
