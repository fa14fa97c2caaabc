"""The exact value of every tic-tac-toe position, computed once (3**9 board codes) in numba.

``SCORES[code]`` is from the player to move: 0 a draw, negative a loss, positive a win; the
magnitude is 1 + the empty cells left when the game ends, so a sooner win scores higher and a
later loss scores less badly. ``code`` is the board in base 3 (cell i has weight 3**i).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

from envs.games import tictactoe as ttt

NUM_CODES = 3**ttt.NUM_CELLS
POW3 = 3 ** np.arange(ttt.NUM_CELLS, dtype=np.int64)


@njit(cache=True)
def _solve() -> np.ndarray:
    scores = np.zeros(NUM_CODES, dtype=np.int8)
    cells = np.zeros(ttt.STATE_SIZE, dtype=np.int8)
    pieces = np.zeros(NUM_CODES, dtype=np.int64)
    for code in range(NUM_CODES):
        x = code
        for i in range(ttt.NUM_CELLS):
            pieces[code] += x % 3 != 0
            x //= 3
    # Children have one more piece, so fuller boards are solved first.
    for filled in range(ttt.NUM_CELLS, -1, -1):
        for code in range(NUM_CODES):
            if pieces[code] != filled:
                continue
            x = code
            n_x = 0
            n_o = 0
            for i in range(ttt.NUM_CELLS):
                cells[i] = x % 3
                n_x += cells[i] == 1
                n_o += cells[i] == 2
                x //= 3
            if n_x != n_o and n_x != n_o + 1:
                continue  # unreachable
            empties = ttt.NUM_CELLS - filled
            if ttt.winner(cells) != 0:
                scores[code] = -(empties + 1)  # the player who just moved completed a line
                continue
            if empties == 0:
                continue  # a draw
            piece = 1 if n_x == n_o else 2
            best = -100
            for i in range(ttt.NUM_CELLS):
                if cells[i] == 0:
                    v = -scores[code + piece * POW3[i]]
                    best = max(best, v)
            scores[code] = best
    return scores


@functools.cache
def score_table() -> np.ndarray:
    """int8 [3**9] scores for the player to move (read-only)."""
    table = _solve()
    table.flags.writeable = False
    return table


def board_code(state: np.ndarray) -> int:
    return int(np.dot(state[: ttt.NUM_CELLS].astype(np.int64), POW3))


def action_scores(state: np.ndarray) -> np.ndarray:
    """int64 [9]: the score each legal action leads to for the mover; illegal actions -1000."""
    table = score_table()
    code = board_code(state)
    piece = int(state[ttt.IDX_COUNT]) % 2 + 1
    out = np.full(ttt.NUM_ACTIONS, -1000, dtype=np.int64)
    for a in np.flatnonzero(ttt.legal_mask(state)):
        out[a] = -int(table[code + piece * POW3[a]])
    return out


def value(state: np.ndarray) -> int:
    """The exact game value for the player to move: +1 win, 0 draw, -1 loss (finished games too)."""
    st = int(state[ttt.IDX_STATUS])
    if st == 3:
        return 0
    if st != 0:  # a finished game: the player to move is the one who did not complete the line
        return 1 if st == int(state[ttt.IDX_COUNT]) % 2 + 1 else -1
    return int(np.sign(score_table()[board_code(state)]))
