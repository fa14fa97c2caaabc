"""A user's game whose moves are not digits ('a1'..'c3'), registered from the user's own directory:
its spaces come from its own moves, it passes both contract checks, and it is played, trained and
evaluated through the installed `selfplay` command with no environment variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
from gymnasium.utils.env_checker import check_env

from envs.checker import check_text_env
from envs.registration import make_env

# Tic-tac-toe with chess-style squares: column a-c, row 1-3; pure Python, as a user would write it.
COORDS_MODULE = '''
import numpy as np
import selfplay
from envs.games.base import TwoPlayerGameEnv
from envs.protocol import GameOutcome

SQUARES = [c + r for r in "123" for c in "abc"]
LINES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]

class Coords:
    name, num_actions, state_shape = "coords", 9, (10,)   # 9 cells (0, 1, 2) + player to move
    max_render_length = 64
    def initial_state(self): return np.zeros(10, dtype=np.int8)
    def to_play(self, s): return int(s[9])
    def _winner(self, s):
        return next((int(s[a]) for a, b, c in LINES if s[a] and s[a] == s[b] == s[c]), 0)
    def legal_mask(self, s):
        return (s[:9] == 0) & (self._winner(s) == 0)
    def next_state(self, s, a):
        t = s.copy(); t[a] = s[9] + 1; t[9] = 1 - s[9]; return t
    def outcome(self, s):
        w = self._winner(s)
        if w: return GameOutcome(1.0 if w == 1 else -1.0)
        return GameOutcome(0.0) if (s[:9] != 0).all() else None
    def action_to_text(self, a): return SQUARES[int(a)]
    def text_to_action(self, t):
        t = t.strip() if isinstance(t, str) else None
        return SQUARES.index(t) if t in SQUARES else None
    def render_text(self, s):
        rows = [" ".join(".XO"[s[i * 3 + j]] for j in range(3)) for i in (2, 1, 0)]
        return f"{'XO'[s[9]]} to move\\n" + "\\n".join(rows) + "\\n"

class CoordsEnv(TwoPlayerGameEnv):
    def __init__(self, **kw): super().__init__(Coords(), **kw)

selfplay.register_env("usertest/Coords-v0", entry_point=CoordsEnv, summary="a1..c3 tic-tac-toe")
'''

TINY = [
    "policy.hidden_size=32", "policy.num_layers=1", "policy.num_heads=2",
    "policy.num_kv_heads=1", "policy.intermediate_size=64", "search.num_simulations=4",
    "learner.batch_size=16", "learner.min_replay_steps=16", "learner.publish_every=2steps",
    "run.games_per_actor=4", "run.num_actors=1", "run.progress=false",
    "run.eval_every=1000steps", "arena.gate_games=2", "arena.eval_games=2",
    "arena.search_simulations=2", "ray.num_cpus=2",
]


def user_directory(tmp_path: Path) -> Path:
    (tmp_path / "coords.py").write_text(COORDS_MODULE)
    (tmp_path / "myconf" / "env").mkdir(parents=True)
    (tmp_path / "myconf" / "env" / "coords.yaml").write_text(
        "id: usertest/Coords-v0\nmodule: coords\n")
    return tmp_path


def selfplay_cli(*args: str, cwd: Path, stdin: str = "", timeout: float = 240):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SELFPLAY_ENV_MODULES")}
    script = Path(sys.executable).with_name("selfplay")
    return subprocess.run([str(script), *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


def test_letter_moves_lie_in_the_spaces_derived_from_the_game(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(user_directory(tmp_path))
    env = make_env("usertest/Coords-v0", module="coords")
    space = env.unwrapped.action_space
    assert isinstance(space, gym.spaces.Text) and space.max_length == 2
    assert set(space.character_set) == set("abc123")
    assert env.unwrapped.observation_space.max_length == 64  # the bound the game declares
    obs, info = env.reset(seed=0)
    assert info["legal_actions"][0] == "a1"
    while True:
        assert env.observation_space.contains(obs)
        assert all(env.action_space.contains(a) for a in info["legal_actions"]), info
        if not info["legal_actions"]:
            break
        obs, _, done, _, info = env.step(info["legal_actions"][-1])
        if done:
            assert env.observation_space.contains(obs)
            break
    check_text_env(env)
    check_env(make_env("usertest/Coords-v0").unwrapped, skip_render_check=True)


def test_letter_move_game_played_trained_and_evaluated_through_the_cli(tmp_path: Path):
    home = user_directory(tmp_path)
    played = selfplay_cli("play", "--config-dir", "myconf", "env=coords", "player=random",
                          cwd=home, stdin="".join(f"{sq}\n" for sq in
                                                  ("z9", "a1", "b1", "c1", "a2", "b2", "c2",
                                                   "a3", "b3", "c3") * 2))
    assert played.returncode == 0, played.stdout[-2000:] + played.stderr[-2000:]
    assert "illegal move 'z9'" in played.stdout

    run_dir = home / "runs" / "coords"
    trained = selfplay_cli("train", "--config-dir", "myconf", "env=coords", *TINY,
                           f"run.dir={run_dir}", "run.budget_steps=2", "run.budget_minutes=2",
                           cwd=home)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    assert any((run_dir / "checkpoints").glob("version-*"))
    evaluated = selfplay_cli("eval", "--config-dir", "myconf", "env=coords", *TINY[:5],
                             f"checkpoint={run_dir}", "player=random", "games=2",
                             "search.num_simulations=4", "run.progress=false", cwd=home)
    assert evaluated.returncode == 0, evaluated.stdout[-2000:] + evaluated.stderr[-2000:]
    assert "random" in evaluated.stdout


def test_a_state_longer_than_the_policy_context_names_both_numbers():
    import pytest

    from selfplay.policy.engine import EngineInputError
    from selfplay.policy.priors import encode_decisions
    from selfplay.policy.tokenizer import build_char_tokenizer

    # The env accepts a long rendering (its own bound); the policy's context is what refuses it.
    state = "X to move\n" + ". . .\n" * 50
    with pytest.raises(EngineInputError) as err:
        encode_decisions(build_char_tokenizer(), [state], [["a1", "b2"]], 256)
    message = str(err.value)
    assert "context of 256 tokens (policy.max_seq_len" in message
    assert f"state + action is {len(state) + 1 + 2} tokens" in message
