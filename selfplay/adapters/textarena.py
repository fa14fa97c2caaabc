"""TextArena's two-player board games as selfplay game envs (``pip install 'selfplay[textarena]'``).

A TextArena game whose moves can be listed (a fixed vocabulary such as tic-tac-toe's ``[0]``..
``[8]``) becomes a ``Game`` like the built-ins, so the policy plays both sides in self-play with
search, and the arena plays it against the reference players (``random``, ``alphabeta:D``,
``mcts:N``, plain-Python fallbacks). TextArena's own rules decide everything: the legal moves
(a move is legal when TextArena accepts it), the next position, the winner. The observation is
what TextArena shows the player to move: its latest board message and what happened since (and,
with ``prompt=True``, TextArena's instructions to that player first).

    # conf/env/textarena_tictactoe.yaml
    selfplay train env=textarena_tictactoe run.dir=runs/ta-ttt
    selfplay play env=textarena_tictactoe player=random
    selfplay envs --import selfplay.adapters.textarena

    import selfplay.adapters.textarena              # registers the ids below, once
    env = selfplay.make_env("textarena/TicTacToe-v0")
    env = selfplay.make_env("textarena/Game-v0", game="ConnectFour-v0-large",
                            moves=[f"[{c}]" for c in range(15)], max_moves=180)

Ids: ``textarena/<Game>-v0`` for the games listed in ``GAMES`` (their move vocabularies are
known), and ``textarena/Game-v0`` for any other two-player TextArena game given its ``moves``
(every move text a player may write) and ``max_moves`` (a bound on a game's length). Importing
this module registers them (``register()``; a config names the module in ``env.module``).

An illegal or malformed move (anything but one of the legal move texts, exactly) ends the game
as a loss for the player who wrote it: reward -1, ``info["illegal_action"]`` (the framework's
rule; TextArena's allowance of one retry is not used), or ``IllegalActionError`` with
``illegal_action="raise"``. TextArena's games must be deterministic here (no dice or shuffles):
TextArena seeds Python's global ``random`` on reset; the adapter restores that state afterwards.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.games.base import TwoPlayerGameEnv
from envs.registration import register_env
from selfplay.adapters.history import OBS_CHARSET, HistoryGame

try:
    import textarena
    from textarena.envs.registration import ENV_REGISTRY
except ImportError as err:  # the extra is not installed
    raise ImportError(
        "selfplay.adapters.textarena needs TextArena: pip install 'selfplay[textarena]' "
        f"(textarena==0.7.4); {err}"
    ) from None

OBS_MAX_LENGTH = 4_096  # a board message, what followed it and (prompt=True) the instructions
GENERIC_ID = "textarena/Game-v0"
_BOARD = textarena.ObservationType.GAME_BOARD
_PROMPT = textarena.ObservationType.PROMPT


# ------------------------------------------------------------------------------------------------
# The games whose moves are known


def _tictactoe_legal(env: Any) -> list[int]:
    board = env.state.game_state["board"]
    return [3 * r + c for r in range(3) for c in range(3) if board[r][c] == ""]


def _connect_four_legal(env: Any) -> list[int]:
    board = env.state.game_state["board"]
    return [c for c in range(len(board[0])) if board[0][c] == "."]


@dataclass(frozen=True)
class GameSpec:
    moves: tuple[str, ...]  # every move text, by action index
    max_moves: int  # no game is longer
    legal: Callable[[Any], list[int]] | None = None  # fast rule; None: ask TextArena per move
    summary: str = ""


GAMES: dict[str, GameSpec] = {
    "TicTacToe-v0": GameSpec(tuple(f"[{i}]" for i in range(9)), 9, _tictactoe_legal,
                             "TextArena tic-tac-toe; moves '[0]'..'[8]' (cells)"),
    "ConnectFour-v0": GameSpec(tuple(f"[{c}]" for c in range(7)), 42, _connect_four_legal,
                               "TextArena connect four, 6x7; moves '[0]'..'[6]' (columns)"),
}


def _without_global_random(call: Callable[[], Any]) -> Any:
    """``call()`` with Python's global ``random`` state put back afterwards (TextArena seeds it)."""
    saved = random.getstate()
    try:
        return call()
    finally:
        random.setstate(saved)


# ------------------------------------------------------------------------------------------------
# The Game


class TextArenaGame(HistoryGame):
    """The ``Game`` protocol over a two-player TextArena env (state: the move history)."""

    def __init__(self, game: str = "TicTacToe-v0", moves: Sequence[str] | None = None,
                 max_moves: int | None = None, prompt: bool = False):
        spec = GAMES.get(game)
        if moves is None and max_moves is None and spec is not None:
            self.moves, bound, self._fast_legal = spec.moves, spec.max_moves, spec.legal
        elif moves is None or max_moves is None:
            raise ValueError(f"textarena: {game!r} needs moves=[...] (every move text) and "
                             f"max_moves=N; known games: {', '.join(sorted(GAMES))}")
        else:
            self.moves, bound, self._fast_legal = tuple(str(m) for m in moves), int(max_moves), None
        if not self.moves or len({m.strip() for m in self.moves}) != len(self.moves):
            raise ValueError(f"textarena {game}: moves must be distinct, non-empty texts")
        if any(m != m.strip() or not m for m in self.moves):
            raise ValueError(f"textarena {game}: a move text is empty or has outer spaces")
        self.raw_id = f"{game}-raw" if f"{game}-raw" in ENV_REGISTRY else game
        if self.raw_id not in ENV_REGISTRY:
            raise ValueError(f"textarena: unknown game {game!r}; known with their moves: "
                             f"{', '.join(sorted(GAMES))} (or any TextArena id with moves=...)")
        self.prompt = bool(prompt)
        self._index_of = {m: i for i, m in enumerate(self.moves)}
        super().__init__(f"textarena/{game}", len(self.moves), bound)
        root = self._new_engine()  # fails here, not in a rollout, for a game we cannot play
        first = int(root.state.current_player_id)
        if first not in (0, 1):
            raise ValueError(f"textarena {game}: the first player is {first}, not 0 or 1")
        self.first_player = first

    # -- moves ---------------------------------------------------------------------------------

    def action_to_text(self, action: int) -> str:
        if not 0 <= int(action) < self.num_actions:
            raise ValueError(f"{self.name}: action {action} outside 0..{self.num_actions - 1}")
        return self.moves[int(action)]

    def text_to_action(self, text: str) -> int | None:
        return self._index_of.get(text.strip()) if isinstance(text, str) else None

    # -- engine hooks ----------------------------------------------------------------------------

    def _new_engine(self) -> Any:
        def make() -> Any:
            env = textarena.make(self.raw_id)
            env.reset(num_players=2, seed=0)
            return env

        try:
            env = _without_global_random(make)
        except Exception as err:  # noqa: BLE001  (any game's failure to start: one clear error)
            first = next((ln.strip() for ln in str(err).splitlines()
                          if any(c.isalnum() for c in ln)), "")
            raise ValueError(f"textarena {self.raw_id}: cannot start a two-player game: "
                             f"{type(err).__name__}: {first[:300]}") from None
        state = getattr(env, "state", None)
        if not all(hasattr(state, a) for a in ("current_player_id", "done", "rewards")):
            raise ValueError(f"textarena {self.raw_id}: not a turn-based two-player game")
        state.error_allowance = 0  # an invalid move ends the game: what trial moves detect
        return env

    def _child(self, engine: Any, action: int) -> Any:
        child = copy.deepcopy(engine)
        _without_global_random(lambda: child.step(self.moves[action]))
        _trim(child)
        return child

    def _engine_to_play(self, engine: Any) -> int:
        return int(engine.state.current_player_id)

    def _engine_legal(self, engine: Any) -> list[int]:
        if self._fast_legal is not None:
            return self._fast_legal(engine)
        player = int(engine.state.current_player_id)
        legal = []
        for index, move in enumerate(self.moves):  # TextArena's own rules, one move at a time
            trial = copy.deepcopy(engine)
            _without_global_random(lambda t=trial, m=move: t.step(m))
            if not trial.state.game_info[player].get("invalid_move", False):
                legal.append(index)
        return legal

    def _engine_result(self, engine: Any) -> float | None:
        state = engine.state
        if not state.done:
            return None
        rewards = state.rewards or {}
        return float(np.sign(float(rewards.get(0, 0)) - float(rewards.get(1, 0))))

    def _engine_text(self, engine: Any) -> str:
        state = engine.state
        player = int(state.current_player_id)
        messages = state.observations.get(player, [])
        boards = [i for i, m in enumerate(messages) if m[2] == _BOARD]
        since = messages[boards[-1]:] if boards else messages
        lines = [m[1] for m in messages if m[2] == _PROMPT] if self.prompt else []
        lines += [m[1] for m in since if m[2] != _PROMPT]
        if state.done:
            reason = state.game_info.get(player, {}).get("reason")
            if reason:
                lines.append(str(reason))
        return "\n".join(lines)


def _trim(env: Any) -> None:
    """Keep of each player's messages the prompt and those from the latest board on (all the text
    reads): the history would make every copy of a position slower than the last."""
    state = env.state
    for player, messages in state.observations.items():
        boards = [i for i, m in enumerate(messages) if m[2] == _BOARD]
        if boards and boards[-1] > 0:
            prompt = [m for m in messages[: boards[-1]] if m[2] == _PROMPT]
            state.observations[player] = prompt + messages[boards[-1]:]
    if hasattr(state, "logs"):
        state.logs = []


# ------------------------------------------------------------------------------------------------
# The env


class TextArenaEnv(TwoPlayerGameEnv):
    """A gymnasium env around ``TextArenaGame``; its spaces are derived from the game's moves."""

    def __init__(self, game: str = "TicTacToe-v0", moves: Sequence[str] | None = None,
                 max_moves: int | None = None, prompt: bool = False,
                 illegal_action: str = "lose", render_mode: str | None = None):
        super().__init__(TextArenaGame(game, moves, max_moves, prompt),
                         illegal_action=illegal_action, render_mode=render_mode)

    def text_spaces(self) -> tuple[spaces.Text, spaces.Text]:
        moves_text = "".join(self.game.moves)
        action = spaces.Text(max(len(m) for m in self.game.moves), min_length=1,
                             charset="".join(sorted(set(moves_text))))
        return spaces.Text(OBS_MAX_LENGTH, min_length=1, charset=OBS_CHARSET), action


def register() -> list[str]:
    """Register ``textarena/<Game>-v0`` for the games in ``GAMES`` and ``textarena/Game-v0``;
    returns the ids. Calling it again changes nothing."""
    entry = "selfplay.adapters.textarena:TextArenaEnv"
    register_env(GENERIC_ID, entry, "any two-player TextArena game: kwargs game=, moves=[...], "
                 "max_moves=", game="TicTacToe-v0")
    ids = [GENERIC_ID]
    for game, spec in GAMES.items():
        name = game.removesuffix("-v0")
        register_env(f"textarena/{name}-v0", entry, spec.summary, game=game)
        ids.append(f"textarena/{name}-v0")
    return ids


REGISTERED_IDS = register()
