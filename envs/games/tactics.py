"""Tactical labels of a position, from the rules and alpha-beta: wins in one, forced blocks, the
best moves at a depth. For diagnostics (benchmarks/search_quality.py, the supervised probe) and
tests; nothing in training calls these.

- a *win in one*: the player to move has a move that ends the game in their favour;
- a *forced block*: no win in one, the opponent threatens to win at once (were it their move),
  and exactly one move leaves the opponent without a winning reply: the block.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from envs.games import alphabeta
from envs.games.kernels import kernel_id_of
from envs.protocol import Game, legal_actions


def winning_moves(game: Game, state: np.ndarray) -> np.ndarray:
    """Actions (int64, ascending) with which the player to move wins at once."""
    me = game.to_play(state)
    out = []
    for a in legal_actions(game, state):
        outcome = game.outcome(game.next_state(state, int(a)))
        if outcome is not None and outcome.value_for(me) > 0:
            out.append(int(a))
    return np.asarray(out, dtype=np.int64)


def safe_moves(game: Game, state: np.ndarray) -> np.ndarray:
    """Actions after which the opponent has no winning reply (a move that ends the game is safe)."""
    out = []
    for a in legal_actions(game, state):
        child = game.next_state(state, int(a))
        if game.outcome(child) is not None or winning_moves(game, child).size == 0:
            out.append(int(a))
    return np.asarray(out, dtype=np.int64)


def passed(game: Game, state: np.ndarray) -> np.ndarray:
    """The same stones with the other side to move (for a ``BoardGame``, whose move counter's
    parity says who moves): what the opponent could do if the mover passed."""
    count = getattr(game, "_count_index", None)
    if count is None:
        raise TypeError(f"{game.name}: passing needs a BoardGame (a move counter in the state)")
    t = np.array(state, copy=True)
    t[count] += -1 if t[count] > 0 else 1
    return t


def threats(game: Game, state: np.ndarray) -> np.ndarray:
    """The opponent's winning moves if it were to move now (int64, ascending)."""
    return winning_moves(game, passed(game, state))


@dataclass(frozen=True)
class Tactic:
    kind: str  # "win" (a win in one) or "block" (a forced block)
    targets: np.ndarray  # int64: the winning moves, or the one blocking move


def classify(game: Game, state: np.ndarray) -> Tactic | None:
    """The position's tactic, or None when it is neither a win in one nor a forced block (a
    finished game is neither)."""
    if game.outcome(state) is not None:
        return None
    wins = winning_moves(game, state)
    if wins.size:
        return Tactic("win", wins)
    if threats(game, state).size == 0 or legal_actions(game, state).size < 2:
        return None
    safe = safe_moves(game, state)
    return Tactic("block", safe) if safe.size == 1 else None


def alphabeta_scores(game: Game, state: np.ndarray, depth: int) -> np.ndarray:
    """int64 [A]: ``envs.games.alphabeta.root_scores`` (exact for the moves that tie the best,
    upper bounds below it for the others, ``NEG_INF`` on illegal moves); built-in games only."""
    gid = kernel_id_of(game)
    if gid is None:
        raise TypeError(f"{game.name}: alpha-beta runs on the built-in games only")
    return alphabeta.root_scores(gid, np.ascontiguousarray(state), int(depth))


def best_moves(game: Game, state: np.ndarray, depth: int) -> np.ndarray:
    """bool [A]: the moves that tie alpha-beta's best score at ``depth`` plies."""
    scores = alphabeta_scores(game, state, depth)
    return scores == scores.max()


def random_positions(game: Game, rng: np.random.Generator, *, min_ply: int = 0,
                     max_ply: int | None = None) -> Iterator[np.ndarray]:
    """An endless stream of distinct non-terminal positions of uniformly random games: one
    position per game, at a ply drawn uniformly from [min_ply, max_ply] (clipped to the game's
    length)."""
    seen: set[bytes] = set()
    while True:
        s = game.initial_state()
        path = []
        while game.outcome(s) is None and (max_ply is None or len(path) <= max_ply):
            path.append(s)
            s = game.next_state(s, int(rng.choice(legal_actions(game, s))))
        if len(path) <= min_ply:
            continue
        s = path[int(rng.integers(min_ply, len(path)))]
        key = s.tobytes()
        if key not in seen:
            seen.add(key)
            yield s


__all__ = ["Tactic", "alphabeta_scores", "best_moves", "classify", "passed", "random_positions",
           "safe_moves", "threats", "winning_moves"]
