"""Config of the rollout actors: what they do with the incumbent. Import-light (no torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RolloutConfig:
    mode: str = "auto"  # game_selfplay | sample_groups | reference | step_search (MCTS over reasoning steps of a multi-step text task, trained by learner=alphazero); auto: game_selfplay for games, sample_groups for text tasks
    problems: int = 0  # text tasks: draw problem seeds from 0..problems-1 (the warm start's set is 0..run.warm_start_problems-1); 0 = any seed
    reference_mix: float = 0.0  # sample_groups with an imitation loss (expert_iteration, sft): the fraction of groups that also carry their problem's reference solution, written not sampled (expert iteration keeps it as the group's best when every sample fails); 0 = samples only. rollout.problems bounds which references are seen
    reference_problems: int = 0  # with reference_mix: > 0 draws each carried reference from problems 0..N-1 (e.g. the warm start's set) as a group of its own, while the samples range over rollout.problems; 0 = the reference of the group's own problem
