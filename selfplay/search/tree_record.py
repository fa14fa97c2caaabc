"""The part of a search tree worth keeping: its most-visited nodes, as a pure function of the arrays.

    record = record_tree(output.tree, b, max_nodes=64, root_prior=output.prior[b])
    nodes = search_nodes(record, lambda node, action: game.action_to_text(action))

A search of S simulations allocates up to S + 1 nodes per decision; the replay store keeps the
root's children of every decision (``SearchStats``) and, with ``search.record_nodes: N``, the N
most-visited nodes below the root as well, for ``selfplay view`` to expand.

The N most-visited nodes always form a tree hanging from the root: an expanded node's visits are
its own evaluation plus every descent through it, so a parent has strictly more visits than any
child, and whatever the tie-break at the cut, no recorded node lacks its parent. They are laid
out breadth first, each node's children most-visited first (then higher prior, then lower action
index), so a node's parent always comes before it and node 0 is the root.

Values are turned into the view of the player who chose each node (the mover at its parent):
``discount[c] * value_sum[c] / visits[c]``, as ``child_q`` gives the root's children.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from selfplay.errors import UserError
from selfplay.search.tree import Tree
from selfplay.types import SearchNodes

# text_of(tree node of the parent, action index) -> the action's text
ActionText = Callable[[int, int], str]


@dataclass(frozen=True)
class TreeRecord:
    """M recorded nodes of one tree (M <= max_nodes + 1), breadth first; row 0 is the root."""

    node: np.ndarray  # [M] int64, the node's index in the Tree (node[0] == 0)
    parent: np.ndarray  # [M] int64, the row of its parent (-1 at the root); parent[i] < i
    action: np.ndarray  # [M] int64, the action index taken at the parent (-1 at the root)
    visits: np.ndarray  # [M] int64
    prior: np.ndarray  # [M] float64, the action's prior at the parent (1.0 at the root)
    q: np.ndarray  # [M] float64, mean backed-up value, chooser's view
    value: np.ndarray  # [M] float64, evaluator value at expansion (exact if terminal), chooser's view
    terminal: np.ndarray  # [M] bool

    def __len__(self) -> int:
        return int(self.node.shape[0])


def record_tree(
    tree: Tree, b: int, max_nodes: int, *, root_prior: np.ndarray | None = None
) -> TreeRecord:
    """The root of tree ``b`` and its ``max_nodes`` most-visited other nodes (ties: the node
    allocated first), breadth first. ``root_prior`` [A]: the priors to give the root's children
    (the search's own root priors hold its Dirichlet noise; pass the evaluator's to record those).
    """
    if max_nodes < 0:
        raise ValueError(f"record_tree: max_nodes must be >= 0, got {max_nodes}")
    count = int(tree.num_nodes[b])
    visits = tree.visits[b, :count].astype(np.int64)
    others = np.arange(1, count)
    others = others[visits[1:] > 0]  # every allocated node is visited once a search ends
    # Stable, so equal visits keep allocation order (the node selected first).
    keep = others[np.argsort(-visits[others], kind="stable")[:max_nodes]]

    parent_of = tree.parent[b]
    action_of = tree.action_from_parent[b]
    prior = tree.prior[b]
    kids: dict[int, list[int]] = {0: []}
    for n in keep.tolist():
        kids.setdefault(n, [])
        kids.setdefault(int(parent_of[n]), []).append(n)

    def rank(n: int) -> tuple:
        p, a = int(parent_of[n]), int(action_of[n])
        return (-int(visits[n]), -float(prior[p, a]), a)

    order, parent_row = [0], [-1]
    i = 0
    while i < len(order):  # breadth first over the kept nodes
        for c in sorted(kids.get(order[i], []), key=rank):
            order.append(c)
            parent_row.append(i)
        i += 1

    nodes = np.asarray(order, dtype=np.int64)
    parents = np.asarray(parent_row, dtype=np.int64)
    actions = np.where(nodes == 0, -1, action_of[nodes]).astype(np.int64)
    safe_parent = np.maximum(parent_of[nodes], 0)
    priors = np.where(nodes == 0, 1.0, prior[safe_parent, np.maximum(actions, 0)])
    if root_prior is not None:
        at_root = (parent_of[nodes] == 0) & (nodes != 0)
        priors = np.where(at_root, np.asarray(root_prior, np.float64)[np.maximum(actions, 0)],
                          priors)
    # Into the chooser's view: the node's discount (the root keeps its own mover's view).
    view = np.where(nodes == 0, 1.0, tree.discount[b, nodes])
    n_visits = visits[nodes]
    mean = tree.value_sum[b, nodes] / np.maximum(n_visits, 1)
    return TreeRecord(
        node=nodes,
        parent=parents,
        action=actions,
        visits=n_visits,
        prior=priors.astype(np.float64),
        q=np.where(n_visits > 0, view * mean, 0.0),
        value=view * tree.raw_value[b, nodes],
        terminal=tree.terminal[b, nodes].astype(np.bool_),
    )


def search_nodes(record: TreeRecord, text_of: ActionText) -> SearchNodes:
    """``record`` as the episode's ``SearchNodes``, each action named by ``text_of``."""
    actions = [""]
    for row in range(1, len(record)):
        parent_node = int(record.node[record.parent[row]])
        actions.append(text_of(parent_node, int(record.action[row])))
    return SearchNodes(
        parent=record.parent.tolist(),
        action=actions,
        visits=record.visits.astype(float).tolist(),
        prior=record.prior.tolist(),
        q=record.q.tolist(),
        value=record.value.tolist(),
        terminal=record.terminal.tolist(),
    )


class RecordNodesError(UserError, ValueError):
    """A ``search.record_nodes`` that is not a count."""


def check_record_nodes(record_nodes: int) -> int:
    """``record_nodes`` itself when it is 0 or more; an error naming the config key otherwise."""
    if isinstance(record_nodes, bool) or not isinstance(record_nodes, (int, np.integer)) \
            or record_nodes < 0:
        raise RecordNodesError("search.record_nodes must be 0 (the root's children only) or more, "
                               f"got {record_nodes!r}")
    return int(record_nodes)
