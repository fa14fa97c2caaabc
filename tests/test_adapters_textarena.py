"""TextArena games through selfplay.adapters.textarena: the contracts, self-play games to the end
judged by TextArena's own rules, the penalty for illegal and garbage moves, and the arena."""

from __future__ import annotations

import copy
import random
import warnings

import numpy as np
import pytest

textarena = pytest.importorskip("textarena")

from gymnasium.utils.env_checker import check_env

import selfplay
from envs.checker import check_text_env
from envs.protocol import IllegalActionError
from envs.registration import selfplay_env_ids


@pytest.fixture(scope="module", autouse=True)
def adapter():
    """The adapter, imported (so its ids registered) when these tests run, not when pytest
    collects: tests/test_env_contract.py sweeps the registry as it stands at collection."""
    from selfplay.adapters import textarena

    return textarena


IDS = ["textarena/TicTacToe-v0", "textarena/ConnectFour-v0"]


def test_one_import_registers_the_games(adapter):
    assert set(IDS) | {"textarena/Game-v0"} <= set(adapter.REGISTERED_IDS)
    assert set(IDS) <= set(selfplay_env_ids())


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_check_env_and_the_text_contract(env_id: str):
    env = selfplay.make_env(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Text-space advice is not a contract failure
        check_env(env.unwrapped, skip_render_check=True)
    for seed in (0, 1):
        check_text_env(env, seed=seed)
    check_text_env(selfplay.make_env(env_id, illegal_action="raise"))


def _textarena_result(game_id: str, moves: list[str]) -> dict[int, int]:
    """TextArena's own rewards for ``moves`` played on a fresh TextArena env."""
    env = textarena.make(f"{game_id}-raw")
    env.reset(num_players=2, seed=0)
    for move in moves:
        assert not env.state.done
        env.step(move)
    assert env.state.done
    return env.state.rewards


@pytest.mark.parametrize("game_id, policy", [("TicTacToe-v0", "tiny LM"),
                                             ("ConnectFour-v0", "uniform")])
def test_self_play_games_end_with_legal_moves_and_textarenas_result(game_id: str, policy: str):
    """One policy plays both sides with search: a real tiny LM behind the engine (tic-tac-toe),
    uniform priors (connect four: longer games, same code path)."""
    from selfplay.rollout.games import play_selfplay_games
    from selfplay.search.game_adapter import GameSearch, engine_evaluator, uniform_evaluator

    game = selfplay.make_env(f"textarena/{game_id}").unwrapped.game
    if policy == "tiny LM":
        from selfplay.policy.config import EngineConfig, PolicyConfig
        from selfplay.policy.factory import make_engine

        engine = make_engine(PolicyConfig(hidden_size=32, num_layers=1, num_heads=2,
                                          num_kv_heads=1, intermediate_size=64), EngineConfig())
        evaluate = engine_evaluator(engine, game)
    else:
        evaluate = uniform_evaluator(game)
    search = GameSearch(game, evaluate, num_simulations=4)
    episodes = play_selfplay_games(game, search, num_games=2, env_id=game_id, policy_version=0,
                                   seed=0)
    assert len(episodes) == 2
    for episode in episodes:
        moves = [s.action for s in episode.steps]
        assert all(s.action in s.legal_actions for s in episode.steps)
        assert [s.player for s in episode.steps] == [k % 2 for k in range(len(moves))]
        rewards = _textarena_result(game_id, moves)
        assert episode.outcome == np.sign(rewards[0] - rewards[1])
        assert "Board" in episode.steps[0].observation  # TextArena's own board message


@pytest.mark.parametrize("bad", ["[4]", "[9]", "garbage", "[4] please", "I play [5]", "", None, 4])
def test_illegal_and_garbage_moves_lose_the_game(bad):
    """A taken cell, a move outside the game, text around a move (which TextArena itself would
    read), no text at all: the player who wrote it loses."""
    env = selfplay.make_env("textarena/TicTacToe-v0")
    env.reset(seed=0)
    env.step("[4]")
    obs, reward, terminated, _, info = env.step(bad)
    assert terminated and reward == -1.0 and info["illegal_action"] and info["legal_actions"] == []
    assert obs.startswith("player 1 lost by an illegal move")
    assert env.unwrapped.outcome.value_for_player0 == 1.0
    strict = selfplay.make_env("textarena/TicTacToe-v0", illegal_action="raise")
    strict.reset(seed=0)
    strict.step("[4]")
    with pytest.raises(IllegalActionError, match=r"legal actions: \[0\], \[1\]"):
        strict.step(bad)


def test_any_game_with_its_moves_listed_asks_textarena_which_are_legal():
    """The generic id finds legal moves by trying each on a copy (TextArena's own rules); it
    agrees with the fast rule of the known game on positions of random games."""
    generic = selfplay.make_env("textarena/Game-v0", game="TicTacToe-v0",
                                moves=[f"[{i}]" for i in range(9)], max_moves=9).unwrapped.game
    known = selfplay.make_env("textarena/TicTacToe-v0").unwrapped.game
    rng = np.random.default_rng(0)
    for _ in range(3):
        state = generic.initial_state()
        while generic.outcome(state) is None:
            mask = generic.legal_mask(state)
            assert np.array_equal(mask, known.legal_mask(state))
            state = generic.next_state(state, int(rng.choice(np.flatnonzero(mask))))
        assert generic.outcome(state) == known.outcome(state)


def test_the_arena_plays_it_against_reference_players():
    from envs.games.players import make_player
    from selfplay.arena.match import play_match

    game = selfplay.make_env("textarena/TicTacToe-v0").unwrapped.game
    result = play_match(game, make_player("mcts:64", game), make_player("random", game), 4,
                        seed=0)
    assert result.games == 4 and result.illegal_moves_a == result.illegal_moves_b == 0
    assert result.score >= 0.5


def test_textarenas_seeding_leaves_the_global_random_state_alone():
    random.seed(123)
    expected = copy.deepcopy(random.getstate())
    env = selfplay.make_env("textarena/ConnectFour-v0")
    env.reset(seed=0)
    env.step("[3]")
    assert random.getstate() == expected


@pytest.mark.parametrize("kwargs, message", [
    ({"game": "Chess-v0"}, "needs moves"),
    ({"game": "Nope-v0", "moves": ["[a]"], "max_moves": 3}, "unknown game 'Nope-v0'"),
    ({"game": "TicTacToe-v0", "moves": ["[1]", "[1]"], "max_moves": 9}, "distinct"),
])
def test_a_game_it_cannot_play_is_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        selfplay.make_env("textarena/Game-v0", **kwargs)
    assert "\n" not in str(err.value)
