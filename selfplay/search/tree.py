"""The search tree: a batch of B trees held as flat numpy arrays.

Node 0 of every tree is its root. Nodes are allocated in the order they are first selected, so a
search of ``num_simulations`` simulations never needs more than ``num_simulations + 1`` nodes (each
simulation adds at most one). Arrays rather than node objects so that selection and backup run as
numba loops over the whole batch, and so that one tree can be handed to ``selfplay replay`` as-is.

Value convention: ``value_sum`` and ``raw_value`` of a node are from the view of the player to move
*at that node*. ``discount[b, n]`` turns a value of node n into its parent's view: -1 in a
two-player alternating game (what is good for the mover at n is bad for the mover at its parent),
+1 for a single agent (reasoning steps). The Q-value of action a at node p is therefore
``discount[c] * value_sum[c] / visits[c]`` for the child c = ``children[p, a]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNEXPANDED = -1  # ``children`` entry of an action never selected
NO_PARENT = -1  # ``parent``/``action_from_parent`` of a root


@dataclass(frozen=True)
class Tree:
    """B search trees of capacity N nodes over A actions. Frozen: the fields are fixed, the arrays
    are updated in place by the search (they are the search's working memory)."""

    visits: np.ndarray  # [B, N] int32, completed visits (the root's evaluation counts as one)
    in_flight: np.ndarray  # [B, N] int32, descents of the current wave through the node (0 after)
    value_sum: np.ndarray  # [B, N] float64, summed backed-up values, from the node's mover's view
    raw_value: np.ndarray  # [B, N] float64, evaluator value at expansion (exact if terminal)
    prior: np.ndarray  # [B, N, A] float64, normalised over legal actions (root: with noise)
    children: np.ndarray  # [B, N, A] int32, child node index, UNEXPANDED (-1) if never selected
    parent: np.ndarray  # [B, N] int32, NO_PARENT (-1) at the root
    action_from_parent: np.ndarray  # [B, N] int32, NO_PARENT (-1) at the root
    discount: np.ndarray  # [B, N] float64, +1/-1: multiplies the node's value into parent's view
    terminal: np.ndarray  # [B, N] bool, the game/task ended at this node (never expanded)
    expanded: np.ndarray  # [B, N] bool, evaluated (prior/legal/raw_value filled in)
    legal: np.ndarray  # [B, N, A] bool, legal actions at the node (all False when terminal)
    num_nodes: np.ndarray  # [B] int32, nodes allocated so far in each tree

    @property
    def batch_size(self) -> int:
        return self.visits.shape[0]

    @property
    def capacity(self) -> int:
        return self.visits.shape[1]

    @property
    def num_actions(self) -> int:
        return self.prior.shape[2]

    def child_visits(self, node: int = 0) -> np.ndarray:
        """Visit counts of the children of ``node`` in every tree: int64 [B, A] (0 unexpanded)."""
        return child_visits(self, np.full(self.batch_size, node, dtype=np.int64))

    def child_q(self, node: int = 0) -> np.ndarray:
        """Mean value of each child of ``node`` from the view of the mover at ``node``: [B, A],
        0 where the child was never visited."""
        return child_q(self, np.full(self.batch_size, node, dtype=np.int64))

    def node_value(self, node: int = 0) -> np.ndarray:
        """Mean backed-up value of ``node`` in every tree, from its mover's view: [B]."""
        v = self.visits[:, node]
        return np.where(v > 0, self.value_sum[:, node] / np.maximum(v, 1), 0.0)


def empty_tree(batch_size: int, num_nodes: int, num_actions: int) -> Tree:
    """A batch of trees with nothing allocated (``num_nodes`` is the capacity N)."""
    b, n, a = batch_size, num_nodes, num_actions
    return Tree(
        visits=np.zeros((b, n), np.int32),
        in_flight=np.zeros((b, n), np.int32),
        value_sum=np.zeros((b, n), np.float64),
        raw_value=np.zeros((b, n), np.float64),
        prior=np.zeros((b, n, a), np.float64),
        children=np.full((b, n, a), UNEXPANDED, np.int32),
        parent=np.full((b, n), NO_PARENT, np.int32),
        action_from_parent=np.full((b, n), NO_PARENT, np.int32),
        discount=np.ones((b, n), np.float64),
        terminal=np.zeros((b, n), np.bool_),
        expanded=np.zeros((b, n), np.bool_),
        legal=np.zeros((b, n, a), np.bool_),
        num_nodes=np.zeros(b, np.int32),
    )


def child_visits(tree: Tree, nodes: np.ndarray) -> np.ndarray:
    """Visits of the children of ``nodes[b]`` in tree b: int64 [B, A]."""
    rows = np.arange(tree.batch_size)
    kids = tree.children[rows, nodes]  # [B, A]
    safe = np.maximum(kids, 0)
    return np.where(kids >= 0, tree.visits[rows[:, None], safe], 0).astype(np.int64)


def child_q(tree: Tree, nodes: np.ndarray) -> np.ndarray:
    """Q-values of the children of ``nodes[b]`` from the view of the mover at ``nodes[b]``:
    float64 [B, A], 0 where a child has no visits."""
    rows = np.arange(tree.batch_size)[:, None]
    kids = tree.children[rows[:, 0], nodes]  # [B, A]
    safe = np.maximum(kids, 0)
    n = tree.visits[rows, safe]
    mean = tree.value_sum[rows, safe] / np.maximum(n, 1)
    return np.where((kids >= 0) & (n > 0), tree.discount[rows, safe] * mean, 0.0)
