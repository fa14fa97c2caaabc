"""The root config: one typed dataclass per Hydra group, registered in Hydra's ConfigStore.

``conf/config.yaml`` starts its defaults list with the schema registered here, so every YAML in
``conf/`` merges into a typed node: a mistyped key or a wrong type is an error naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore

from selfplay.arena.config import ArenaConfig
from selfplay.feedback.config import FeedbackConfig
from selfplay.learner.config import LearnerConfig
from selfplay.placement import PlacementConfig
from selfplay.policy.config import EngineConfig, PolicyConfig
from selfplay.rollout.config import RolloutConfig
from selfplay.search.config import SearchConfig
from selfplay.textgen.config import TextSamplingConfig


@dataclass
class EnvConfig:
    """Which environment to run; ``selfplay envs`` lists the registered ids."""

    id: str = "selfplay/TicTacToe-v0"  # gymnasium id
    module: Optional[str] = None  # a module to import first (where a user's env registers itself)
    kwargs: Dict[str, Any] = field(default_factory=dict)  # passed to gymnasium.make


@dataclass
class RayConfig:
    address: Optional[str] = None  # None starts local Ray; "auto" joins this machine's cluster
    num_cpus: Optional[int] = None  # CPUs for local Ray (None: all)


@dataclass
class RunConfig:
    """A training run: where it lives, how long it goes, how many actors."""

    dir: str = "runs/default"  # run directory: episodes, checkpoints, metrics, Elo ladder
    resume: bool = False  # continue an existing run.dir from its last checkpoint
    budget_minutes: float = 3.0  # wall-clock budget (0 = no limit)
    budget_steps: int = 0  # learner-step budget (0 = no limit)
    num_actors: int = 1  # self-play actors (Ray actors)
    games_per_actor: int = 32  # games each actor plays at once (searched together)
    seed: int = 0  # base seed of the run
    eval_every: str = "100steps"  # cadence of arena evaluation against the reference players
    progress: bool = True  # progress bar on the terminal
    max_actor_failures: int = 10  # rollout actors replaced after a failure, at most this many times per run
    stop_when_unbeaten: Optional[str] = None  # stop early once the incumbent (with search) loses no eval game to this reference player
    warm_start: str = "none"  # none | sft: text tasks, a supervised stage on the env's reference solutions before RL, published as version 0
    warm_start_problems: int = 256  # reference solutions of the warm start: train problems with seeds 0..N-1
    warm_start_steps: int = 300  # learner steps of the warm start (batches of learner.batch_size decisions)
    warm_start_unit: str = "decisions"  # what warm_start_steps counts: decisions = batches of batch_size decisions (lines, on a multi-step env) | solutions = scaled by the mean decisions per reference solution, so a multi-step env sees as many solutions as its single-turn twin
    warm_start_lr: float = 3e-3  # AdamW learning rate of the warm start


@dataclass
class SelfplayConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    arena: ArenaConfig = field(default_factory=ArenaConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    sampling: TextSamplingConfig = field(default_factory=TextSamplingConfig)  # text tasks: k samples per problem, temperature, token budgets
    run: RunConfig = field(default_factory=RunConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    placement: PlacementConfig = field(default_factory=PlacementConfig)  # which GPUs the learner and the engine actors reserve (selfplay/placement.py)
    player: str = "perfect"  # `selfplay play`/`eval`: the opponent (random|perfect|alphabeta|mcts|<checkpoint dir>)
    human_player: int = 0  # `selfplay play`: the side the person takes (0 moves first)
    checkpoint: Optional[str] = None  # `selfplay eval`: checkpoint dir or run dir to evaluate
    games: int = 100  # `selfplay eval`: games (half with each side)
    opening_plies: int = 0  # `selfplay eval` on a game: random plies opening each game, each opening played with both sides (0 = from the initial position)


def register_configs() -> None:
    ConfigStore.instance().store(name="selfplay_schema", node=SelfplayConfig)
