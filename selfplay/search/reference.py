"""A plain-Python PUCT search of ONE tree: the readable reference for ``run_mcts``.

Same rules as ``run_mcts`` with ``leaves_per_tree=1`` and no root noise (root counted as one
visit, Q of an unvisited child 0, lowest index on ties, exact values backed up on terminal
revisits), written with node objects and recursion so that it can be checked by eye. Tests
compare the two visit for visit; benchmarks use it as the baseline for the numba search.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# step(path) -> (priors [A], value, legal [A] bool, terminal, terminal_value) of the node reached
# from the root by the actions in ``path``; values from the view of the player to move there.
StepFn = Callable[[tuple[int, ...]], tuple[np.ndarray, float, np.ndarray, bool, float]]


@dataclass
class _Node:
    prior: list[float]
    legal: list[bool]
    value: float  # evaluator value, or the exact value of a terminal
    terminal: bool
    discount: float  # +1/-1: the node's value in its parent's view
    visits: int = 0
    value_sum: float = 0.0
    children: dict[int, _Node] = field(default_factory=dict)


def _normalised(prior: np.ndarray, legal: np.ndarray) -> list[float]:
    p = np.where(legal & np.isfinite(prior), np.maximum(prior, 0.0), 0.0).astype(np.float64)
    total = p.sum()
    if total > 0:
        return list(p / total)
    return list(legal / max(int(legal.sum()), 1))


def naive_puct(
    root_prior: np.ndarray,
    root_value: float,
    root_legal: np.ndarray,
    step: StepFn,
    *,
    num_simulations: int,
    c_puct: float = 1.5,
    two_player: bool = True,
) -> tuple[np.ndarray, np.ndarray, float]:
    """(root child visits [A], root child Q from the root mover's view [A], root mean value)."""
    discount = -1.0 if two_player else 1.0
    legal = np.asarray(root_legal, dtype=bool)
    root = _Node(_normalised(np.asarray(root_prior, float), legal), list(legal), float(root_value),
                 False, 1.0, visits=1, value_sum=float(root_value))

    def simulate(node: _Node, path: tuple[int, ...]) -> float:
        """One descent below ``node``; returns the leaf value in ``node``'s mover's view."""
        if node.terminal:
            v = node.value
        else:
            a = _best_action(node, c_puct)
            if a < 0:
                v = node.value
            elif a in node.children:
                child = node.children[a]
                v = child.discount * simulate(child, path + (a,))
            else:
                prior, value, child_legal, terminal, terminal_value = step(path + (a,))
                child_legal = np.asarray(child_legal, dtype=bool) & (not terminal)
                leaf = float(terminal_value) if terminal else float(value)
                child = _Node(_normalised(np.asarray(prior, float), child_legal),
                              list(child_legal), leaf, bool(terminal), discount,
                              visits=1, value_sum=leaf)
                node.children[a] = child
                v = discount * leaf
        node.visits += 1
        node.value_sum += v
        return v

    for _ in range(num_simulations):
        simulate(root, ())
    num_actions = len(root.prior)
    visits = np.zeros(num_actions, np.int64)
    q = np.zeros(num_actions)
    for a, child in root.children.items():
        visits[a] = child.visits
        q[a] = child.discount * child.value_sum / child.visits
    return visits, q, root.value_sum / root.visits


def _best_action(node: _Node, c_puct: float) -> int:
    sqrt_n = math.sqrt(node.visits)
    best, best_score = -1, -math.inf
    for a, (p, ok) in enumerate(zip(node.prior, node.legal)):
        if not ok:
            continue
        child = node.children.get(a)
        n = child.visits if child is not None else 0
        q = child.discount * child.value_sum / n if n > 0 else 0.0
        score = q + c_puct * p * sqrt_n / (1.0 + n)
        if score > best_score:
            best, best_score = a, score
    return best
