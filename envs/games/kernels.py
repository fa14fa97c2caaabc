"""One entry point per rule kernel, selected by a game's ``kernel_id``, so that generic numba
searches (rollout MCTS, alpha-beta) compile once for every built-in game.

A branch on an integer is cheaper and simpler than passing jitted functions around, and it keeps
every kernel cacheable on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from envs.games import connect_four as c4
from envs.games import tictactoe as ttt

TICTACTOE = ttt.TicTacToe.kernel_id
CONNECT_FOUR = c4.ConnectFour.kernel_id
MAX_ACTIONS = 9

# Move ordering for alpha-beta: a smaller rank is searched first (centre first).
_RANK_TTT = np.array([1, 2, 1, 2, 0, 2, 1, 2, 1], dtype=np.int64)
_RANK_C4 = np.array([3, 2, 1, 0, 1, 2, 3, 9, 9], dtype=np.int64)


@njit(cache=True)
def num_actions(gid: int) -> int:
    return ttt.NUM_ACTIONS if gid == TICTACTOE else c4.NUM_ACTIONS


@njit(cache=True)
def legal_moves_into(gid: int, s: np.ndarray, out: np.ndarray) -> int:
    if gid == TICTACTOE:
        return ttt.legal_moves_into(s, out)
    return c4.legal_moves_into(s, out)


@njit(cache=True)
def apply_move(gid: int, s: np.ndarray, a: int) -> int:
    if gid == TICTACTOE:
        return ttt.apply_move(s, a)
    return c4.apply_move(s, a)


@njit(cache=True)
def status(gid: int, s: np.ndarray) -> int:
    return s[ttt.IDX_STATUS] if gid == TICTACTOE else s[c4.IDX_STATUS]


@njit(cache=True)
def moves_played(gid: int, s: np.ndarray) -> int:
    return s[ttt.IDX_COUNT] if gid == TICTACTOE else s[c4.IDX_COUNT]


@njit(cache=True)
def playout(gid: int, s: np.ndarray) -> int:
    if gid == TICTACTOE:
        return ttt.playout(s)
    return c4.playout(s)


@njit(cache=True)
def heuristic(gid: int, s: np.ndarray) -> int:
    if gid == TICTACTOE:
        return ttt.heuristic(s)
    return c4.heuristic(s)


@njit(cache=True)
def move_rank(gid: int, a: int) -> int:
    return _RANK_TTT[a] if gid == TICTACTOE else _RANK_C4[a]


def kernel_id_of(game: object) -> int | None:
    """The kernel id of a built-in game, None for any other ``Game``."""
    gid = getattr(game, "kernel_id", None)
    return gid if gid in (TICTACTOE, CONNECT_FOUR) else None
