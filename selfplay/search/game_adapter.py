"""Batched MCTS over positions of any ``envs.protocol.Game``, with an evaluator as a callable.

    search = GameSearch(game, uniform_evaluator(game), num_simulations=64)
    result = search.run([state_1, state_2, ...], rng=rng)
    result.stats[b]          # SearchStats of root b, over its legal action texts

An evaluator maps a list of non-terminal states to (priors [L, A] over the game's whole action
index space, values [L] for the player to move). ``engine_evaluator`` builds one from an Engine
(text in, text out); ``uniform_evaluator`` and ``rollout_evaluator`` need no model.

The search itself keeps no game states: ``GameSearch.run`` holds them per tree, keyed by node
index, while ``run_mcts`` asks for each new node through ``expand_fn``. Games alternate moves
(the ``Game`` protocol), so the search runs in two-player mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from envs.protocol import Game
from selfplay.search.mcts import (
    ExpansionResult,
    RootInput,
    SearchOutput,
    search_with,
)
from selfplay.search.tree_record import check_record_nodes, record_tree, search_nodes
from selfplay.types import SearchNodes, SearchStats

SEARCH_ROOTS = ("puct", "gumbel")  # search.root

if TYPE_CHECKING:  # only for annotations: the search never imports a model
    from selfplay.policy.engine import Engine
    from selfplay.search.config import SearchConfig

# evaluate(states) -> (priors [L, A], values [L]); states are non-terminal
Evaluator = Callable[[list[np.ndarray]], tuple[np.ndarray, np.ndarray]]


# ------------------------------------------------------------------------------------------------
# Evaluators


def uniform_evaluator(game: Game) -> Evaluator:
    """Equal priors and value 0: search guided by terminal results alone."""

    def evaluate(states: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        n = len(states)
        return np.ones((n, game.num_actions)), np.zeros(n)

    return evaluate


def rollout_evaluator(game: Game, rng: np.random.Generator, *, num_rollouts: int = 1) -> Evaluator:
    """Uniform priors; the value is the mean result of ``num_rollouts`` uniformly random playouts
    (plain Python over the protocol: for tests and baselines, not for speed)."""

    def playout(state: np.ndarray) -> float:
        me = game.to_play(state)
        s = state
        while (out := game.outcome(s)) is None:
            s = game.next_state(s, int(rng.choice(np.flatnonzero(game.legal_mask(s)))))
        return out.value_for(me)

    def evaluate(states: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        values = [np.mean([playout(s) for _ in range(num_rollouts)]) for s in states]
        return np.ones((len(states), game.num_actions)), np.asarray(values, dtype=np.float64)

    return evaluate


def engine_evaluator(engine: Engine, game: Game) -> Evaluator:
    """An evaluator that asks ``engine.evaluate`` in text: each state rendered with
    ``game.render_text``, its legal actions as ``game.action_to_text`` strings; the returned
    priors (over the legal actions only) are scattered back into the action index space."""

    def evaluate(states: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        legal = [np.flatnonzero(game.legal_mask(s)) for s in states]
        texts = [game.render_text(s) for s in states]
        actions = [[game.action_to_text(int(a)) for a in idx] for idx in legal]
        evaluations = engine.evaluate(texts, actions)
        if len(evaluations) != len(states):
            raise ValueError(f"engine.evaluate returned {len(evaluations)} evaluations for "
                             f"{len(states)} states")
        priors = np.zeros((len(states), game.num_actions))
        values = np.zeros(len(states))
        for i, (idx, ev) in enumerate(zip(legal, evaluations)):
            p = np.asarray(ev.priors, dtype=np.float64)
            if p.shape != idx.shape:
                raise ValueError(f"engine.evaluate gave {p.size} priors for state {i} with "
                                 f"{idx.size} legal actions")
            priors[i, idx] = p
            values[i] = ev.value
        return priors, values

    return evaluate


# ------------------------------------------------------------------------------------------------
# The search over game positions


@dataclass(frozen=True)
class GameSearchResult:
    stats: list[SearchStats]  # one per root, over that root's legal actions (ascending index)
    legal_actions: list[np.ndarray]  # int64 action indices aligned with stats[b].actions
    output: SearchOutput  # the raw search (visit counts [B, A] over the full index space, tree)
    chosen: list[int] | None = None  # per root, the index into its legal actions a Gumbel root chose (None: PUCT, the caller picks from the visits)


class GameSearch:
    """PUCT search over B positions of ``game`` at once, the evaluator called once per wave."""

    def __init__(
        self,
        game: Game,
        evaluate: Evaluator,
        *,
        num_simulations: int = 64,
        c_puct: float = 1.5,
        dirichlet_alpha: float = 0.5,
        dirichlet_fraction: float = 0.25,
        leaves_per_tree: int = 1,
        virtual_loss: float = 1.0,
        record_nodes: int = 0,
        root: str = "puct",
        max_considered: int = 16,
        gumbel_scale: float = 1.0,
    ):
        """record_nodes: the most-visited nodes below the root kept in each ``SearchStats.nodes``
        (0: none, the root's children only; tree_record.py). root: "puct" (Dirichlet noise at the
        root) or "gumbel" (``mcts.run_gumbel_mcts``: Gumbel-top-``max_considered`` and sequential
        halving; the improved policy is each decision's ``policy_target`` and the chosen action
        is played; ``add_noise=False`` draws no Gumbel noise)."""
        if root not in SEARCH_ROOTS:
            raise ValueError(f"GameSearch: root={root!r}; expected one of {SEARCH_ROOTS}")
        self.root = root
        self.max_considered = max_considered
        self.gumbel_scale = gumbel_scale
        self.game = game
        self.record_nodes = check_record_nodes(record_nodes)
        self.evaluate = evaluate
        self.num_simulations = num_simulations
        self.c_puct = c_puct
        self.dirichlet_alpha = dirichlet_alpha
        self.dirichlet_fraction = dirichlet_fraction
        self.leaves_per_tree = leaves_per_tree
        self.virtual_loss = virtual_loss

    @classmethod
    def from_config(cls, game: Game, evaluate: Evaluator, config: SearchConfig) -> GameSearch:
        return cls(game, evaluate, num_simulations=config.num_simulations, c_puct=config.c_puct,
                   dirichlet_alpha=config.dirichlet_alpha,
                   dirichlet_fraction=config.dirichlet_fraction,
                   leaves_per_tree=config.leaves_per_tree, virtual_loss=config.virtual_loss,
                   record_nodes=config.record_nodes, root=config.root,
                   max_considered=config.max_considered, gumbel_scale=config.gumbel_scale)

    def run(
        self,
        states: Sequence[np.ndarray],
        *,
        rng: np.random.Generator | None = None,
        add_noise: bool = True,
    ) -> GameSearchResult:
        """Search every state in ``states`` (non-terminal positions). ``add_noise=False`` (or
        dirichlet_fraction 0) gives a deterministic search, e.g. for evaluation games."""
        game = self.game
        roots = [np.asarray(s) for s in states]
        if not roots:
            raise ValueError("GameSearch.run needs at least one state")
        for b, s in enumerate(roots):
            if game.outcome(s) is not None:
                raise ValueError(f"{game.name}: state {b} is already over; nothing to search")
        legal = np.stack([np.asarray(game.legal_mask(s), dtype=np.bool_) for s in roots])
        priors, values = self.evaluate(roots)
        # Node states per tree; node 0 is the root. Filled as the search allocates nodes.
        node_states: list[dict[int, np.ndarray]] = [{0: s} for s in roots]

        def expand(tree_index, node_index, parent_node, action) -> ExpansionResult:
            n = tree_index.size
            new_legal = np.zeros((n, game.num_actions), np.bool_)
            terminal = np.zeros(n, np.bool_)
            terminal_value = np.zeros(n)
            pending: list[int] = []
            pending_states: list[np.ndarray] = []
            for i in range(n):
                states_b = node_states[tree_index[i]]
                parent_state = states_b[parent_node[i]]
                s = game.next_state(parent_state, int(action[i]))
                states_b[int(node_index[i])] = s
                outcome = game.outcome(s)
                if outcome is not None:
                    # From the view of the player to move at the new node: the opponent of the
                    # player who just moved (moves alternate).
                    terminal[i] = True
                    terminal_value[i] = -outcome.value_for(game.to_play(parent_state))
                else:
                    new_legal[i] = game.legal_mask(s)
                    pending.append(i)
                    pending_states.append(s)
            new_priors = np.zeros((n, game.num_actions))
            new_values = np.zeros(n)
            if pending:  # one evaluator call per wave, for the non-terminal new nodes only
                p, v = self.evaluate(pending_states)
                new_priors[pending] = p
                new_values[pending] = v
            return ExpansionResult(priors=new_priors, values=new_values, legal=new_legal,
                                   terminal=terminal, terminal_value=terminal_value)

        root_input = RootInput(priors=np.asarray(priors), values=np.asarray(values), legal=legal)
        output = search_with(self, root_input, expand, add_noise=add_noise, two_player=True,
                             rng=rng)
        stats, legal_actions, chosen = [], [], []
        for b in range(len(roots)):
            idx = np.flatnonzero(legal[b])
            legal_actions.append(idx)
            target = None if output.policy_target is None else output.policy_target[b, idx]
            stats.append(SearchStats(
                actions=[game.action_to_text(int(a)) for a in idx],
                visits=output.visit_counts[b, idx].astype(float).tolist(),
                priors=output.prior[b, idx].tolist(),
                q_values=output.q_values[b, idx].tolist(),
                root_value=float(output.root_value[b]),
                simulations=self.num_simulations,
                nodes=self._nodes(output, b),
                policy_target=None if target is None else (target / target.sum()).tolist(),
            ))
            if output.action is not None:
                chosen.append(int(np.searchsorted(idx, output.action[b])))
        return GameSearchResult(stats=stats, legal_actions=legal_actions, output=output,
                                chosen=chosen if output.action is not None else None)

    def _nodes(self, output: SearchOutput, b: int) -> SearchNodes | None:
        if not self.record_nodes:
            return None
        record = record_tree(output.tree, b, self.record_nodes, root_prior=output.prior[b])
        return search_nodes(record, lambda node, action: self.game.action_to_text(action))
