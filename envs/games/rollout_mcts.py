"""UCT with random-rollout evaluation over the built-in games, the whole search in numba.

A baseline reference player (selfplay/search/ holds the AlphaZero search). Each simulation
descends by UCT, adds one new child (an untried action chosen at random), plays one random game
from it and backs the result up. Tree arrays are preallocated: one node per simulation at most.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from envs.games import kernels as K


@njit(cache=True)
def _value_for_p0(st: int) -> int:
    return 1 if st == 1 else (-1 if st == 2 else 0)


@njit(cache=True)
def _search_into(gid, root, num_simulations, uct_c, states, children, visits, wins, out):
    """Run ``num_simulations`` from ``root``; write the root's child visit counts into ``out``.

    ``wins[i]`` sums results from the view of the player who moved into node i.
    """
    a_count = K.num_actions(gid)
    moves = np.empty(K.MAX_ACTIONS, dtype=np.int64)
    path = np.empty(64, dtype=np.int64)
    scratch = np.empty(root.shape[0], dtype=np.int8)
    states[0, :] = root
    children[0, :] = -1
    visits[0] = 0.0
    wins[0] = 0.0
    n_nodes = 1
    for _ in range(num_simulations):
        node = 0
        depth = 0
        path[0] = 0
        while True:
            n = K.legal_moves_into(gid, states[node], moves)
            if n == 0:
                value0 = _value_for_p0(K.status(gid, states[node]))
                break
            untried = 0
            for i in range(n):
                if children[node, moves[i]] < 0:
                    untried += 1
            if untried > 0:
                pick = np.random.randint(0, untried)
                for i in range(n):
                    if children[node, moves[i]] < 0:
                        if pick == 0:
                            a = moves[i]
                            break
                        pick -= 1
                child = n_nodes
                n_nodes += 1
                states[child, :] = states[node]
                K.apply_move(gid, states[child], a)
                children[child, :] = -1
                visits[child] = 0.0
                wins[child] = 0.0
                children[node, a] = child
                depth += 1
                path[depth] = child
                scratch[:] = states[child]
                value0 = K.playout(gid, scratch)
                break
            log_n = np.log(visits[node])
            best = -1
            best_score = -np.inf
            for i in range(n):
                c = children[node, moves[i]]
                score = wins[c] / visits[c] + uct_c * np.sqrt(log_n / visits[c])
                if score > best_score:
                    best_score = score
                    best = c
            node = best
            depth += 1
            path[depth] = node
        for d in range(depth + 1):
            i = path[d]
            visits[i] += 1.0
            mover = (K.moves_played(gid, states[i]) - 1) % 2
            wins[i] += value0 if mover == 0 else -value0
    for a in range(a_count):
        c = children[0, a]
        out[a] = visits[c] if c >= 0 else 0.0


@njit(cache=True)
def uct_search(gid: int, root: np.ndarray, num_simulations: int, uct_c: float, seed: int):
    """Root child visit counts float64 [num_actions] after ``num_simulations`` from ``root``."""
    np.random.seed(seed)
    a_count = K.num_actions(gid)
    max_nodes = num_simulations + 1
    states = np.empty((max_nodes, root.shape[0]), dtype=np.int8)
    children = np.empty((max_nodes, a_count), dtype=np.int64)
    visits = np.empty(max_nodes, dtype=np.float64)
    wins = np.empty(max_nodes, dtype=np.float64)
    out = np.zeros(a_count, dtype=np.float64)
    _search_into(gid, root, num_simulations, uct_c, states, children, visits, wins, out)
    return out


@njit(cache=True)
def uct_search_batch(gid: int, roots: np.ndarray, num_simulations: int, uct_c: float, seed: int):
    """One search per row of ``roots[N, S]``, tree memory reused; visit counts float64 [N, A]."""
    np.random.seed(seed)
    a_count = K.num_actions(gid)
    max_nodes = num_simulations + 1
    states = np.empty((max_nodes, roots.shape[1]), dtype=np.int8)
    children = np.empty((max_nodes, a_count), dtype=np.int64)
    visits = np.empty(max_nodes, dtype=np.float64)
    wins = np.empty(max_nodes, dtype=np.float64)
    out = np.zeros((roots.shape[0], a_count), dtype=np.float64)
    for b in range(roots.shape[0]):
        _search_into(gid, roots[b], num_simulations, uct_c, states, children, visits, wins, out[b])
    return out
