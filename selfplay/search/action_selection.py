"""PUCT action selection and the descent from each root to a leaf, over a batch of trees (numba).

PUCT (AlphaZero): at node s pick the legal action a maximising

    Q(s, a) + c_puct * P(s, a) * sqrt(N(s)) / (1 + N(s, a))

where Q is the child's mean value from the view of the player to move at s (0 for an unvisited
child: a neutral guess on the [-1, 1] scale), P the prior and N the visit counts. Ties go to the
lowest action index, so a search without noise is deterministic.

Virtual loss: when several leaves are taken from one tree in one wave, each node on a path in
flight (``in_flight``) counts, during selection only, as one extra visit worth ``-virtual_loss``
from its parent's view, until the backup replaces it by the real result. Kept apart from
``visits``/``value_sum`` so that those stay exact sums of real results. The next descent of the
same wave then sees that path as visited and worse, and usually goes elsewhere.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def puct_child(visits, in_flight, value_sum, prior, children, discount, legal, b, node, c_puct,
               virtual_loss):
    """Best PUCT action at ``node`` of tree ``b``; -1 when no action is legal there. Paths in
    flight count as visits that each lost ``virtual_loss`` (from the parent's view)."""
    sqrt_n = math.sqrt(visits[b, node] + in_flight[b, node])
    best = -1
    best_score = -np.inf
    for a in range(prior.shape[2]):
        if not legal[b, node, a]:
            continue
        child = children[b, node, a]
        n = 0
        q = 0.0
        if child >= 0:
            pending = in_flight[b, child]
            n = visits[b, child] + pending
            if n > 0:
                q = (discount[b, child] * value_sum[b, child] - virtual_loss * pending) / n
        score = q + c_puct * prior[b, node, a] * sqrt_n / (1.0 + n)
        if score > best_score:
            best_score = score
            best = a
    return best


@njit(cache=True)
def select_leaves(
    visits,  # [B, N] int32
    in_flight,  # [B, N] int32
    value_sum,  # [B, N] float64
    prior,  # [B, N, A] float64
    children,  # [B, N, A] int32
    parent,  # [B, N] int32
    action_from_parent,  # [B, N] int32
    discount,  # [B, N] float64
    terminal,  # [B, N] bool
    expanded,  # [B, N] bool
    legal,  # [B, N, A] bool
    num_nodes,  # [B] int32
    leaves_per_tree,  # int: descents per tree in this wave
    c_puct,  # float
    virtual_loss,  # float
    new_node_discount,  # float: -1 two-player alternating, +1 single agent
    out_tree,  # [leaves_per_tree * B] int64
    out_node,  # [leaves_per_tree * B] int64
    out_parent,  # [leaves_per_tree * B] int64
    out_action,  # [leaves_per_tree * B] int64
    out_new,  # [leaves_per_tree * B] bool: the leaf was just allocated and needs an expansion
    root_action,  # [B] int64: the action every descent of tree b takes at its root; -1: PUCT
):
    """Descend ``leaves_per_tree`` times in every tree (slot-major: all trees' first leaf, then
    all trees' second, ...), allocating one new node per descent that leaves the known tree, and
    leaving virtual loss on every node of every path. The backup removes it. A root action >= 0
    is taken at that tree's root instead of PUCT's (a Gumbel root chooses it; mcts.py)."""
    batch = visits.shape[0]
    capacity = visits.shape[1]
    for k in range(leaves_per_tree):
        for b in range(batch):
            i = k * batch + b
            out_tree[i] = b
            node = 0
            while True:
                if terminal[b, node] or not expanded[b, node]:
                    # A terminal revisited (its exact value is backed up again), or a node
                    # allocated earlier in this wave and still waiting for its evaluation.
                    a = -1
                elif node == 0 and root_action[b] >= 0:
                    a = root_action[b]
                else:
                    a = puct_child(visits, in_flight, value_sum, prior, children, discount,
                                   legal, b, node, c_puct, virtual_loss)
                if a < 0:
                    in_flight[b, node] += 1
                    out_node[i] = node
                    out_parent[i] = parent[b, node]
                    out_action[i] = action_from_parent[b, node]
                    out_new[i] = False
                    break
                in_flight[b, node] += 1
                child = children[b, node, a]
                if child < 0:
                    child = num_nodes[b]
                    if child >= capacity:
                        raise ValueError("search tree is full: more descents than its capacity")
                    num_nodes[b] += 1
                    children[b, node, a] = child
                    parent[b, child] = node
                    action_from_parent[b, child] = a
                    discount[b, child] = new_node_discount
                    in_flight[b, child] += 1
                    out_node[i] = child
                    out_parent[i] = node
                    out_action[i] = a
                    out_new[i] = True
                    break
                node = child
