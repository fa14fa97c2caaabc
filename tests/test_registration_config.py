"""Arena and learner keys do what their docs say (or are gone), and a typo in arena.opponents is
one clear error before Ray starts."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from selfplay.arena.config import ArenaConfig
from selfplay.config import register_configs
from selfplay.learner.config import LearnerConfig

CONF = Path(__file__).resolve().parent.parent / "conf"
TINY_POLICY = ["policy.hidden_size=32", "policy.num_layers=1", "policy.num_heads=2",
               "policy.num_kv_heads=1", "policy.intermediate_size=64"]


def _compose(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_keys_that_did_nothing_are_gone():
    assert "record_games" not in {f.name for f in fields(ArenaConfig)}
    assert "checkpoint_every" not in {f.name for f in fields(LearnerConfig)}
    with pytest.raises(ConfigCompositionException):
        _compose(["learner.checkpoint_every=10steps"])


def test_max_moves_and_elo_keys_reach_the_evaluator(tmp_path: Path):
    from selfplay.workers import EvaluatorWorker, worker_configs

    cfg = _compose([*TINY_POLICY, f"run.dir={tmp_path}", "arena.max_moves=2",
                    "arena.elo_anchor=perfect", "arena.elo_prior_games=3",
                    "arena.search_simulations=0", "arena.opponents=[random]"])
    worker = EvaluatorWorker(worker_configs(cfg).evaluator)
    assert worker.ladder.anchor == "perfect" and worker.ladder.prior_games == 3.0
    # Two plies cannot end tic-tac-toe: every game is adjudicated a draw at max_moves.
    (result,) = worker.evaluate({}, 1, 4, 0)
    assert result["games"] == 4 and result["draws"] == 4, result


@pytest.mark.parametrize("opponents, message", [
    ("[random,randon]", ("arena.opponents: 'randon' is not a player; tictactoe has: random, "
                         "perfect, alphabeta[:DEPTH], mcts[:SIMULATIONS]")),
    ("[mcts:many]", "'mcts:many' is not a player"),
])
def test_an_opponent_no_game_has_is_one_error_before_ray(tmp_path: Path, opponents, message):
    result = subprocess.run(
        [sys.executable, "-m", "selfplay.cli", "train", f"arena.opponents={opponents}",
         f"run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not list((tmp_path / "run").glob("checkpoints/*"))  # stopped before any worker
