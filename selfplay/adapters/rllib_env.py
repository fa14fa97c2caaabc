"""Our two-player games as RLlib ``MultiAgentEnv``s (new API stack), registered with Tune.

Agents "player_0" (moves first) and "player_1" alternate; only the player to move gets an
observation, so RLlib asks only it for an action. An observation is the convention of RLlib's
action-masking example, ``Dict({"observations": Box, "action_mask": Box})``:

- "observations": float32 [2 * cells], two planes relative to the agent it is for: its own
  pieces, then the opponent's, row by row as ``game.board_lines`` draws them. A ``Game`` without
  ``board_lines`` (a user's game) gets its raw state as float32 instead;
- "action_mask": float32 [num_actions], 1.0 where the action is legal.

The action is a ``Discrete(num_actions)`` index. Anything that is not a legal index (an occupied
cell, out of range, a float, ``None``, no action for the mover at all) loses the game for the
mover and ends the episode, as the native env's ``illegal_action="lose"`` does: reward -1 to the
mover, +1 to the other player. At the end each agent that has played gets its final observation
and its reward (+1 win, 0 draw, -1 loss, the result the native env reports).

``register_rllib_envs()`` registers every built-in two-player game with Tune as
``selfplay_<game name>`` (``selfplay_tictactoe``, ``selfplay_connect_four``); a user's game is
registered by its id (``register_rllib_env("usertest/Nim-v0", module=...)``). A game without
``board_lines`` must keep its state at ``state_shape``: that state, as float32, is its observation.
"""

from __future__ import annotations

import numbers
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from envs.games.base import TwoPlayerGameEnv
from envs.protocol import Game

AGENTS = ("player_0", "player_1")
TUNE_PREFIX = "selfplay_"
ENV_CONFIG_KEYS = ("env_id", "module", "kwargs")  # what an RLlib env_config may hold

_MARKS = (ord("X"), ord("O"))  # the absolute marks of player 0 and player 1 in board_lines


# ---- observations (pure functions of a game state) --------------------------------------


def board_planes(game: Game, state: np.ndarray, player: int) -> np.ndarray:
    """float32 [2 * cells]: ``player``'s pieces, then the opponent's (raw state for non-boards)."""
    lines = getattr(game, "board_lines", None)
    if lines is None:
        raw = np.asarray(state, dtype=np.float32).reshape(-1)
        if raw.size != int(np.prod(game.state_shape)):  # e.g. a state that is a move history
            raise ValueError(f"{game.name}: a state of {raw.size} numbers, not state_shape "
                             f"{tuple(game.state_shape)}; RLlib needs observations of one size")
        return raw
    cells = np.frombuffer("".join(lines(state)).encode("ascii"), dtype=np.uint8)
    mine, theirs = _MARKS[player], _MARKS[1 - player]
    return np.concatenate([cells == mine, cells == theirs]).astype(np.float32)


def observation_of(game: Game, state: np.ndarray, player: int) -> dict[str, np.ndarray]:
    """The observation ``player`` gets for ``state`` (the mask is all zeros once it is over)."""
    return {"observations": board_planes(game, state, player),
            "action_mask": np.asarray(game.legal_mask(state), dtype=np.float32)}


def observation_space_of(game: Game) -> gym.spaces.Dict:
    size = int(board_planes(game, game.initial_state(), 0).size)
    low, high = (0.0, 1.0) if hasattr(game, "board_lines") else (-np.inf, np.inf)
    return gym.spaces.Dict({
        "observations": gym.spaces.Box(low, high, (size,), np.float32),
        "action_mask": gym.spaces.Box(0.0, 1.0, (int(game.num_actions),), np.float32),
    })


def as_action_index(action: Any, num_actions: int) -> int | None:
    """An in-range integer index (Python or numpy scalar, or a 0-d integer array), else None."""
    if isinstance(action, np.ndarray) and action.ndim == 0:
        action = action.item()
    if isinstance(action, bool) or not isinstance(action, numbers.Integral):
        return None
    return int(action) if 0 <= int(action) < num_actions else None


# ---- the env ---------------------------------------------------------------------------------


class GameMultiAgentEnv(MultiAgentEnv):
    """A ``Game`` as a turn-based RLlib multi-agent env (see the module docstring)."""

    def __init__(self, game: Game):
        super().__init__()
        self.game = game
        self.agents = self.possible_agents = list(AGENTS)
        space = observation_space_of(game)
        self.observation_spaces = {a: space for a in AGENTS}
        self.action_spaces = {a: gym.spaces.Discrete(int(game.num_actions)) for a in AGENTS}
        self.state = game.initial_state()
        self.moves: list[int] = []  # the legal moves played this episode, in order
        self._observed: set[int] = set()  # players that got an observation this episode
        self._over = False
        self.outcome_for_player0: float | None = None  # set when the episode ends

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        # The rules are deterministic; the seed only feeds RLlib's own bookkeeping.
        self.state = self.game.initial_state()
        self.moves, self._observed, self._over = [], set(), False
        self.outcome_for_player0 = None
        return self._observe_mover(), {}

    def step(self, action_dict: dict):
        if self._over:
            raise RuntimeError(f"{self.game.name}: the episode is over; call reset() first")
        mover = int(self.game.to_play(self.state))
        action = action_dict.get(AGENTS[mover]) if isinstance(action_dict, dict) else None
        index = as_action_index(action, int(self.game.num_actions))
        if index is None or not self.game.legal_mask(self.state)[index]:
            forfeit = getattr(self.game, "forfeit", None)  # the native env's end of the game
            if forfeit is not None:
                self.state = forfeit(self.state)
            return self._finish(value_for_player0=-1.0 if mover == 0 else 1.0,
                                info={"illegal_action": True, "action": repr(action)[:80]})
        self.state = self.game.next_state(self.state, index)
        self.moves.append(index)
        outcome = self.game.outcome(self.state)
        if outcome is not None:
            return self._finish(outcome.value_for_player0, info={"illegal_action": False})
        return self._observe_mover(), {}, {"__all__": False}, {"__all__": False}, {}

    # -- helpers --------------------------------------------------------------------------------

    def _observe_mover(self) -> dict[str, dict[str, np.ndarray]]:
        mover = int(self.game.to_play(self.state))
        self._observed.add(mover)
        return {AGENTS[mover]: observation_of(self.game, self.state, mover)}

    def _finish(self, value_for_player0: float, info: dict[str, Any]):
        """End the episode: each player that has played gets its last observation and reward."""
        self._over = True
        self.outcome_for_player0 = float(value_for_player0)
        players = sorted(self._observed)
        obs = {AGENTS[p]: observation_of(self.game, self.state, p) for p in players}
        rewards = {AGENTS[p]: float(value_for_player0 if p == 0 else -value_for_player0)
                   for p in players}
        terminated = {**{AGENTS[p]: True for p in players}, "__all__": True}
        infos = {AGENTS[p]: dict(info) for p in players}
        return obs, rewards, terminated, {"__all__": False}, infos

    def render(self) -> str:
        return self.game.render_text(self.state)


# ---- construction and registration -----------------------------------------------------------


def game_for(env_id: str, module: str | None = None, kwargs: dict | None = None) -> Game:
    """The ``Game`` behind a registered two-player env id; ValueError naming it otherwise."""
    from envs.registration import make_env
    from selfplay.build import game_of

    game = game_of(make_env(env_id, module, **dict(kwargs or {})))
    if game is None:
        raise ValueError(f"{env_id} is not a two-player game; RLlib self-play needs one "
                         "(e.g. selfplay/TicTacToe-v0, selfplay/ConnectFour-v0)")
    return game


def make_rllib_env(env_config: dict | None) -> GameMultiAgentEnv:
    """The env creator RLlib calls with its ``env_config`` (keys: ENV_CONFIG_KEYS)."""
    config = dict(env_config or {})
    unknown = sorted(set(config) - set(ENV_CONFIG_KEYS))
    if unknown or "env_id" not in config:
        raise ValueError(f"RLlib env_config {config!r}: needs 'env_id' and takes only "
                         f"{', '.join(ENV_CONFIG_KEYS)} (unknown: {', '.join(unknown) or '-'})")
    return GameMultiAgentEnv(game_for(config["env_id"], config.get("module"),
                                      config.get("kwargs")))


def builtin_game_env_ids() -> list[str]:
    """The built-in env ids (envs/registration.py) whose env class is a ``TwoPlayerGameEnv``."""
    from gymnasium.envs.registration import load_env_creator

    from envs.registration import BUILTIN_ENVS

    return sorted(line.id for line in BUILTIN_ENVS
                  if issubclass(load_env_creator(line.entry_point), TwoPlayerGameEnv))


def tune_name(game: Game) -> str:
    return f"{TUNE_PREFIX}{game.name}"


def register_rllib_env(env_id: str, module: str | None = None) -> str:
    """Register one two-player env with Tune; returns its name, ``selfplay_<game name>``."""
    from ray.tune.registry import register_env

    name = tune_name(game_for(env_id, module))
    defaults = {"env_id": env_id, "module": module}
    register_env(name, lambda env_config: make_rllib_env({**defaults, **dict(env_config or {})}))
    return name


def register_rllib_envs(env_ids: list[str] | None = None) -> dict[str, str]:
    """Two-player games with Tune (default: every built-in one): {tune name: gymnasium id}.

    A user's or an adapter's game (``selfplay.register_env``) is registered by naming its id
    here or with ``register_rllib_env(env_id, module)``; the RLlib recipe registers the one it
    trains on.
    """
    return {register_rllib_env(env_id): env_id for env_id in (env_ids or builtin_game_env_ids())}
