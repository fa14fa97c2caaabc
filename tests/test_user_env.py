"""A user's environment, defined only in this file, registered with one call and played through
the real `selfplay` command (the module is imported by name, as a user's would be)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import selfplay
from envs.games.base import TwoPlayerGameEnv
from envs.protocol import GameOutcome

PILE = 7  # take 1, 2 or 3 stones; whoever takes the last stone wins


class NimGame:
    name = "nim"
    num_actions = 3
    state_shape = (2,)  # [stones left, player to move]

    def initial_state(self) -> np.ndarray:
        return np.array([PILE, 0], dtype=np.int8)

    def to_play(self, state: np.ndarray) -> int:
        return int(state[1])

    def legal_mask(self, state: np.ndarray) -> np.ndarray:
        return np.array([state[0] >= k for k in (1, 2, 3)], dtype=bool)

    def next_state(self, state: np.ndarray, action: int) -> np.ndarray:
        return np.array([state[0] - (action + 1), 1 - state[1]], dtype=np.int8)

    def outcome(self, state: np.ndarray) -> GameOutcome | None:
        if state[0] > 0:
            return None
        winner = 1 - int(state[1])  # the player who took the last stone
        return GameOutcome(1.0 if winner == 0 else -1.0)

    def action_to_text(self, action: int) -> str:
        return str(action + 1)

    def text_to_action(self, text: str) -> int | None:
        return {"1": 0, "2": 1, "3": 2}.get(text.strip()) if isinstance(text, str) else None

    def render_text(self, state: np.ndarray) -> str:
        return f"nim: {int(state[0])} stones, player {int(state[1])} to take 1-3\n"


class NimEnv(TwoPlayerGameEnv):
    def __init__(self, **kwargs):
        super().__init__(NimGame(), **kwargs)


# The one call a user makes (at import of their module).
selfplay.register_env("usertest/Nim-v0", entry_point=NimEnv, summary="nim, a pile of 7")


# The README's example, word for word in spirit: a user's own ``nim.py`` in their own directory.
USER_NIM_MODULE = """
import numpy as np
import selfplay
from envs.games.base import TwoPlayerGameEnv
from envs.protocol import GameOutcome

class Nim:
    name, num_actions, state_shape = "nim", 3, (2,)
    def initial_state(self): return np.array([7, 0], dtype=np.int8)
    def to_play(self, s): return int(s[1])
    def legal_mask(self, s): return np.array([s[0] >= k for k in (1, 2, 3)])
    def next_state(self, s, a): return np.array([s[0] - a - 1, 1 - s[1]], dtype=np.int8)
    def outcome(self, s):
        return None if s[0] > 0 else GameOutcome(1.0 if s[1] == 1 else -1.0)
    def action_to_text(self, a): return str(a + 1)
    def text_to_action(self, t): return {"1": 0, "2": 1, "3": 2}.get(str(t).strip())
    def render_text(self, s): return f"nim: {s[0]} stones, player {s[1]} to take 1-3\\n"

class NimEnv(TwoPlayerGameEnv):
    def __init__(self, **kw): super().__init__(Nim(), **kw)

selfplay.register_env("usertest/Nim-v0", entry_point=NimEnv, summary="nim, a pile of 7")
"""


def user_directory(tmp_path: Path) -> Path:
    """A user's working directory: their module and one YAML file, nothing else."""
    (tmp_path / "nim.py").write_text(USER_NIM_MODULE)
    (tmp_path / "myconf" / "env").mkdir(parents=True)
    (tmp_path / "myconf" / "env" / "nim.yaml").write_text("id: usertest/Nim-v0\nmodule: nim\n")
    return tmp_path


def run_cli(*args: str, cwd: Path, stdin: str = "", timeout: float = 120,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The installed ``selfplay`` console script, run as a user would: from their own directory,
    with no PYTHONPATH (unlike ``python -m``, a console script does not see the current directory).
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra_env or {})
    script = Path(sys.executable).with_name("selfplay")
    return subprocess.run(
        [str(script), *args], input=stdin, capture_output=True,
        text=True, timeout=timeout, env=env, cwd=cwd,
    )


def test_registered_env_is_made_by_gymnasium():
    env = selfplay.make_env("usertest/Nim-v0")
    obs, info = env.reset(seed=0)
    assert "7 stones" in obs and info["legal_actions"] == ["1", "2", "3"]


def test_user_env_listed_and_played_through_the_cli(tmp_path: Path):
    home = user_directory(tmp_path)
    listed = run_cli("envs", "--import", "nim", cwd=home)
    assert listed.returncode == 0, listed.stderr
    assert "usertest/Nim-v0" in listed.stdout and "selfplay/TicTacToe-v0" in listed.stdout
    by_variable = run_cli("envs", cwd=home, extra_env={"SELFPLAY_ENV_MODULES": "nim"})
    assert by_variable.returncode == 0, by_variable.stderr
    assert "usertest/Nim-v0" in by_variable.stdout

    # One YAML file of the user's own, found through Hydra's --config-dir.
    # A malformed move, an illegal one, then legal moves until the game ends (at most 4 of ours).
    played = run_cli("play", "--config-dir", "myconf", "env=nim", "player=random", cwd=home,
                     stdin="banana\n9\n1\n1\n1\n1\n1\n1\n1\n")
    assert played.returncode == 0, played.stderr
    assert "illegal move 'banana'; legal moves: 1, 2, 3" in played.stdout
    assert "illegal move '9'" in played.stdout
    assert any(verdict in played.stdout for verdict in ("you win", "you lose"))


def test_unknown_env_id_lists_registered_ids(tmp_path: Path):
    result = run_cli("play", "env.id=usertest/Nope-v0", "env.module=nim",
                     cwd=user_directory(tmp_path))
    assert result.returncode == 2
    assert "unknown env id 'usertest/Nope-v0'" in result.stderr
    assert "usertest/Nim-v0" in result.stderr and "selfplay/TicTacToe-v0" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_override_gives_hydras_message_not_a_traceback(tmp_path: Path):
    result = run_cli("play", "learner.lrr=1", cwd=tmp_path)
    assert result.returncode != 0
    assert "Key 'lrr' not in 'LearnerConfig'" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_missing_user_module_is_one_clear_error(tmp_path: Path):
    result = run_cli("play", "env.id=usertest/Nim-v0", "env.module=no_such_module_xyz",
                     cwd=tmp_path)
    assert result.returncode == 2
    assert "env.module='no_such_module_xyz' could not be imported" in result.stderr
    assert "Traceback" not in result.stderr
