"""Batched PUCT Monte-Carlo tree search as a pure function (the mctx shape, in numpy + numba).

    output = run_mcts(root, expand_fn, num_simulations=64, rng=rng)

``root`` holds the evaluator's priors, values and legal masks of B root positions; ``expand_fn``
is how the search reaches the environment and the model: given which trees, which new nodes,
their parent nodes and the actions taken, it returns the priors/values of the new positions (or
that the game ended there). The search owns no state beyond the returned ``Tree``; the caller
keeps the environment states, keyed by (tree, node index) — see ``game_adapter.GameSearch``.

One wave = one descent per tree (``leaves_per_tree`` descents with virtual loss), then ONE call
to ``expand_fn`` for all new leaves of the wave (so an engine sees one batch per wave), then the
backup. A wave's descents that end on a terminal node, or on a node another descent of the same
wave just allocated, are backed up without calling ``expand_fn`` — a terminal is never expanded
twice, and its exact value is backed up on every revisit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit

from selfplay.search.action_selection import select_leaves
from selfplay.search.tree import Tree, child_q, child_visits, empty_tree


@dataclass(frozen=True)
class RootInput:
    """The evaluator's view of the B roots."""

    priors: np.ndarray  # [B, A] float, need not be normalised; mass on illegal actions is ignored
    values: np.ndarray  # [B] float, from the view of the player to move at each root
    legal: np.ndarray  # [B, A] bool, at least one legal action per root


@dataclass(frozen=True)
class ExpansionResult:
    """What ``expand_fn`` returns for L new leaves (rows aligned with its arguments)."""

    priors: np.ndarray  # [L, A] float (ignored where terminal)
    values: np.ndarray  # [L] float, from the view of the player to move at the new node
    legal: np.ndarray  # [L, A] bool (ignored where terminal)
    terminal: np.ndarray  # [L] bool, the game / task ended at the new node
    terminal_value: np.ndarray  # [L] float, exact outcome for the player to move there


# expand_fn(tree_index [L], node_index [L], parent_node [L], action [L]) -> ExpansionResult
ExpandFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], ExpansionResult]


@dataclass(frozen=True)
class SearchOutput:
    """The result of a search over B roots."""

    visit_counts: np.ndarray  # [B, A] int64, root child visits; each row sums to num_simulations
    root_value: np.ndarray  # [B] float64, mean backed-up value at the root, root mover's view
    q_values: np.ndarray  # [B, A] float64, root child mean values, root mover's view (0 unvisited)
    prior: np.ndarray  # [B, A] float64, evaluator priors at the root, normalised, without noise
    tree: Tree
    policy_target: np.ndarray | None = None  # [B, A] a Gumbel root's improved policy; None: PUCT
    action: np.ndarray | None = None  # [B] int64, the action a Gumbel root chose; None: PUCT


# ------------------------------------------------------------------------------------------------
# Backup (numba)


@njit(cache=True)
def backup(visits, in_flight, value_sum, raw_value, parent, discount, leaf_tree, leaf_node):
    """Back up each leaf's value along its path, replacing the path's in-flight marks (virtual
    loss) by a real visit and the leaf's value."""
    for i in range(leaf_tree.shape[0]):
        b = leaf_tree[i]
        node = leaf_node[i]
        v = raw_value[b, node]  # from the view of the player to move at the leaf
        while True:
            in_flight[b, node] -= 1
            visits[b, node] += 1
            value_sum[b, node] += v
            if node == 0:
                break
            v = discount[b, node] * v  # into the parent's view
            node = parent[b, node]


# ------------------------------------------------------------------------------------------------
# Inputs


def normalise_priors(priors: np.ndarray, legal: np.ndarray) -> np.ndarray:
    """Priors restricted to legal actions and renormalised; uniform over the legal actions where
    the evaluator gave them no (finite, positive) mass."""
    p = np.where(legal & np.isfinite(priors), np.maximum(priors, 0.0), 0.0).astype(np.float64)
    total = p.sum(axis=-1, keepdims=True)
    uniform = legal / np.maximum(legal.sum(axis=-1, keepdims=True), 1)
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), uniform)


def _check_expansion(result: ExpansionResult, num_leaves: int, num_actions: int) -> None:
    expect = {"priors": (num_leaves, num_actions), "values": (num_leaves,),
              "legal": (num_leaves, num_actions), "terminal": (num_leaves,),
              "terminal_value": (num_leaves,)}
    for name, shape in expect.items():
        got = np.shape(getattr(result, name))
        if got != shape:
            raise ValueError(f"expand_fn returned {name} of shape {got}; expected {shape} "
                             f"({num_leaves} leaves, {num_actions} actions)")


def add_dirichlet_noise(priors: np.ndarray, legal: np.ndarray, *, alpha: float, fraction: float,
                        rng: np.random.Generator) -> np.ndarray:
    """``(1 - fraction) * priors + fraction * Dirichlet(alpha)`` over each row's legal actions
    only, so an illegal action never gets prior mass. priors, legal: [B, A]."""
    out = priors.copy()
    for b in range(priors.shape[0]):
        idx = np.flatnonzero(legal[b])
        noise = rng.dirichlet(np.full(idx.size, alpha))
        out[b, idx] = (1.0 - fraction) * priors[b, idx] + fraction * noise
    return out


# ------------------------------------------------------------------------------------------------
# The search


def run_mcts(
    root: RootInput,
    expand_fn: ExpandFn,
    *,
    num_simulations: int,
    c_puct: float = 1.5,
    dirichlet_alpha: float = 0.5,
    dirichlet_fraction: float = 0.25,
    leaves_per_tree: int = 1,
    virtual_loss: float = 1.0,
    two_player: bool = True,
    rng: np.random.Generator | None = None,
) -> SearchOutput:
    """PUCT search of ``num_simulations`` simulations from each of B roots.

    two_player: alternating zero-sum game (values flip sign at each ply); False for a single
    agent (reasoning steps: no flip). dirichlet_fraction=0 turns root noise off (then ``rng`` may
    be None and the search is deterministic).
    """
    if num_simulations < 1 or leaves_per_tree < 1:
        raise ValueError(f"num_simulations ({num_simulations}) and leaves_per_tree "
                         f"({leaves_per_tree}) must be >= 1")
    if dirichlet_fraction > 0 and rng is None:
        raise ValueError("dirichlet_fraction > 0 needs an rng (np.random.Generator)")
    tree, legal, root_prior = _init_tree(root, num_simulations)
    batch, num_actions = legal.shape
    if dirichlet_fraction > 0:
        tree.prior[:, 0] = add_dirichlet_noise(root_prior, legal, alpha=dirichlet_alpha,
                                               fraction=dirichlet_fraction, rng=rng)

    new_node_discount = -1.0 if two_player else 1.0
    puct_root = np.full(batch, -1, np.int64)
    remaining = num_simulations
    while remaining > 0:
        k = min(leaves_per_tree, remaining)
        size = k * batch
        leaf_tree = np.empty(size, np.int64)
        leaf_node = np.empty(size, np.int64)
        leaf_parent = np.empty(size, np.int64)
        leaf_action = np.empty(size, np.int64)
        leaf_new = np.empty(size, np.bool_)
        select_leaves(tree.visits, tree.in_flight, tree.value_sum, tree.prior, tree.children,
                      tree.parent, tree.action_from_parent, tree.discount, tree.terminal,
                      tree.expanded, tree.legal, tree.num_nodes, k, c_puct, virtual_loss,
                      new_node_discount, leaf_tree, leaf_node, leaf_parent, leaf_action, leaf_new,
                      puct_root)
        _expand_and_backup(tree, expand_fn, leaf_tree, leaf_node, leaf_parent, leaf_action,
                           leaf_new, num_actions)
        remaining -= k

    roots = np.zeros(batch, np.int64)
    return SearchOutput(
        visit_counts=child_visits(tree, roots),
        root_value=tree.node_value(0),
        q_values=child_q(tree, roots),
        prior=root_prior,
        tree=tree,
    )


def _expand_and_backup(tree: Tree, expand_fn: ExpandFn, leaf_tree, leaf_node, leaf_parent,
                       leaf_action, leaf_new, num_actions: int) -> None:
    """The second half of a wave: one ``expand_fn`` call for its new leaves, then the backup."""
    if leaf_new.any():
        t, n = leaf_tree[leaf_new], leaf_node[leaf_new]
        result = expand_fn(t, n, leaf_parent[leaf_new], leaf_action[leaf_new])
        _check_expansion(result, t.size, num_actions)
        _write_expansion(tree, t, n, result)
    backup(tree.visits, tree.in_flight, tree.value_sum, tree.raw_value, tree.parent,
           tree.discount, leaf_tree, leaf_node)


def _init_tree(root: RootInput, num_simulations: int) -> tuple[Tree, np.ndarray, np.ndarray]:
    """A batch of trees holding only their evaluated roots (each counts its own evaluation as
    one visit, as every expanded node does); returns (tree, legal, normalised root prior)."""
    legal = np.asarray(root.legal, dtype=np.bool_)
    priors = np.asarray(root.priors, dtype=np.float64)
    values = np.asarray(root.values, dtype=np.float64)
    if legal.ndim != 2 or priors.shape != legal.shape or values.shape != legal.shape[:1]:
        raise ValueError(f"RootInput shapes disagree: priors {priors.shape}, values "
                         f"{values.shape}, legal {legal.shape}; expected [B, A], [B], [B, A]")
    if not legal.any(axis=1).all():
        bad = np.flatnonzero(~legal.any(axis=1)).tolist()
        raise ValueError(f"roots {bad} have no legal action (a terminal position has no search)")
    batch, num_actions = legal.shape
    tree = empty_tree(batch, num_simulations + 1, num_actions)
    root_prior = normalise_priors(priors, legal)
    tree.prior[:, 0] = root_prior
    tree.legal[:, 0] = legal
    tree.raw_value[:, 0] = values
    tree.value_sum[:, 0] = values
    tree.visits[:, 0] = 1
    tree.expanded[:, 0] = True
    tree.num_nodes[:] = 1
    return tree, legal, root_prior


def run_gumbel_mcts(
    root: RootInput,
    expand_fn: ExpandFn,
    *,
    num_simulations: int,
    max_num_considered: int = 16,
    gumbel_scale: float = 1.0,
    c_puct: float = 1.5,
    c_visit: float = 50.0,
    c_scale: float = 1.0,
    two_player: bool = True,
    rng: np.random.Generator | None = None,
) -> SearchOutput:
    """A Gumbel root (Danihelka et al., 2022; mctx's ``gumbel_muzero_policy``) over the same trees:
    ``max_num_considered`` root actions drawn by Gumbel-top-k, the budget spread over them by
    sequential halving (``gumbel.gumbel_search``), each simulation forced through its root action
    and continued below it by PUCT (mctx selects deterministically there; PUCT is this
    framework's one interior rule). The output adds the improved policy, softmax(logits +
    sigma(completed Q)), as the training target, and the chosen action: the best survivor.

    Without root noise: the Gumbel draw is the exploration; ``gumbel_scale=0`` (then ``rng`` may
    be None) gives a deterministic search, for evaluation. One descent per tree per wave."""
    from selfplay.search.gumbel import gumbel_search

    if num_simulations < 1:
        raise ValueError(f"num_simulations ({num_simulations}) must be >= 1")
    tree, legal, root_prior = _init_tree(root, num_simulations)
    batch, num_actions = legal.shape
    new_node_discount = -1.0 if two_player else 1.0
    leaf = {name: np.empty(batch, dtype) for name, dtype in (
        ("tree", np.int64), ("node", np.int64), ("parent", np.int64), ("action", np.int64),
        ("new", np.bool_))}

    def child_value(rows: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The summed backed-up value of each row's root child, from the root mover's view."""
        child = tree.children[rows, 0, actions]
        known = child >= 0
        safe = np.where(known, child, 0)
        return np.where(known, tree.discount[rows, safe] * tree.value_sum[rows, safe], 0.0)

    def simulate(rows: np.ndarray, actions: np.ndarray) -> np.ndarray:
        before = child_value(rows, actions)
        select_leaves(tree.visits, tree.in_flight, tree.value_sum, tree.prior, tree.children,
                      tree.parent, tree.action_from_parent, tree.discount, tree.terminal,
                      tree.expanded, tree.legal, tree.num_nodes, 1, c_puct, 0.0,
                      new_node_discount, leaf["tree"], leaf["node"], leaf["parent"],
                      leaf["action"], leaf["new"], actions.astype(np.int64))
        _expand_and_backup(tree, expand_fn, leaf["tree"], leaf["node"], leaf["parent"],
                           leaf["action"], leaf["new"], num_actions)
        return child_value(rows, actions) - before  # this simulation's value of the action

    with np.errstate(divide="ignore"):
        logits = np.where(legal, np.log(root_prior), -np.inf)
    out = gumbel_search(logits, legal, simulate, num_simulations=num_simulations,
                        max_num_considered=max_num_considered,
                        root_value=np.asarray(root.values, dtype=np.float64), rng=rng,
                        gumbel_scale=gumbel_scale, c_visit=c_visit, c_scale=c_scale)
    roots = np.zeros(batch, np.int64)
    return SearchOutput(
        visit_counts=child_visits(tree, roots),
        root_value=tree.node_value(0),
        q_values=child_q(tree, roots),
        prior=root_prior,
        tree=tree,
        policy_target=out.policy,
        action=out.action,
    )


def search_with(settings, root: RootInput, expand_fn: ExpandFn, *, add_noise: bool,
                two_player: bool, rng: np.random.Generator | None) -> SearchOutput:
    """Run the root ``settings`` names (a GameSearch or StepSearch: ``root``, the simulation
    budget, PUCT and noise settings): ``run_gumbel_mcts`` or ``run_mcts``; ``add_noise=False``
    draws neither Gumbel nor Dirichlet noise."""
    if settings.root == "gumbel":
        return run_gumbel_mcts(
            root, expand_fn, num_simulations=settings.num_simulations,
            max_num_considered=settings.max_considered,
            gumbel_scale=settings.gumbel_scale if add_noise else 0.0, c_puct=settings.c_puct,
            two_player=two_player, rng=rng)
    return run_mcts(
        root, expand_fn, num_simulations=settings.num_simulations, c_puct=settings.c_puct,
        dirichlet_alpha=settings.dirichlet_alpha,
        dirichlet_fraction=settings.dirichlet_fraction if add_noise else 0.0,
        leaves_per_tree=settings.leaves_per_tree, virtual_loss=settings.virtual_loss,
        two_player=two_player, rng=rng)


def _write_expansion(tree: Tree, t: np.ndarray, n: np.ndarray, result: ExpansionResult) -> None:
    terminal = np.asarray(result.terminal, dtype=np.bool_)
    legal = np.asarray(result.legal, dtype=np.bool_) & ~terminal[:, None]
    values = np.where(terminal, np.asarray(result.terminal_value, dtype=np.float64),
                      np.asarray(result.values, dtype=np.float64))
    if not np.isfinite(values).all():
        raise ValueError(f"expand_fn returned non-finite values: {values[~np.isfinite(values)]}")
    tree.terminal[t, n] = terminal
    tree.legal[t, n] = legal
    tree.prior[t, n] = normalise_priors(np.asarray(result.priors, dtype=np.float64), legal)
    tree.raw_value[t, n] = values
    tree.expanded[t, n] = True
