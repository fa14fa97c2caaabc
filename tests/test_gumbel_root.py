"""The Gumbel root in the tree search (``search.root=gumbel``): sequential halving over Gumbel-top-k
root actions, PUCT below, the improved policy as the training target, and its chosen move played."""

from __future__ import annotations

import numpy as np
import pytest

from envs.games.tictactoe import TicTacToe
from selfplay.errors import UserError
from selfplay.replay.sampler import decisions_of
from selfplay.replay.schema import episodes_to_table, table_to_episodes
from selfplay.rollout.games import play_selfplay_games
from selfplay.search.config import SearchConfig, check_search_root
from selfplay.search.game_adapter import GameSearch, uniform_evaluator
from selfplay.search.mcts import ExpansionResult, RootInput, run_gumbel_mcts

ARM_VALUES = np.array([0.1, -0.2, 0.9, 0.3])  # action 2 is best; its prior is the lowest


def bandit_expand(tree_index, node_index, parent_node, action):
    """Every root action ends the episode with a known value (a one-step bandit)."""
    n = tree_index.size
    return ExpansionResult(priors=np.zeros((n, 4)), values=np.zeros(n),
                           legal=np.zeros((n, 4), bool), terminal=np.ones(n, bool),
                           terminal_value=ARM_VALUES[action])


def bandit_root(batch: int = 1) -> RootInput:
    return RootInput(priors=np.tile([0.4, 0.3, 0.05, 0.25], (batch, 1)), values=np.zeros(batch),
                     legal=np.ones((batch, 4), bool))


@pytest.mark.parametrize("seed", range(5))
def test_sequential_halving_finds_the_best_arm_within_its_budget(seed):
    out = run_gumbel_mcts(bandit_root(3), bandit_expand, num_simulations=8, max_num_considered=4,
                          two_player=False, rng=np.random.default_rng(seed))
    assert (out.action == 2).all()  # the best arm, though its prior is the lowest
    assert (out.visit_counts.sum(axis=1) == 8).all()
    # 4 considered once each, then the 2 survivors 2 more each: the best is a survivor
    assert sorted(out.visit_counts[0].tolist()) == [1, 1, 3, 3] and out.visit_counts[0, 2] == 3
    np.testing.assert_allclose(out.q_values[:, 2], 0.9)
    assert (out.policy_target.argmax(axis=1) == 2).all()
    np.testing.assert_allclose(out.policy_target.sum(axis=1), 1.0)


def test_without_noise_the_gumbel_root_is_deterministic():
    a = run_gumbel_mcts(bandit_root(), bandit_expand, num_simulations=8, gumbel_scale=0.0,
                        two_player=False)
    b = run_gumbel_mcts(bandit_root(), bandit_expand, num_simulations=8, gumbel_scale=0.0,
                        two_player=False)
    assert a.action.tolist() == b.action.tolist()
    np.testing.assert_array_equal(a.visit_counts, b.visit_counts)


def test_game_search_with_a_gumbel_root_takes_a_win_in_one():
    game = TicTacToe()
    state = game.initial_state()
    for move in (0, 3, 1, 4):  # X on 0 and 1, O on 3 and 4: X wins at 2
        state = game.next_state(state, move)
    search = GameSearch(game, uniform_evaluator(game), num_simulations=16, root="gumbel",
                        max_considered=8)
    result = search.run([state], rng=np.random.default_rng(0), add_noise=True)
    stats, legal = result.stats[0], result.legal_actions[0]
    assert int(legal[result.chosen[0]]) == 2
    assert stats.policy_target is not None and len(stats.policy_target) == len(stats.actions)
    assert sum(stats.policy_target) == pytest.approx(1.0)
    assert stats.actions[int(np.argmax(stats.policy_target))] == game.action_to_text(2)
    assert sum(stats.visits) == 16


def test_gumbel_self_play_trains_towards_the_improved_policy_and_it_is_stored():
    game = TicTacToe()
    search = GameSearch(game, uniform_evaluator(game), num_simulations=8, root="gumbel")
    episodes = play_selfplay_games(game, search, num_games=3, env_id="selfplay/TicTacToe-v0",
                                   policy_version=0, seed=1)
    for ep in episodes:
        for step, decision in zip(ep.steps, decisions_of(ep)):
            assert step.search.policy_target is not None
            np.testing.assert_allclose(decision.target, step.search.policy_target, rtol=1e-6)
            assert step.action in step.search.actions
    back = table_to_episodes(episodes_to_table(episodes))
    stored = [x for e in back for s in e.steps for x in s.search.policy_target]
    assert stored == pytest.approx([x for e in episodes for s in e.steps
                                    for x in s.search.policy_target], rel=1e-6)


def test_an_old_shard_without_the_policy_column_reads_as_visits():
    game = TicTacToe()
    search = GameSearch(game, uniform_evaluator(game), num_simulations=8)  # PUCT
    episodes = play_selfplay_games(game, search, num_games=1, env_id="selfplay/TicTacToe-v0",
                                   policy_version=0, seed=1)
    table = episodes_to_table(episodes)
    old = table.drop_columns(["search_policy"])
    (ep,) = table_to_episodes(old)
    assert all(s.search.policy_target is None for s in ep.steps)
    d = decisions_of(ep)[0]
    np.testing.assert_allclose(d.target, ep.steps[0].search.visit_distribution, rtol=1e-6)


@pytest.mark.parametrize("overrides, message", [
    ({"root": "alphago"}, "search.root='alphago': must be puct or gumbel"),
    ({"root": "gumbel", "leaves_per_tree": 4}, "set search.leaves_per_tree=1"),
    ({"root": "gumbel", "max_considered": 0}, "search.max_considered=0"),
])
def test_gumbel_settings_that_cannot_run_name_the_key(overrides, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_search_root(SearchConfig(**overrides))


def test_step_search_with_a_gumbel_root_finds_the_rewarded_low_prior_step():
    from test_text_search import ScriptedEngine, rewards_answer, two_branches

    from selfplay.search.text_adapter import StepSearch

    search = StepSearch(ScriptedEngine(two_branches), rewards_answer("Answer: 2"),
                        num_candidates=2, num_simulations=8, root="gumbel")
    result = search.run(["Q"], rng=np.random.default_rng(0))
    stats = result.stats[0]
    assert stats.actions == ["a", "b"] and result.chosen == ["b"]  # prior 0.1, reward 1
    assert stats.policy_target[1] > stats.policy_target[0]
    assert sum(stats.visits) == 8
