"""The Ray actors of a training run: rollout workers, the learner and the evaluator.

Each is a plain class (usable and testable without Ray) that ``train.py`` wraps with
``ray.remote``. They receive the config as a plain dict and build their own components, so the
same code runs in local Ray on a laptop and across a cluster.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from selfplay.arena.elo import EloLadder, plot_elo_curve
from selfplay.arena.gating import gate
from selfplay.arena.match import as_batch_player, play_match
from selfplay.arena.players import policy_player
from selfplay.atomic import atomic_write_json
from selfplay.build import build_env, game_of
from selfplay.errors import UserError
from selfplay.learner.checkpoint import CheckpointMeta, checkpoint_dir, latest_checkpoint, save_checkpoint
from selfplay.learner.learner import Learner
from selfplay.policy.factory import make_engine
from selfplay.policy.model import PolicyModel, build_policy
from selfplay.rollout import cached_evaluator, play_selfplay_games
from selfplay.search.game_adapter import GameSearch, engine_evaluator
from selfplay.types import Episode


def call(method: Any, *args: Any) -> Any:
    """Call a method of a Ray actor handle (and wait) or of a plain object, alike."""
    remote = getattr(method, "remote", None)
    if remote is None:
        return method(*args)
    import ray

    return ray.get(remote(*args))


def _game_from(cfg):
    env = build_env(cfg.env)
    game = game_of(env)
    if game is None:
        raise UserError(
            f"env.id={cfg.env.id} is a single-agent text task; `selfplay train` runs AlphaZero "
            "self-play on two-player games for now (see the README's roadmap)"
        )
    return game


class RolloutWorker:
    """Plays batches of self-play games with the incumbent policy version and MCTS."""

    def __init__(self, cfg: dict, index: int):
        torch.set_num_threads(1)
        self.cfg = OmegaConf.create(cfg)
        self.index = index
        self.game = _game_from(self.cfg)
        self.engine = make_engine(self.cfg.policy, self.cfg.engine)
        self.version = -1
        self.search: GameSearch | None = None

    def set_weights(self, weights: dict[str, torch.Tensor], version: int) -> int:
        self.engine.load_weights(weights, version)
        self.version = version
        # New weights, new evaluations: the cache must not outlive the version it was built on.
        evaluate = cached_evaluator(engine_evaluator(self.engine, self.game))
        self.search = GameSearch.from_config(self.game, evaluate, self.cfg.search)
        return version

    def play(self, num_games: int, seed: int) -> list[Episode]:
        if self.search is None:
            raise RuntimeError("set_weights must be called before play")
        return play_selfplay_games(
            self.game,
            self.search,
            num_games=num_games,
            env_id=self.cfg.env.id,
            policy_version=self.version,
            seed=seed,
            temperature=self.cfg.search.temperature,
            temperature_moves=self.cfg.search.temperature_moves,
            actor=f"rollout-{self.index}",
        )


class LearnerWorker:
    """Owns the trainable weights; steps on replay batches; publishes and checkpoints versions."""

    def __init__(self, cfg: dict, run_dir: str, replay: Any):
        self.cfg = OmegaConf.create(cfg)
        torch.set_num_threads(self.cfg.learner.num_threads)
        self.run_dir = Path(run_dir)
        self.replay = replay
        model, tokenizer = build_policy(self.cfg.policy)
        self.version = 0
        self.incumbent = 0
        found = latest_checkpoint(self.run_dir) if self.cfg.run.resume else None
        if found is not None:
            path, meta = found
            model = PolicyModel.load(str(path))
            tokenizer = model.tokenizer
            self.version = meta.version
            self.incumbent = read_incumbent(self.run_dir, meta.incumbent_version)
        self.learner = Learner(model, tokenizer, self.cfg.learner)
        if found is not None and (found[0] / "optimizer.pt").exists():
            self.learner.load_optimizer_state(torch.load(found[0] / "optimizer.pt", weights_only=False))
        if found is None:
            self.checkpoint()  # version 0: the initial weights, so every version is on disk

    def state(self) -> dict[str, int]:
        return {"version": self.version, "incumbent": self.incumbent, "step": self.learner.step}

    def train(self, num_steps: int, seed: int) -> list[dict[str, float]]:
        out = []
        for i in range(num_steps):
            batch = call(self.replay.sample, self.cfg.learner.batch_size, seed + i, self.incumbent)
            result = self.learner.train_step(batch)
            out.append({**result.metrics, "learner/step_seconds": result.seconds})
        return out

    def publish(self) -> tuple[int, dict[str, torch.Tensor]]:
        """A new candidate version from the current weights (checkpointed before it is used)."""
        self.version += 1
        self.checkpoint()
        return self.version, self.learner.weights()

    def weights_of(self, version: int) -> dict[str, torch.Tensor]:
        if version == self.version:
            return self.learner.weights()
        model = PolicyModel.load(str(checkpoint_dir(self.run_dir, version)))
        return {k: v.detach() for k, v in model.state_dict().items()}

    def set_incumbent(self, version: int) -> None:
        self.incumbent = version
        atomic_write_json(self.run_dir / "incumbent.json", {"version": version, "at": time.time()})

    def checkpoint(self) -> str:
        meta = CheckpointMeta(self.version, self.learner.step, self.incumbent, time.time())
        path = save_checkpoint(
            self.run_dir, self.learner.model, self.learner.tokenizer,
            self.learner.optimizer_state(), meta,
        )
        return str(path)


def summarize(result) -> dict[str, Any]:
    """The figures of a match that metrics, logs and summary.json need (a's point of view)."""
    low, high = result.confidence_interval()
    return {"a": result.a, "b": result.b, "wins": result.wins, "draws": result.draws,
            "losses": result.losses, "games": result.games, "score": result.score,
            "ci95": [low, high], "illegal_moves_a": result.illegal_moves_a}


def read_incumbent(run_dir: Path, default: int) -> int:
    path = Path(run_dir) / "incumbent.json"
    if path.exists():
        return int(json.loads(path.read_text())["version"])
    return default


class EvaluatorWorker:
    """Plays policy versions against each other (gating) and against reference players (Elo)."""

    def __init__(self, cfg: dict, run_dir: str):
        torch.set_num_threads(1)
        self.cfg = OmegaConf.create(cfg)
        self.run_dir = Path(run_dir)
        self.game = _game_from(self.cfg)
        self.engines = {
            "candidate": make_engine(self.cfg.policy, self.cfg.engine),
            "incumbent": make_engine(self.cfg.policy, self.cfg.engine),
        }
        self.ladder = EloLadder.load(self.run_dir / "elo.json")

    def _player(self, slot: str, weights, version: int, simulations: int):
        engine = self.engines[slot]
        engine.load_weights(weights, version)
        name = f"v{version}" if simulations else f"v{version}-prior"
        return policy_player(name, engine, self.game, self.cfg.search, simulations)

    def gate(self, cand_weights, cand_version: int, inc_weights, inc_version: int, seed: int) -> dict:
        arena = self.cfg.arena
        sims = arena.search_simulations
        cand = self._player("candidate", cand_weights, cand_version, sims)
        inc = self._player("incumbent", inc_weights, inc_version, sims)
        result = play_match(self.game, cand, inc, arena.gate_games, seed=seed,
                            opening_plies=arena.gate_opening_plies)
        decision = gate(result, threshold=arena.gate_threshold, enabled=arena.gate)
        self.ladder.record(result, version=cand_version)
        self.ladder.save()
        return {"result": summarize(result), "accepted": decision.accepted, "score": decision.score}

    def evaluate(self, weights, version: int, games: int, seed: int) -> list[dict]:
        """Matches of the version (with search, and by its prior alone) against the references."""
        from envs.games.players import make_player

        arena = self.cfg.arena
        players = [self._player("candidate", weights, version, arena.search_simulations)]
        if arena.search_simulations > 0:
            players.append(policy_player(f"v{version}-prior", self.engines["candidate"], self.game, self.cfg.search, 0))
        results = []
        for name in arena.opponents:
            try:
                opponent = as_batch_player(make_player(name, self.game))
            except ValueError:
                continue  # e.g. "perfect" exists for tic-tac-toe only
            for player in players:
                result = play_match(self.game, player, opponent, games, seed=seed)
                self.ladder.record(result, version=version)
                results.append(summarize(result))
        self.ladder.save()
        try:
            plot_elo_curve(self.ladder, self.run_dir / "elo.png")
        except Exception as err:  # a plot must never stop training
            print(f"elo plot failed: {err}")
        return results

    def ratings(self) -> dict[str, float]:
        return self.ladder.ratings()
