"""The search tree beyond the root: ``record_tree`` on a small tree built by hand (answers known),
on a real tic-tac-toe search, and through the episode store (old shards without the column too)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selfplay.replay.schema import SCHEMA, episodes_to_table, table_to_episodes
from selfplay.replay.store import EpisodeStore
from selfplay.search.tree import empty_tree
from selfplay.search.tree_record import (
    RecordNodesError,
    check_record_nodes,
    record_tree,
    search_nodes,
)
from selfplay.types import Episode, SearchNodes, SearchStats, Step


def _known_tree():
    """root 0 (10 visits) -> 1 (a0, 6) -> 3 (a1, 4), 4 (a0, 1); root -> 2 (a2, 3) -> 5 (a1, 2,
    terminal). Two-player: every non-root node's values flip into its parent's view."""
    t = empty_tree(1, 6, 3)
    edges = {1: (0, 0), 2: (0, 2), 3: (1, 1), 4: (1, 0), 5: (2, 1)}
    visits = [10, 6, 3, 4, 1, 2]
    value_sum = [1.0, 3.0, -1.5, -2.0, 0.5, 2.0]
    raw = [0.1, 0.2, -0.3, -0.4, 0.5, 1.0]
    for n, (p, a) in edges.items():
        t.children[0, p, a] = n
        t.parent[0, n], t.action_from_parent[0, n] = p, a
        t.discount[0, n] = -1.0
    t.visits[0] = visits
    t.value_sum[0] = value_sum
    t.raw_value[0] = raw
    t.prior[0, 0] = [0.5, 0.1, 0.4]
    t.prior[0, 1] = [0.3, 0.7, 0.0]
    t.prior[0, 2] = [0.0, 1.0, 0.0]
    t.terminal[0, 5] = True
    t.expanded[0, :5] = True
    t.num_nodes[0] = 6
    return t


def test_record_of_a_known_tree():
    tree = _known_tree()
    r = record_tree(tree, 0, 3)
    # The 3 most visited below the root: 1 (6), 3 (4), 2 (3); breadth first, most visited first.
    assert r.node.tolist() == [0, 1, 2, 3]
    assert r.parent.tolist() == [-1, 0, 0, 1]
    assert r.action.tolist() == [-1, 0, 2, 1]
    assert r.visits.tolist() == [10, 6, 3, 4]
    assert r.prior.tolist() == [1.0, 0.5, 0.4, 0.7]
    # Q and value in the chooser's view: node 1's own mean 3/6 is -0.5 for the root's mover.
    assert r.q.tolist() == pytest.approx([0.1, -0.5, 0.5, 0.5])
    assert r.value.tolist() == pytest.approx([0.1, -0.2, 0.3, 0.4])
    assert r.terminal.tolist() == [False] * 4

    whole = record_tree(tree, 0, 100)
    assert whole.node.tolist() == [0, 1, 2, 3, 4, 5]
    assert whole.parent.tolist() == [-1, 0, 0, 1, 1, 2]
    assert whole.terminal.tolist() == [False] * 5 + [True]
    assert record_tree(tree, 0, 0).node.tolist() == [0]

    # The root's children may be given the priors without the search's noise.
    clean = record_tree(tree, 0, 2, root_prior=np.array([0.9, 0.05, 0.05]))
    assert clean.node.tolist() == [0, 1, 3] and clean.prior.tolist() == [1.0, 0.9, 0.7]

    nodes = search_nodes(whole, lambda node, action: f"{node}:{action}")
    assert nodes.action == ["", "0:0", "0:2", "1:1", "1:0", "2:1"]
    assert nodes.parent == [-1, 0, 0, 1, 1, 2] and len(nodes) == 6


def test_record_breaks_ties_by_prior_then_action():
    tree = _known_tree()
    tree.visits[0, 2] = 6  # the root's two children now tie on visits (6)
    r = record_tree(tree, 0, 2)
    assert r.node.tolist() == [0, 1, 2]  # prior 0.5 (action 0) before 0.4 (action 2)
    tree.prior[0, 0] = [0.4, 0.1, 0.5]
    assert record_tree(tree, 0, 2).node.tolist() == [0, 2, 1]


def test_record_nodes_must_be_a_count():
    assert check_record_nodes(0) == 0 and check_record_nodes(64) == 64
    for bad in (-1, 1.5, True):
        with pytest.raises(RecordNodesError, match="search.record_nodes"):
            check_record_nodes(bad)


def test_a_real_search_records_its_most_visited_nodes():
    from envs.games.tictactoe import TicTacToe
    from selfplay.search.game_adapter import GameSearch, uniform_evaluator

    game = TicTacToe()
    search = GameSearch(game, uniform_evaluator(game), num_simulations=48, record_nodes=12)
    result = search.run([game.initial_state()], rng=np.random.default_rng(3))
    stats, tree = result.stats[0], result.output.tree
    nodes = stats.nodes
    assert nodes is not None and len(nodes) == 13
    assert nodes.parent[0] == -1 and all(0 <= p < i for i, p in enumerate(nodes.parent) if i)
    # Exactly the 12 most visited of the real tree, and the root's children agree with the stats.
    count = int(tree.num_nodes[0])
    top = sorted(tree.visits[0, 1:count].tolist(), reverse=True)[:12]
    assert sorted(nodes.visits[1:], reverse=True) == [float(v) for v in top]
    by_action = dict(zip(stats.actions, zip(stats.visits, stats.q_values, stats.priors)))
    depth1 = [i for i, p in enumerate(nodes.parent) if p == 0]
    for i in depth1:
        visits, q, prior = by_action[nodes.action[i]]
        assert (nodes.visits[i], nodes.q[i], nodes.prior[i]) == pytest.approx((visits, q, prior))
    deeper = [i for i, p in enumerate(nodes.parent) if p > 0]
    assert deeper, "48 simulations from the empty board reach a second ply"
    for i in deeper:  # a reply is a different cell than the move it answers
        assert nodes.action[i] != nodes.action[nodes.parent[i]]
    assert GameSearch(game, uniform_evaluator(game), num_simulations=8).run(
        [game.initial_state()], rng=np.random.default_rng(0)).stats[0].nodes is None


def _episode(nodes: SearchNodes | None) -> Episode:
    search = SearchStats(actions=["1", "2"], visits=[3.0, 1.0], priors=[0.75, 0.25],
                         q_values=[0.5, -0.25], root_value=0.25, simulations=4, nodes=nodes)
    return Episode(episode_id="e", env_id="selfplay/TicTacToe-v0", seed=0, policy_version=0,
                   steps=[Step("X to move\n", "1", 0, 1.0, search=search, legal_actions=["1", "2"]),
                          Step("O to move\n", "2", 1, 0.0)],
                   outcome=1.0, started_at=0.0, finished_at=1.0)


def test_tree_round_trips_through_the_store(tmp_path):
    nodes = SearchNodes(parent=[-1, 0, 0, 1], action=["", "1", "2", "5"],
                        visits=[5.0, 3.0, 1.0, 2.0], prior=[1.0, 0.75, 0.25, 0.5],
                        q=[0.25, 0.5, -0.25, -0.5], value=[0.0, 0.5, -0.25, 1.0],
                        terminal=[False, False, False, True])
    episodes = [_episode(nodes), _episode(None)]
    episodes[1].episode_id = "f"
    assert table_to_episodes(episodes_to_table(episodes)) == episodes
    store = EpisodeStore(tmp_path)
    store.append(episodes)
    read = list(EpisodeStore(tmp_path, read_only=True).episodes())
    assert read == episodes
    frame = store.to_pandas(["search_tree"])
    assert frame.search_tree[0][3]["action"] == "5"  # list<struct>: a list of dicts in pandas

    bad = _episode(SearchNodes([-1], ["", "x"], [1.0], [1.0], [0.0], [0.0], [False]))
    with pytest.raises(ValueError, match="step 0: search tree nodes are misaligned"):
        episodes_to_table([bad])


def test_a_shard_from_before_the_tree_column_reads(tmp_path):
    table = episodes_to_table([_episode(None)]).drop_columns(["search_tree"])
    assert "search_tree" not in table.column_names and "search_tree" in SCHEMA.names
    folder = tmp_path / "episodes"
    folder.mkdir()
    pq.write_table(table, folder / "shard-00000000-0badc0de.parquet")
    store = EpisodeStore(tmp_path)
    store.append([_episode(SearchNodes([-1], [""], [4.0], [1.0], [0.25], [0.0], [False]))])
    old, new = list(EpisodeStore(tmp_path, read_only=True).episodes())
    assert old.steps[0].search.nodes is None and new.steps[0].search.nodes.visits == [4.0]
    assert store.read_table(["search_tree"]).column(0).type == pa.list_(SCHEMA.field(
        "search_tree").type.value_type)


def test_step_search_names_nodes_by_their_candidate_step():
    from test_text_search import ScriptedEngine, rewards_answer, search_of, two_branches

    search = search_of(ScriptedEngine(two_branches), rewards_answer("Answer: 2"),
                       num_simulations=64, record_nodes=8)
    nodes = search.run(["Q"]).stats[0].nodes
    steps = {a: (p, t, v) for a, p, t, v in zip(nodes.action, nodes.parent, nodes.terminal,
                                                 nodes.value)}
    assert nodes.action[0] == "" and {nodes.action[1], nodes.action[2]} == {"a", "b"}
    # Each step's one reply is a final answer: terminal, valued by the verifier.
    assert nodes.action[steps["Answer: 1"][0]] == "a" and nodes.action[steps["Answer: 2"][0]] == "b"
    assert steps["Answer: 2"][1:] == (True, 1.0) and steps["Answer: 1"][1:] == (True, 0.0)
