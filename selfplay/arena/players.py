"""Players backed by a policy engine, for the arena, gating and `selfplay play`/`eval`.

With search, a position is decided by the most-visited root action of a deterministic PUCT search
(no root noise); without search (``num_simulations=0``), by the highest prior. Both decide a whole
batch of positions with one call into the engine per wave.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from envs.protocol import Game
from selfplay.policy.config import EngineConfig, PolicyConfig
from selfplay.policy.engine import Engine
from selfplay.rollout import cached_evaluator
from selfplay.search.config import SearchConfig
from selfplay.search.game_adapter import Evaluator, GameSearch, engine_evaluator


@dataclass
class PolicyPlayer:
    name: str
    evaluate: Evaluator  # cached engine evaluator of one policy version
    search: GameSearch | None  # None: play the prior's argmax

    def choose_batch(self, game: Game, states: list[np.ndarray], rng: np.random.Generator) -> list[int]:
        if self.search is not None:
            result = self.search.run(states, rng=rng, add_noise=False)
            choices = []
            for stats, legal in zip(result.stats, result.legal_actions):
                visits = np.asarray(stats.visits, dtype=np.float64)
                best = np.flatnonzero(visits == visits.max())
                choices.append(int(legal[rng.choice(best)]))
            return choices
        priors, _ = self.evaluate(states)
        masked = np.where(np.stack([game.legal_mask(s) for s in states]), priors, -np.inf)
        return [int(np.argmax(row)) for row in masked]

    def choose(self, game: Game, state: np.ndarray, rng: np.random.Generator) -> int:
        return self.choose_batch(game, [state], rng)[0]


def policy_player(
    name: str, engine: Engine, game: Game, search_cfg: SearchConfig, num_simulations: int
) -> PolicyPlayer:
    evaluate = cached_evaluator(engine_evaluator(engine, game))
    search = None
    if num_simulations > 0:
        search = GameSearch(
            game,
            evaluate,
            num_simulations=num_simulations,
            c_puct=search_cfg.c_puct,
            dirichlet_fraction=0.0,
            leaves_per_tree=search_cfg.leaves_per_tree,
            virtual_loss=search_cfg.virtual_loss,
        )
    return PolicyPlayer(name, evaluate, search)


def check_trained_env(directory: Path, env_cfg: Any) -> None:
    """A UserError when the checkpoint ``directory`` lies in a run whose saved config names
    another env (id or kwargs) than ``env_cfg``: the policy would read text it never saw (a
    connect-four policy trained on the mover's board, evaluated on the absolute one, plays
    noise). A checkpoint outside a run directory has nothing to compare with."""
    from omegaconf import OmegaConf

    from selfplay.errors import UserError
    from selfplay.resume import read_saved_config

    run_dir = directory.parent.parent if directory.parent.name == "checkpoints" else None
    saved = read_saved_config(run_dir) if run_dir is not None else None
    if not saved or not isinstance(saved.get("env"), dict):
        return
    ours = OmegaConf.to_container(env_cfg, resolve=True) if OmegaConf.is_config(env_cfg) else dict(env_cfg)
    trained = {"id": saved["env"].get("id"), "kwargs": saved["env"].get("kwargs") or {}}
    asked = {"id": ours.get("id"), "kwargs": ours.get("kwargs") or {}}
    if trained == asked:
        return
    overrides = " ".join(f"env.kwargs.{k}={v}" for k, v in trained["kwargs"].items()
                         if asked["kwargs"].get(k) != v)
    hint = f" (e.g. add: {overrides})" if trained["id"] == asked["id"] and overrides else ""
    raise UserError(f"{directory} was trained on env.id={trained['id']} with env.kwargs="
                    f"{trained['kwargs']}, but this command builds env.id={asked['id']} with "
                    f"env.kwargs={asked['kwargs']}: pass the run's env{hint}, so the policy reads "
                    "the text it was trained on")


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (its newest checkpoint)."""
    from selfplay.learner.checkpoint import latest_checkpoint
    from selfplay.errors import UserError

    path = Path(path)
    if (path / "config.json").exists():
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise UserError(f"{path}: neither a checkpoint directory nor a run with checkpoints")
    return found[0]


def policy_player_from_checkpoint(
    path: str | Path,
    game: Game,
    *,
    engine_cfg: EngineConfig,
    search_cfg: SearchConfig,
    num_simulations: int | None = None,
    env_cfg: Any = None,
) -> PolicyPlayer:
    """``env_cfg``: the env the player will play; a checkpoint of a run trained on another is
    refused (``check_trained_env``)."""
    from selfplay.policy.factory import make_engine

    directory = resolve_checkpoint(path)
    if env_cfg is not None:
        check_trained_env(directory, env_cfg)
    engine = make_engine(PolicyConfig(path=str(directory)), engine_cfg)
    sims = search_cfg.num_simulations if num_simulations is None else num_simulations
    return policy_player(directory.name, engine, game, search_cfg, sims)
