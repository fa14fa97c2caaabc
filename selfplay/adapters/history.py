"""``HistoryGame``: the ``Game`` protocol over another library's stateful game engine.

Engines such as OpenSpiel or TextArena keep a position in an object we cannot store in a numpy
array, but search, replay and the arena want states that are small arrays. Here the state *is*
the list of moves played, and the engine object behind it is rebuilt on demand (kept in an LRU
cache, so a search that expands a child of a node it just visited replays nothing).

State layout (int32 ``[2 + max_moves]``): ``[0]`` moves played ``n``, ``[1]`` forfeit (0 none,
1 + the player who made an illegal move), ``[2 : 2 + n]`` the action indices played.

Players must alternate (the search backs values up with a sign flip at every ply), so the player
to move is ``(first_player + n) % 2`` and every move is checked against the engine: a move after
which the same player is to move again raises ``GameRulesError``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from envs.protocol import GameOutcome, IllegalActionError

IDX_MOVES = 0
IDX_FORFEIT = 1
HEADER = 2
OBS_CHARSET = "".join(chr(c) for c in range(32, 127)) + "\n"  # what the byte-level LM reads


class GameRulesError(ValueError):
    """An adapted game broke what the adapter relies on (alternating moves, stable move texts)."""


def to_charset(text: str) -> str:
    """``text`` in the observation charset: tabs as spaces, other characters outside it as '?'."""
    text = text.replace("\r\n", "\n").replace("\t", " ")
    if all(ch in OBS_CHARSET for ch in text):
        return text
    return "".join(ch if ch in OBS_CHARSET else "?" for ch in text)


@dataclass
class _Node:
    """One engine position and what has been asked of it (computed once)."""

    engine: Any
    legal: np.ndarray | None = None  # bool [num_actions]
    value: float | None = None  # player 0's result once terminal
    terminal: bool | None = None
    text: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class HistoryGame:
    """A ``Game`` whose state is the move history; subclasses supply the engine hooks:

    - ``_new_engine()`` the engine's initial position;
    - ``_child(engine, action)`` a new engine position after ``action`` (never mutating);
    - ``_engine_to_play(engine)`` the player (0/1) the engine says is to move;
    - ``_engine_legal(engine)`` the legal action indices;
    - ``_engine_result(engine)`` player 0's result (+1/0/-1, any sign) or None while in play;
    - ``_engine_text(engine)`` the position as text;
    - ``action_to_text`` / ``text_to_action``.
    """

    name: str
    num_actions: int
    state_shape: tuple[int, ...]
    first_player: int = 0

    def __init__(self, name: str, num_actions: int, max_moves: int, cache_size: int = 20_000):
        self.name = name
        self.num_actions = int(num_actions)
        self.max_moves = int(max_moves)
        self.state_shape = (HEADER + self.max_moves,)
        self._cache: OrderedDict[bytes, _Node] = OrderedDict()
        self._cache_size = int(cache_size)

    # -- engine hooks --------------------------------------------------------------------------

    def _new_engine(self) -> Any:
        raise NotImplementedError

    def _child(self, engine: Any, action: int) -> Any:
        raise NotImplementedError

    def _engine_to_play(self, engine: Any) -> int:
        raise NotImplementedError

    def _engine_legal(self, engine: Any) -> list[int]:
        raise NotImplementedError

    def _engine_result(self, engine: Any) -> float | None:
        raise NotImplementedError

    def _engine_text(self, engine: Any) -> str:
        raise NotImplementedError

    def action_to_text(self, action: int) -> str:
        raise NotImplementedError

    def text_to_action(self, text: str) -> int | None:
        raise NotImplementedError

    # -- the Game protocol ---------------------------------------------------------------------

    def initial_state(self) -> np.ndarray:
        return np.zeros(self.state_shape, dtype=np.int32)

    def to_play(self, state: np.ndarray) -> int:
        return (self.first_player + int(state[IDX_MOVES])) % 2

    def legal_mask(self, state: np.ndarray) -> np.ndarray:
        node = self._node(state)
        if int(state[IDX_FORFEIT]) or self._is_terminal(node):
            return np.zeros(self.num_actions, dtype=np.bool_)
        if node.legal is None:
            mask = np.zeros(self.num_actions, dtype=np.bool_)
            mask[np.asarray(self._engine_legal(node.engine), dtype=np.int64)] = True
            node.legal = mask
        return node.legal.copy()

    def next_state(self, state: np.ndarray, action: int) -> np.ndarray:
        action = int(action)
        if not (0 <= action < self.num_actions) or not self.legal_mask(state)[action]:
            raise IllegalActionError(action, self._legal_texts(state))
        n = int(state[IDX_MOVES])
        if n >= self.max_moves:
            raise GameRulesError(f"{self.name}: more than max_moves={self.max_moves} moves")
        node = self._advance(self._node(state), action, self.to_play(state), n + 1)
        new = state.copy()
        new[HEADER + n] = action
        new[IDX_MOVES] = n + 1
        self._remember(self._key(new), node)
        return new

    def outcome(self, state: np.ndarray) -> GameOutcome | None:
        forfeit = int(state[IDX_FORFEIT])
        if forfeit:
            return GameOutcome(-1.0 if forfeit == 1 else 1.0, reason="illegal_move")
        node = self._node(state)
        if not self._is_terminal(node):
            return None
        return GameOutcome(float(np.sign(node.value)) + 0.0)  # + 0.0: no -0.0 draws

    def forfeit(self, state: np.ndarray) -> np.ndarray:
        """A copy of ``state`` ended as a loss for the player to move (after an illegal move)."""
        new = state.copy()
        new[IDX_FORFEIT] = 1 + self.to_play(state)
        return new

    def render_text(self, state: np.ndarray) -> str:
        node = self._node(state)
        if node.text is None:
            node.text = to_charset(self._engine_text(node.engine))
        forfeit = int(state[IDX_FORFEIT])
        if forfeit:
            header = f"player {forfeit - 1} lost by an illegal move"
        elif self._is_terminal(node):
            v = float(np.sign(node.value))
            header = "draw" if v == 0 else f"player {0 if v > 0 else 1} won"
        else:
            header = f"player {self.to_play(state)} to move"
        body = node.text if node.text.endswith("\n") else node.text + "\n"
        return f"{header}\n{body}"

    # -- the engine positions behind states ----------------------------------------------------

    def _legal_texts(self, state: np.ndarray) -> list[str]:
        return [self.action_to_text(int(a)) for a in np.flatnonzero(self.legal_mask(state))]

    def _is_terminal(self, node: _Node) -> bool:
        if node.terminal is None:
            value = self._engine_result(node.engine)
            node.terminal, node.value = value is not None, value
        return bool(node.terminal)

    def _key(self, state: np.ndarray) -> bytes:
        return state[HEADER : HEADER + int(state[IDX_MOVES])].tobytes()

    def _remember(self, key: bytes, node: _Node) -> None:
        self._cache[key] = node
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _node(self, state: np.ndarray) -> _Node:
        """The engine position of ``state``: from the cache, else replayed from the longest
        cached prefix (or the start). ``ValueError`` for an array that is not a legal history."""
        state = np.asarray(state)
        if state.shape != self.state_shape:
            raise ValueError(f"{self.name}: state shape {state.shape}, expected {self.state_shape}")
        n = int(state[IDX_MOVES])
        if not 0 <= n <= self.max_moves:
            raise ValueError(f"{self.name}: state says {n} moves, outside 0..{self.max_moves}")
        history = np.ascontiguousarray(state[HEADER : HEADER + n], dtype=np.int32)
        key = history.tobytes()
        node = self._cache.get(key)
        if node is not None:
            self._cache.move_to_end(key)
            return node
        start = n - 1
        while start >= 0 and history[:start].tobytes() not in self._cache:
            start -= 1
        if start < 0:
            start, node = 0, _Node(self._new_engine())
            self._remember(b"", node)
        else:
            node = self._cache[history[:start].tobytes()]
        for k in range(start, n):
            action = int(history[k])
            legal = () if self._is_terminal(node) else self._engine_legal(node.engine)
            if action not in legal:
                raise ValueError(f"{self.name}: move {k + 1} of the state ({action}) is not legal")
            node = self._advance(node, action, (self.first_player + k) % 2, k + 1)
            self._remember(history[: k + 1].tobytes(), node)
        return node

    def _advance(self, node: _Node, action: int, mover: int, move_number: int) -> _Node:
        """The position after ``mover`` plays ``action`` (legal) from ``node``; checks that the
        other player moves next."""
        child = _Node(self._child(node.engine, action))
        if not self._is_terminal(child) and self._engine_to_play(child.engine) != 1 - mover:
            raise GameRulesError(
                f"{self.name}: player {mover} is to move again after move {move_number} "
                f"({self.action_to_text(action)!r}); the adapter needs games whose players "
                "alternate (multi-part moves, such as several captures in a row, are not "
                "supported)")
        return child
