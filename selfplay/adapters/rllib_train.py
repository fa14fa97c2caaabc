"""RLlib PPO by self-play against a league of frozen snapshots: a baseline recipe for our games.

    python -m selfplay.adapters.rllib_train env=connect_four iterations=200 out_dir=runs/rllib-c4
    python -m selfplay.adapters.rllib_train env=tictactoe iterations=0 budget_minutes=30

The config is ``conf/rllib.yaml`` over the typed ``RllibRecipeConfig`` below (Hydra; the env
group is the one ``selfplay train`` uses). PPO trains the module "main" against a league of its
own frozen snapshots (rllib_league.py, after RLlib's OpenSpiel self-play example), with the legal
moves masked in the RLModule (rllib_module.py), on the game as an RLlib env (rllib_env.py).

Writes ``out_dir/checkpoint`` (``Algorithm.save_to_path``, replaced atomically every
``checkpoint_every`` iterations and at the end; ``selfplay_rllib.json`` inside names the env),
``out_dir/metrics.jsonl`` (one line per iteration) and ``out_dir/summary.json``. The arena plays
the checkpoint as ``player=rllib:OUT_DIR`` (rllib_player.py).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

from selfplay.atomic import atomic_write_dir, atomic_write_json
from selfplay.cli import CONF_DIR  # the repository's conf/ or the copy a built package ships
from selfplay.config import EnvConfig, RayConfig
from selfplay.errors import UserError

METADATA_FILE = "selfplay_rllib.json"  # in a checkpoint: which env its modules play


# ---- config --------------------------------------------------------------------------------


@dataclass
class PPOSettings:
    """PPO's hyperparameters (AlgorithmConfig.training) and the networks' size."""

    lr: float = 3e-4  # Adam learning rate
    gamma: float = 0.99  # discount per move of the agent (a faster win scores higher)
    gae_lambda: float = 0.95  # GAE lambda of the advantages
    train_batch_size: int = 2000  # env steps (moves of both players) per iteration
    minibatch_size: int = 128  # SGD minibatch (env steps)
    num_epochs: int = 6  # passes over each iteration's batch
    entropy_coeff: float = 0.01  # entropy bonus of the (masked) policy
    clip_param: float = 0.2  # PPO's ratio clip
    hiddens: list[int] = field(default_factory=lambda: [256, 256])  # fcnet_hiddens of the policy and value networks


@dataclass
class LeagueSettings:
    """The pool of frozen snapshots main plays against."""

    win_rate_threshold: float = 0.75  # main's mean score over its last 100 episodes that freezes a new snapshot (< 0: one every iteration)
    pool_size: int = 8  # frozen snapshots kept in the league; the oldest leaves first


@dataclass
class RllibRecipeConfig:
    """`python -m selfplay.adapters.rllib_train`: RLlib PPO self-play on a two-player game."""

    env: EnvConfig = field(default_factory=EnvConfig)
    iterations: int = 100  # PPO iterations (0: no limit, budget_minutes decides)
    budget_minutes: float = 0.0  # wall-clock budget of training from the first iteration (0: no limit); the iteration that crosses it is the last
    out_dir: str = "runs/rllib"  # checkpoint, metrics.jsonl and summary.json go here
    checkpoint_every: int = 10  # iterations between checkpoints (the last iteration always writes one)
    seed: int = 0  # RLlib's seed (config.debugging)
    num_env_runners: int = 0  # RLlib EnvRunner actors (0: the driver samples itself)
    num_envs_per_env_runner: int = 1  # envs each runner steps at once
    ppo: PPOSettings = field(default_factory=PPOSettings)
    league: LeagueSettings = field(default_factory=LeagueSettings)
    ray: RayConfig = field(default_factory=RayConfig)


def register_configs() -> None:
    ConfigStore.instance().store(name="rllib_schema", node=RllibRecipeConfig)


def check_config(cfg: RllibRecipeConfig) -> None:
    """Values RLlib would reject late or never stop on, named by their key."""
    if cfg.iterations < 0 or cfg.budget_minutes < 0:
        raise UserError("iterations and budget_minutes must be >= 0")
    if cfg.iterations == 0 and cfg.budget_minutes == 0:
        raise UserError("iterations=0 and budget_minutes=0: the run would never stop; set one")
    if cfg.checkpoint_every < 1:
        raise UserError(f"checkpoint_every={cfg.checkpoint_every}: must be >= 1")
    if cfg.league.pool_size < 1:
        raise UserError(f"league.pool_size={cfg.league.pool_size}: must be >= 1")
    if not 0 < cfg.ppo.minibatch_size <= cfg.ppo.train_batch_size:
        raise UserError(f"ppo.minibatch_size={cfg.ppo.minibatch_size}: must be in 1.."
                        f"ppo.train_batch_size ({cfg.ppo.train_batch_size})")
    if cfg.num_env_runners < 0 or cfg.num_envs_per_env_runner < 1:
        raise UserError("num_env_runners must be >= 0 and num_envs_per_env_runner >= 1")


# ---- building the algorithm ----------------------------------------------------------------


def env_config_of(env: EnvConfig) -> dict[str, Any]:
    from omegaconf import OmegaConf

    kwargs = OmegaConf.to_container(env.kwargs) if OmegaConf.is_config(env.kwargs) else env.kwargs
    return {"env_id": env.id, "module": env.module, "kwargs": dict(kwargs or {})}


def build_ppo_config(cfg: RllibRecipeConfig):
    """The PPOConfig of the recipe (the env registered with Tune first)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from selfplay.adapters.rllib_env import AGENTS, make_rllib_env, register_rllib_env
    from selfplay.adapters.rllib_league import FIRST_OPPONENT, MAIN, LeagueCallback, LeagueMapping
    from selfplay.adapters.rllib_module import MaskedPPOTorchRLModule

    env_config = env_config_of(cfg.env)
    try:
        probe = make_rllib_env(env_config)  # also: the env id exists and is a two-player game
        name = register_rllib_env(cfg.env.id, cfg.env.module)
    except (ValueError, KeyError, ImportError, TypeError) as err:
        raise UserError(f"env: {err}") from None

    def module_spec() -> RLModuleSpec:
        return RLModuleSpec(module_class=MaskedPPOTorchRLModule,
                            observation_space=probe.observation_spaces[AGENTS[0]],
                            action_space=probe.action_spaces[AGENTS[0]],
                            model_config=DefaultModelConfig(fcnet_hiddens=list(cfg.ppo.hiddens)))

    ppo = cfg.ppo
    return (
        PPOConfig()
        .environment(name, env_config=env_config)
        .env_runners(num_env_runners=cfg.num_env_runners,
                     num_envs_per_env_runner=cfg.num_envs_per_env_runner)
        .learners(num_learners=0)
        .training(lr=ppo.lr, gamma=ppo.gamma, lambda_=ppo.gae_lambda,
                  train_batch_size_per_learner=ppo.train_batch_size,
                  minibatch_size=ppo.minibatch_size, num_epochs=ppo.num_epochs,
                  entropy_coeff=ppo.entropy_coeff, clip_param=ppo.clip_param)
        .multi_agent(policies={MAIN, FIRST_OPPONENT},
                     policy_mapping_fn=LeagueMapping((FIRST_OPPONENT,)),
                     policies_to_train=[MAIN])
        .rl_module(rl_module_spec=MultiRLModuleSpec(
            rl_module_specs={MAIN: module_spec(), FIRST_OPPONENT: module_spec()}))
        .callbacks(functools.partial(LeagueCallback,
                                     win_rate_threshold=cfg.league.win_rate_threshold,
                                     pool_size=cfg.league.pool_size))
        .debugging(seed=cfg.seed)
    )


# ---- checkpoints ---------------------------------------------------------------------------


def save_checkpoint(algo, path: Path, metadata: dict[str, Any]) -> Path:
    """``algo.save_to_path`` into a temporary directory renamed over ``path`` (atomic_write_dir):
    a reader or a crash sees the old checkpoint or the new one, never half of one."""

    def fill(tmp: Path) -> None:
        algo.save_to_path(str(tmp.resolve()))
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")

    return atomic_write_dir(path, fill)


# ---- the loop ------------------------------------------------------------------------------


def init_ray(ray_cfg: RayConfig) -> bool:
    """Start (or join) Ray; True when this call started it (and so should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    if ray_cfg.address:
        ray.init(address=ray_cfg.address)
    else:
        ray.init(num_cpus=ray_cfg.num_cpus, include_dashboard=False)
    return True


def train(cfg: RllibRecipeConfig) -> dict[str, Any]:
    check_config(cfg)
    out_dir = Path(cfg.out_dir)
    checkpoint = out_dir / "checkpoint"
    if checkpoint.exists():
        raise UserError(f"out_dir={out_dir} already holds a checkpoint; choose another out_dir "
                        "or delete it")
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ppo_config = build_ppo_config(cfg)  # before Ray starts: a bad env fails fast
    started = init_ray(cfg.ray)
    try:
        algo = ppo_config.build_algo()
        metadata = {"env": env_config_of(cfg.env), "module_id": "main"}
        summary = _loop(cfg, algo, out_dir, checkpoint, metadata)
        algo.stop()
    finally:
        if started:
            import ray

            ray.shutdown()
    atomic_write_json(out_dir / "summary.json", summary)
    return summary


def _loop(cfg: RllibRecipeConfig, algo, out_dir: Path, checkpoint: Path,
          metadata: dict[str, Any]) -> dict[str, Any]:
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    start = time.time()
    iteration, row = 0, {}
    with (out_dir / "metrics.jsonl").open("w") as metrics:  # a fresh run: no checkpoint yet
        while True:
            result = algo.train()
            iteration += 1
            runners = result.get(ENV_RUNNER_RESULTS, {})
            row = {"iteration": iteration, "seconds": round(time.time() - start, 2),
                   "env_steps": int(runners.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0)),
                   "main_score": runners.get("league_main_score"),
                   "league_size": result.get("league_size"),
                   "league_newest": result.get("league_newest")}
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
            done = (cfg.iterations and iteration >= cfg.iterations) or (
                cfg.budget_minutes and time.time() - start >= 60.0 * cfg.budget_minutes)
            if done or iteration % cfg.checkpoint_every == 0:
                save_checkpoint(algo, checkpoint, {**metadata, "iteration": iteration})
            if done:
                break
    return {**row, "checkpoint": str(checkpoint), "modules": sorted(algo.config.policies)}


def main(cfg) -> int:
    from omegaconf import OmegaConf

    typed: RllibRecipeConfig = OmegaConf.to_object(cfg)
    summary = train(typed)
    print(f"rllib ppo self-play on {typed.env.id}: {summary['iteration']} iterations, "
          f"{summary['env_steps']} env steps in {summary['seconds']:.0f} s, league of "
          f"{summary['league_size']}; checkpoint {summary['checkpoint']}")
    return 0


def cli(argv: list[str] | None = None) -> int:
    """The Hydra application over conf/rllib.yaml; a UserError is one line, exit status 2."""
    import hydra

    register_configs()
    outcome: dict[str, int] = {}

    @hydra.main(config_path=str(CONF_DIR), config_name="rllib", version_base="1.3")
    def _app(cfg) -> None:
        try:
            outcome["rc"] = main(cfg)
        except UserError as err:
            print(f"rllib_train: {err}", file=sys.stderr)
            outcome["rc"] = 2

    saved = sys.argv
    sys.argv = ["rllib_train", *(sys.argv[1:] if argv is None else argv)]
    try:
        _app()
    finally:
        sys.argv = saved
    return outcome.get("rc", 1)


if __name__ == "__main__":
    sys.exit(cli())
