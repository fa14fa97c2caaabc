"""Batched PUCT MCTS against known answers: wins, blocks, minimax, a plain-Python reference.

The searches run over tic-tac-toe: ``envs.games.tictactoe`` when it is importable and a small
self-contained one defined here (so the search is tested even without the envs package).
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

from envs.protocol import GameOutcome
from selfplay.search.game_adapter import (
    GameSearch,
    engine_evaluator,
    rollout_evaluator,
    uniform_evaluator,
)
from selfplay.search.mcts import (
    ExpansionResult,
    RootInput,
    add_dirichlet_noise,
    run_mcts,
)
from selfplay.search.policies import select_action, visit_distribution
from selfplay.search.reference import naive_puct

# ------------------------------------------------------------------------------------------------
# A tiny tic-tac-toe Game (pure Python over an int8 board: 0 empty, 1 X, 2 O)

LINES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]


class LocalTicTacToe:
    name = "local-tictactoe"
    num_actions = 9
    state_shape = (9,)

    def initial_state(self) -> np.ndarray:
        return np.zeros(9, np.int8)

    def to_play(self, state: np.ndarray) -> int:
        return int(np.count_nonzero(state)) % 2

    def _winner(self, state: np.ndarray) -> int:
        for a, b, c in LINES:
            if state[a] != 0 and state[a] == state[b] == state[c]:
                return int(state[a])
        return 0

    def legal_mask(self, state: np.ndarray) -> np.ndarray:
        if self._winner(state):
            return np.zeros(9, bool)
        return state == 0

    def next_state(self, state: np.ndarray, action: int) -> np.ndarray:
        assert state[action] == 0 and not self._winner(state), (state, action)
        new = state.copy()
        new[action] = self.to_play(state) + 1
        return new

    def outcome(self, state: np.ndarray) -> GameOutcome | None:
        w = self._winner(state)
        if w:
            return GameOutcome(1.0 if w == 1 else -1.0)
        return GameOutcome(0.0) if np.all(state != 0) else None

    def action_to_text(self, action: int) -> str:
        return str(int(action) + 1)

    def text_to_action(self, text: str) -> int | None:
        t = text.strip()
        return int(t) - 1 if len(t) == 1 and "1" <= t <= "9" else None

    def render_text(self, state: np.ndarray) -> str:
        rows = ["".join(".XO"[int(v)] for v in state[r * 3:r * 3 + 3]) for r in range(3)]
        return f"{'XO'[self.to_play(state)]} to move\n" + "\n".join(rows) + "\n"

    def from_rows(self, rows: list[str]) -> np.ndarray:
        return np.array([".XO".index(ch) for ch in "".join(rows)], np.int8)


def _envs_game():
    from envs.games.tictactoe import TicTacToe

    game = TicTacToe()
    game.from_rows = game.state_from_board  # the same constructor under the local name
    return game


def _game_params():
    try:
        _envs_game()
    except ImportError:  # the envs package may not be there yet (it is another room)
        return ["local"]
    return ["local", "envs"]


@pytest.fixture(params=_game_params(), scope="module")
def game(request):
    return LocalTicTacToe() if request.param == "local" else _envs_game()


def _cells(game, state) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(state)[:9])


def minimax_optimal(game, state) -> set[int]:
    """Actions that keep the game-theoretic value of ``state`` for the player to move."""
    local = LocalTicTacToe()

    @functools.cache
    def value(cells: tuple[int, ...]) -> float:  # for the player to move
        s = np.array(cells, np.int8)
        out = local.outcome(s)
        if out is not None:
            return out.value_for(local.to_play(s))
        return max(-value(_cells(local, local.next_state(s, a)))
                   for a in np.flatnonzero(local.legal_mask(s)))

    s = np.array(_cells(game, state), np.int8)
    scores = {int(a): -value(_cells(local, local.next_state(s, a)))
              for a in np.flatnonzero(local.legal_mask(s))}
    best = max(scores.values())
    return {a for a, v in scores.items() if v == best}


def _search(game, states, *, sims, leaves=1, evaluate=None):
    search = GameSearch(game, evaluate or uniform_evaluator(game), num_simulations=sims,
                        dirichlet_fraction=0.0, leaves_per_tree=leaves)
    return search.run(states)


def _best(result, b=0) -> int:
    return int(np.argmax(result.output.visit_counts[b]))


# ------------------------------------------------------------------------------------------------
# Known answers

WIN_POSITIONS = [  # (board, the winning cells for the player to move)
    (["XX.", "OO.", "..."], {2}),  # X completes the top row
    (["XO.", "XO.", "..."], {6}),  # X completes the left column
    (["X.O", ".XO", "..."], {8}),  # X: diagonal 8 (column 8 would be O's)
    (["XX.", "OO.", "X.."], {5}),  # O to move completes the middle row
]
BLOCK_POSITIONS = [  # (board, the only move that does not lose at once)
    (["XX.", "O..", "..."], {2}),  # O must block the top row
    (["X..", ".O.", "..X"], None),  # no immediate threat: minimax decides (an edge)
    (["O..", "XX.", "..."], {5}),  # O must block the middle row
]


@pytest.mark.parametrize("leaves", [1, 4])
def test_takes_the_winning_move(game, leaves):
    states = [game.from_rows(rows) for rows, _ in WIN_POSITIONS]
    result = _search(game, states, sims=200, leaves=leaves)
    for b, (rows, wins) in enumerate(WIN_POSITIONS):
        assert _best(result, b) in wins, (rows, result.stats[b])
        assert result.output.visit_counts[b].sum() == 200
        assert result.stats[b].root_value > 0.5  # a won position looks won


@pytest.mark.parametrize("leaves", [1, 4])
def test_blocks_the_opponents_win(game, leaves):
    states = [game.from_rows(rows) for rows, _ in BLOCK_POSITIONS]
    result = _search(game, states, sims=400, leaves=leaves)
    for b, (rows, block) in enumerate(BLOCK_POSITIONS):
        expected = block if block is not None else minimax_optimal(game, states[b])
        assert _best(result, b) in expected, (rows, result.stats[b])
        assert result.output.visit_counts[b].sum() == 400


def _random_positions(game, rng, count, min_moves, max_moves):
    out, seen = [], set()
    while len(out) < count:
        s = game.initial_state()
        for _ in range(int(rng.integers(min_moves, max_moves + 1))):
            if game.outcome(s) is not None:
                break
            s = game.next_state(s, int(rng.choice(np.flatnonzero(game.legal_mask(s)))))
        key = _cells(game, s)
        legal = np.flatnonzero(game.legal_mask(s))
        # Keep positions where the choice matters: some move is worse than the best.
        if game.outcome(s) is None and key not in seen and \
                len(minimax_optimal(game, s)) < legal.size:
            seen.add(key)
            out.append(s)
    return out


def test_agrees_with_minimax(game):
    """Uniform prior, value 0, exact terminal values: enough simulations find an optimal move."""
    rng = np.random.default_rng(7)
    states = _random_positions(game, rng, 24, 3, 6)
    result = _search(game, states, sims=1500)
    for b, s in enumerate(states):
        assert _best(result, b) in minimax_optimal(game, s), (game.render_text(s), result.stats[b])


def test_rollout_evaluator_finds_the_block(game):
    s = game.from_rows(["XX.", "O..", "..."])
    ev = rollout_evaluator(game, np.random.default_rng(0))
    result = _search(game, [s], sims=200, evaluate=ev)
    assert _best(result) == 2


def test_matches_the_plain_python_reference(game):
    """Visit for visit, the numba search is the readable single-tree PUCT."""
    rng = np.random.default_rng(3)
    states = [game.initial_state()] + _random_positions(game, rng, 6, 1, 5)
    sims = 300
    result = _search(game, states, sims=sims)
    for b, s in enumerate(states):
        legal = np.asarray(game.legal_mask(s))

        def step(path, s=s):
            t = s
            for a in path:
                t = game.next_state(t, a)
            out = game.outcome(t)
            if out is not None:
                return np.ones(9), 0.0, np.zeros(9, bool), True, -out.value_for(1 - game.to_play(t))
            return np.ones(9), 0.0, np.asarray(game.legal_mask(t)), False, 0.0

        visits, q, root_value = naive_puct(np.ones(9), 0.0, legal, step, num_simulations=sims)
        np.testing.assert_array_equal(result.output.visit_counts[b], visits)
        np.testing.assert_allclose(result.output.q_values[b], q, atol=1e-12)
        assert result.output.root_value[b] == pytest.approx(root_value)


def test_batch_equals_each_tree_alone(game):
    rng = np.random.default_rng(11)
    states = _random_positions(game, rng, 5, 1, 5)
    together = _search(game, states, sims=120, leaves=2).output
    for b, s in enumerate(states):
        alone = _search(game, [s], sims=120, leaves=2).output
        np.testing.assert_array_equal(together.visit_counts[b], alone.visit_counts[0])
        np.testing.assert_array_equal(together.q_values[b], alone.q_values[0])
        n = int(alone.tree.num_nodes[0])
        assert together.tree.num_nodes[b] == n
        np.testing.assert_array_equal(together.tree.children[b, :n], alone.tree.children[0, :n])
        np.testing.assert_array_equal(together.tree.value_sum[b, :n], alone.tree.value_sum[0, :n])


@pytest.mark.parametrize("leaves", [2, 4, 7])
def test_virtual_loss_bookkeeping(game, leaves):
    """Waves of several leaves per tree: every simulation lands once at the root, nothing stays
    in flight, and the expansions per wave come in one evaluator call."""
    calls = []
    base = uniform_evaluator(game)

    def evaluate(states):
        calls.append(len(states))
        return base(states)

    states = [game.initial_state(), game.from_rows(["XX.", "O..", "..."])]
    sims = 50  # not a multiple of 4 or 7: the last wave is partial
    search = GameSearch(game, evaluate, num_simulations=sims, dirichlet_fraction=0.0,
                        leaves_per_tree=leaves, virtual_loss=3.0)
    out = search.run(states).output
    tree = out.tree
    np.testing.assert_array_equal(out.visit_counts.sum(axis=1), [sims, sims])
    np.testing.assert_array_equal(tree.visits[:, 0], [sims + 1, sims + 1])
    assert not tree.in_flight.any()
    # Q stays an average of results in [-1, 1]: no leftover virtual loss in the sums.
    visited = tree.visits > 0
    assert np.all(np.abs(tree.value_sum[visited] / tree.visits[visited]) <= 1 + 1e-12)
    waves = -(-sims // leaves)
    assert len(calls) <= 1 + waves  # the roots, then at most one call per wave
    assert max(calls[1:]) <= leaves * len(states)
    # One wave alone: virtual loss spreads its leaves over distinct children of the root.
    one_wave = GameSearch(game, base, num_simulations=leaves, dirichlet_fraction=0.0,
                          leaves_per_tree=leaves, virtual_loss=3.0).run(states[:1]).output
    np.testing.assert_array_equal(np.sort(one_wave.visit_counts[0])[::-1][:leaves],
                                  np.ones(leaves))


def test_terminal_nodes_are_never_expanded_twice(game):
    expanded: list[tuple[int, int]] = []
    parents_terminal: list[bool] = []
    states = [game.from_rows(["XOX", "OO.", "X.."]), game.from_rows(["XOX", "XOO", "..."])]
    node_states = [{0: s} for s in states]

    def expand(tree_index, node_index, parent_node, action):
        n = tree_index.size
        priors, values = np.ones((n, 9)), np.zeros(n)
        legal = np.zeros((n, 9), bool)
        terminal = np.zeros(n, bool)
        tvalue = np.zeros(n)
        for i in range(n):
            t, node, p = int(tree_index[i]), int(node_index[i]), int(parent_node[i])
            expanded.append((t, node))
            parents_terminal.append(game.outcome(node_states[t][p]) is not None)
            s = game.next_state(node_states[t][p], int(action[i]))
            node_states[t][node] = s
            out = game.outcome(s)
            if out is None:
                legal[i] = game.legal_mask(s)
            else:
                terminal[i] = True
                tvalue[i] = -out.value_for(game.to_play(node_states[t][p]))
        return ExpansionResult(priors, values, legal, terminal, tvalue)

    legal = np.stack([game.legal_mask(s) for s in states])
    for leaves in (1, 4):
        expanded.clear()
        node_states[:] = [{0: s} for s in states]
        out = run_mcts(RootInput(np.ones((2, 9)), np.zeros(2), legal), expand,
                       num_simulations=300, dirichlet_fraction=0.0, leaves_per_tree=leaves)
        assert len(expanded) == len(set(expanded))  # each node expanded once
        assert not any(parents_terminal)
        # Only a handful of distinct positions exist below these roots; 300 simulations mostly
        # revisit terminals, which must not allocate nodes.
        assert len(expanded) == int(out.tree.num_nodes.sum()) - 2
        assert out.tree.num_nodes.max() < 40
        assert (out.visit_counts.sum(axis=1) == 300).all()


def test_single_agent_follows_the_best_path():
    """A depth-2 tree with known leaf rewards: the single agent maximises at both levels
    (0 then 1, reward 1.0); the same tree as a two-player game is max-min (action 1: 0.5)."""
    rewards = np.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.5], [0.2, 0.9, 0.1]])
    # node -> path, per tree, to answer expand_fn
    paths: dict[tuple[int, int], tuple[int, ...]] = {}

    def expand(tree_index, node_index, parent_node, action):
        n = tree_index.size
        terminal = np.zeros(n, bool)
        tvalue = np.zeros(n)
        for i in range(n):
            path = paths.get((int(tree_index[i]), int(parent_node[i])), ()) + (int(action[i]),)
            paths[(int(tree_index[i]), int(node_index[i]))] = path
            if len(path) == 2:
                terminal[i] = True
                tvalue[i] = rewards[path]  # the root player's reward (it moves again at depth 2)
        return ExpansionResult(np.ones((n, 3)), np.zeros(n), np.ones((n, 3), bool), terminal,
                               tvalue)

    root = RootInput(np.ones((1, 3)), np.zeros(1), np.ones((1, 3), bool))
    out = run_mcts(root, expand, num_simulations=400, dirichlet_fraction=0.0, two_player=False)
    assert int(np.argmax(out.visit_counts[0])) == 0
    child = int(out.tree.children[0, 0, 0])
    below = out.tree.children[0, child]
    assert int(np.argmax(out.tree.visits[0, below])) == 1
    assert out.q_values[0, 0] > 0.9 and out.root_value[0] > 0.8

    paths.clear()
    out = run_mcts(root, expand, num_simulations=400, dirichlet_fraction=0.0, two_player=True)
    assert int(np.argmax(out.visit_counts[0])) == 1
    assert out.q_values[0, 1] == pytest.approx(0.5, abs=0.01)  # diluted by its own value-0 visit


def test_dirichlet_noise_touches_only_legal_actions():
    rng = np.random.default_rng(0)
    legal = np.array([[True, False, True, True, False, False, False, True, False],
                      [False] * 8 + [True]])
    prior = np.where(legal, 1.0, 0.0) / legal.sum(axis=1, keepdims=True)
    for _ in range(20):
        noisy = add_dirichlet_noise(prior, legal, alpha=0.3, fraction=0.5, rng=rng)
        assert np.all(noisy[~legal] == 0)
        np.testing.assert_allclose(noisy.sum(axis=1), 1.0)
    assert not np.allclose(noisy[0], prior[0])
    # Through run_mcts, with an evaluator that puts mass on illegal actions too.
    calls = {"n": 0}

    def expand(t, n, p, a):
        calls["n"] += 1
        k = t.size
        return ExpansionResult(np.ones((k, 9)), np.zeros(k), np.ones((k, 9), bool),
                               np.ones(k, bool), np.zeros(k))

    out = run_mcts(RootInput(np.ones((2, 9)), np.zeros(2), legal), expand, num_simulations=30,
                   dirichlet_fraction=0.25, rng=rng)
    assert np.all(out.tree.prior[:, 0][~legal] == 0)
    assert np.all(out.visit_counts[~legal] == 0)
    np.testing.assert_allclose(out.prior, prior)  # the reported prior is the evaluator's
    with pytest.raises(ValueError, match="rng"):
        run_mcts(RootInput(np.ones((2, 9)), np.zeros(2), legal), expand, num_simulations=3)


def test_noise_changes_search_with_seed_and_is_reproducible(game):
    s = game.initial_state()
    search = GameSearch(game, uniform_evaluator(game), num_simulations=64)
    a = search.run([s], rng=np.random.default_rng(1)).output.visit_counts
    b = search.run([s], rng=np.random.default_rng(1)).output.visit_counts
    c = search.run([s], rng=np.random.default_rng(2)).output.visit_counts
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# ------------------------------------------------------------------------------------------------
# Adapter surface


def test_search_stats_are_over_legal_action_texts(game):
    s = game.from_rows(["XO.", "...", "..."])
    result = _search(game, [s], sims=40)
    stats = result.stats[0]
    assert stats.actions == ["3", "4", "5", "6", "7", "8", "9"]
    assert sum(stats.visits) == 40 and stats.simulations == 40
    assert sum(stats.priors) == pytest.approx(1.0)
    assert len(stats.q_values) == len(stats.actions)
    np.testing.assert_array_equal(result.legal_actions[0], np.arange(2, 9))


def test_terminal_root_is_a_clear_error(game):
    s = game.from_rows(["XXX", "OO.", "..."])
    with pytest.raises(ValueError, match="already over"):
        _search(game, [s], sims=4)


def test_engine_evaluator_scatters_priors(game):
    from selfplay.policy.engine import ActionEvaluation

    class FakeEngine:
        policy_version = 3

        def __init__(self):
            self.seen = []

        def evaluate(self, states, actions):
            self.seen.append((list(states), [list(a) for a in actions]))
            # Everything on the last legal action; the value says "winning".
            return [ActionEvaluation(np.eye(len(a))[-1], 0.5, 3) for a in actions]

    engine = FakeEngine()
    s = game.from_rows(["XO.", "...", "..."])
    priors, values = engine_evaluator(engine, game)([s])
    assert engine.seen[0][0] == [game.render_text(s)]
    assert engine.seen[0][1] == [["3", "4", "5", "6", "7", "8", "9"]]
    np.testing.assert_array_equal(priors[0], np.eye(9)[8])
    assert values[0] == 0.5
    result = GameSearch(game, engine_evaluator(engine, game), num_simulations=8,
                        dirichlet_fraction=0.0).run([s])
    assert result.stats[0].priors[-1] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------
# Acting policies


def test_select_action_greedy_breaks_ties_at_random():
    rng = np.random.default_rng(0)
    visits = np.array([3, 7, 1, 7])
    picks = {select_action(visits, 0.0, rng) for _ in range(50)}
    assert picks == {1, 3}
    assert select_action(np.array([0, 9, 2]), 0, rng) == 1


def test_select_action_samples_visits_to_the_one_over_t():
    rng = np.random.default_rng(0)
    visits = np.array([1.0, 3.0, 0.0])
    counts = np.bincount([select_action(visits, 1.0, rng) for _ in range(4000)], minlength=3)
    np.testing.assert_allclose(counts / 4000, [0.25, 0.75, 0.0], atol=0.03)
    np.testing.assert_allclose(visit_distribution(visits, 0.5), [0.1, 0.9, 0.0])
    np.testing.assert_allclose(visit_distribution(np.array([2, 2, 1]), 0), [0.5, 0.5, 0])
    np.testing.assert_allclose(visit_distribution(np.zeros(4)), [0.25] * 4)
    # A tiny temperature neither overflows nor divides by zero.
    np.testing.assert_allclose(visit_distribution(np.array([1000.0, 500.0]), 1e-3), [1, 0],
                               atol=1e-12)


def test_select_action_is_within_range_for_every_seed():
    for seed, visits in itertools.product(range(5), ([1], [0, 0, 5], [2, 2])):
        a = select_action(np.array(visits), 1.0, np.random.default_rng(seed))
        assert 0 <= a < len(visits) and visits[a] > 0


def test_a_leaf_selected_twice_in_one_wave_is_expanded_once():
    """One legal action at the root: every descent of the first wave reaches the same new
    node; it is expanded once and backed up once per descent."""
    calls = []

    def expand(t, n, p, a):
        calls.append(t.size)
        k = t.size
        return ExpansionResult(np.ones((k, 3)), np.full(k, 0.5), np.ones((k, 3), bool),
                               np.zeros(k, bool), np.zeros(k))

    legal = np.array([[False, True, False]])
    out = run_mcts(RootInput(np.ones((1, 3)), np.zeros(1), legal), expand, num_simulations=4,
                   dirichlet_fraction=0.0, leaves_per_tree=4, two_player=False)
    assert calls == [1]
    assert out.visit_counts[0].tolist() == [0, 4, 0]
    assert out.q_values[0, 1] == pytest.approx(0.5)
    assert out.tree.num_nodes[0] == 2 and not out.tree.in_flight.any()
