"""Symmetry augmentation of the learner's draws (``learner.augment_symmetries``): each searched
decision's views are the same decision in a mirrored or rotated position, they agree with the
rules, and the sampler draws them beside the originals."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from envs.games.connect_four import ConnectFour
from envs.games.tictactoe import TicTacToe
from envs.protocol import symmetries_of
from selfplay.config import EnvConfig
from selfplay.errors import UserError
from selfplay.replay.augment import draw_view, episode_states, with_symmetries
from selfplay.replay.sampler import ReplaySampler, decisions_of
from selfplay.rollout.games import play_selfplay_games
from selfplay.search.game_adapter import GameSearch, uniform_evaluator


def self_play(game, games: int = 4, seed: int = 0):
    search = GameSearch(game, uniform_evaluator(game), num_simulations=16)
    return play_selfplay_games(game, search, num_games=games, env_id="x", policy_version=0,
                               seed=seed)


def test_connect_four_views_are_the_mirrored_decisions():
    game = ConnectFour()
    (mirror,) = [g for g in symmetries_of(game) if g.name != "identity"]
    episode = self_play(game, games=1)[0]
    states = episode_states(game, episode)
    decisions = with_symmetries(game, episode, decisions_of(episode))
    assert len(decisions) == episode.length and all(len(d.views) == 1 for d in decisions)
    for d, state in zip(decisions, states):
        (view,) = d.views
        mirrored = mirror.state(state)
        assert view.observation == game.render_text(mirrored)
        legal = [game.action_to_text(int(a)) for a in np.flatnonzero(game.legal_mask(mirrored))]
        assert view.actions == legal  # the mirrored position's moves, as its search lists them
        assert view.action == str(8 - int(d.action))  # column c <-> 8 - c
        # each move keeps its visits: the target of column c is the original's of 8 - c
        original = dict(zip(d.actions, d.target))
        assert [original[str(8 - int(a))] for a in view.actions] == pytest.approx(view.target)
        q = dict(zip(d.actions, d.q_values))  # and its Q (what DPO pairs siblings by)
        assert d.q_values.size == len(d.actions)
        assert [q[str(8 - int(a))] for a in view.actions] == pytest.approx(view.q_values)
        # the view agrees with the rules: playing its move gives the mirrored next position
        after = game.next_state(mirrored, game.text_to_action(view.action))
        assert np.array_equal(after, mirror.state(game.next_state(state,
                                                                  game.text_to_action(d.action))))


def test_tic_tac_toe_has_seven_views_per_decision():
    game = TicTacToe()
    episode = self_play(game, games=1, seed=4)[0]
    decisions = with_symmetries(game, episode, decisions_of(episode))
    assert all(len(d.views) == 7 for d in decisions)
    first = decisions[1]  # after one move the eight views are not all the same position
    assert len({first.observation, *(v.observation for v in first.views)}) > 1


def test_an_episode_that_does_not_replay_gets_no_views():
    game = ConnectFour()
    episode = self_play(game, games=1)[0]
    tampered = replace(episode, steps=[replace(episode.steps[0], observation="not the board")]
                       + episode.steps[1:])
    decisions = with_symmetries(game, tampered, decisions_of(tampered))
    assert all(d.views == () for d in decisions)


def test_the_sampler_draws_views_beside_the_originals():
    game = ConnectFour()
    episodes = self_play(game, games=2)
    plain = ReplaySampler(window=1000)
    plain.add(episodes)
    augmented = ReplaySampler(window=1000, augment_game=game)
    augmented.add(episodes)
    originals = {s.observation for e in episodes for s in e.steps}
    drawn_plain = set(plain.sample(400, rng=0).observations)
    drawn = augmented.sample(400, rng=0)
    assert drawn_plain <= originals
    mirrored_only = set(drawn.observations) - originals
    assert mirrored_only  # mirrored positions are drawn ...
    assert set(drawn.observations) & originals  # ... beside the originals
    for obs, actions, target in zip(drawn.observations, drawn.actions, drawn.target_visits):
        assert len(actions) == len(target) and target.sum() == pytest.approx(1.0)


def test_draw_view_is_uniform_over_the_views():
    game = TicTacToe()
    episode = self_play(game, games=1, seed=4)[0]
    d = with_symmetries(game, episode, decisions_of(episode))[2]
    keys = [(d.observation, tuple(d.actions))] + [(v.observation, tuple(v.actions))
                                                  for v in d.views]
    rng = np.random.default_rng(0)
    counts: dict = {}
    for _ in range(4000):
        v = draw_view(d, rng)
        key = (v.observation, tuple(v.actions))
        counts[key] = counts.get(key, 0) + 1
    assert set(counts) == set(keys)
    for key, count in counts.items():  # 1/8 each; a position symmetric to itself adds up
        assert count == pytest.approx(4000 / 8 * keys.count(key), rel=0.2)


def test_augmentation_needs_a_game_that_declares_symmetries():
    from selfplay.train import _check_symmetries

    with pytest.raises(UserError, match="is a text task"):
        _check_symmetries(SimpleNamespace(env=EnvConfig(id="selfplay/MathArithmetic-v0")), "text")
    _check_symmetries(SimpleNamespace(env=EnvConfig(id="selfplay/ConnectFour-v0")), "game")
    pytest.importorskip("pyspiel")
    openspiel = EnvConfig(id="openspiel/tic_tac_toe-v0", module="selfplay.adapters.openspiel")
    with pytest.raises(UserError, match="declares no symmetries"):
        _check_symmetries(SimpleNamespace(env=openspiel), "game")
