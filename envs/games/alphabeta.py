"""Depth-limited negamax with alpha-beta pruning over the built-in games, in numba.

Leaves are scored by the game's heuristic (``kernels.heuristic``, from the player to move);
a finished game scores +-(WIN + remaining depth) so that sooner wins and later losses rank first.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from envs.games import kernels as K

WIN = 1_000_000
NEG_INF = -(1 << 40)  # below any score; marks illegal root actions


@njit(cache=True)
def _ordered_moves(gid: int, s: np.ndarray, out: np.ndarray) -> int:
    n = K.legal_moves_into(gid, s, out)
    for i in range(1, n):  # insertion sort by rank: at most 9 moves
        a = out[i]
        j = i - 1
        while j >= 0 and K.move_rank(gid, out[j]) > K.move_rank(gid, a):
            out[j + 1] = out[j]
            j -= 1
        out[j + 1] = a
    return n


@njit(cache=True)
def _leaf_value(gid: int, s: np.ndarray, remaining: int) -> int:
    st = K.status(gid, s)
    if st == 3:
        return 0
    if st != 0:
        return -(WIN + remaining)  # the player who just moved won
    return K.heuristic(gid, s)


@njit(cache=True)
def negamax(
    gid: int, stack: np.ndarray, moves: np.ndarray, depth: int, alpha: int, beta: int
) -> int:
    """Fail-soft alpha-beta score of ``stack[0]`` for its player to move, searched ``depth`` plies.

    Iterative with explicit per-ply arrays: numba's on-disk cache cannot hold recursive
    functions (loading one crashes), and the loop is no slower. ``stack`` [depth+1, S] and
    ``moves`` [depth+1, MAX_ACTIONS] are scratch space.
    """
    if depth <= 0 or K.status(gid, stack[0]) != 0:
        return _leaf_value(gid, stack[0], depth)
    n_moves = np.zeros(depth + 1, dtype=np.int64)
    next_i = np.zeros(depth + 1, dtype=np.int64)
    alphas = np.zeros(depth + 1, dtype=np.int64)
    betas = np.zeros(depth + 1, dtype=np.int64)
    bests = np.zeros(depth + 1, dtype=np.int64)
    n_moves[0] = _ordered_moves(gid, stack[0], moves[0])
    alphas[0] = alpha
    betas[0] = beta
    bests[0] = NEG_INF
    ply = 0
    while True:
        if next_i[ply] < n_moves[ply] and alphas[ply] < betas[ply]:
            a = moves[ply, next_i[ply]]
            next_i[ply] += 1
            c = ply + 1
            stack[c, :] = stack[ply]
            K.apply_move(gid, stack[c], a)
            remaining = depth - c
            if remaining == 0 or K.status(gid, stack[c]) != 0:
                v = -_leaf_value(gid, stack[c], remaining)
            else:
                n_moves[c] = _ordered_moves(gid, stack[c], moves[c])
                next_i[c] = 0
                alphas[c] = -betas[ply]
                betas[c] = -alphas[ply]
                bests[c] = NEG_INF
                ply = c
                continue
        else:
            if ply == 0:
                return bests[0]
            v = -bests[ply]
            ply -= 1
        bests[ply] = max(bests[ply], v)
        alphas[ply] = max(alphas[ply], v)


@njit(cache=True)
def root_scores(gid: int, root: np.ndarray, depth: int) -> np.ndarray:
    """int64 [num_actions]: the exact score of every legal action that ties the best one, an
    upper bound below the best for the others, ``NEG_INF`` for illegal actions."""
    stack = np.empty((depth + 1, root.shape[0]), dtype=np.int8)
    moves = np.empty((depth + 1, K.MAX_ACTIONS), dtype=np.int64)
    root_moves = np.empty(K.MAX_ACTIONS, dtype=np.int64)
    out = np.full(K.num_actions(gid), NEG_INF, dtype=np.int64)
    n = _ordered_moves(gid, root, root_moves)
    best = NEG_INF
    for i in range(n):
        a = root_moves[i]
        stack[0, :] = root
        K.apply_move(gid, stack[0], a)
        # A window just below the best so far: ties are scored exactly, worse moves cut early.
        v = -negamax(gid, stack, moves, depth - 1, NEG_INF, -(best - 1))
        out[a] = v
        best = max(best, v)
    return out
