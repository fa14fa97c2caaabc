"""OpenSpiel games through selfplay.adapters.openspiel: the contracts, the rules as OpenSpiel plays
them, the refusals, search and the arena, and a short `selfplay train` + `selfplay eval`."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pyspiel = pytest.importorskip("pyspiel")

from gymnasium.utils.env_checker import check_env

import selfplay
from envs.checker import check_text_env
from envs.protocol import IllegalActionError
from envs.registration import selfplay_env_ids


@pytest.fixture(scope="module", autouse=True)
def adapter():
    """The adapter, imported (so its ids registered) when these tests run, not when pytest
    collects: tests/test_env_contract.py sweeps the registry as it stands at collection."""
    from selfplay.adapters import openspiel

    return openspiel


REPO = Path(__file__).resolve().parent.parent
GAMES = ["hex(board_size=5)", "breakthrough(rows=5,columns=5)", "othello", "connect_four"]


def make(game: str, **kwargs):
    return selfplay.make_env("openspiel/Game-v0", game=game, **kwargs)


def test_one_import_registers_the_games_and_leaves_out_those_it_cannot_play(adapter):
    ids = set(adapter.REGISTERED_IDS)
    assert {"openspiel/Game-v0", "openspiel/hex-v0", "openspiel/breakthrough-v0",
            "openspiel/othello-v0", "openspiel/connect_four-v0", "openspiel/chess-v0"} <= ids
    assert not {"openspiel/checkers-v0", "openspiel/kuhn_poker-v0", "openspiel/go_fish-v0"} & ids
    assert ids <= set(selfplay_env_ids())  # listed by `selfplay envs`
    assert adapter.register() == adapter.REGISTERED_IDS  # again: same ids, nothing breaks


@pytest.mark.parametrize("game", GAMES)
def test_gymnasium_check_env_and_the_text_contract(game: str):
    env = make(game)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Text-space advice is not a contract failure
        check_env(env.unwrapped, skip_render_check=True)
    for seed in (0, 1):
        check_text_env(env, seed=seed)
    check_text_env(make(game, illegal_action="raise"))


@pytest.mark.parametrize("game", GAMES)
def test_a_random_game_follows_openspiel_move_by_move(game: str):
    """Texts, legal moves, the player to move, the rendering and the result are OpenSpiel's."""
    env = make(game)
    spiel = pyspiel.load_game(game).new_initial_state()
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    while True:
        assert str(spiel) in obs
        if spiel.is_terminal():
            break
        player = spiel.current_player()
        assert info["to_play"] == player and obs.startswith(f"player {player} to move")
        texts = [spiel.action_to_string(player, a) for a in spiel.legal_actions()]
        assert info["legal_actions"] == texts
        for move in texts:  # every move is inside the declared action space (e.g. 'a5b4*')
            assert env.action_space.contains(move), move
        k = int(rng.integers(len(texts)))
        spiel.apply_action(spiel.legal_actions()[k])
        obs, reward, terminated, _, info = env.step(texts[k])
        assert env.observation_space.contains(obs)
    returns = spiel.returns()
    winner = 0 if returns[0] > returns[1] else 1 if returns[1] > returns[0] else None
    assert terminated and env.unwrapped.outcome.value_for_player0 == (
        0.0 if winner is None else 1.0 if winner == 0 else -1.0)
    assert reward == (0.0 if winner is None else 1.0 if winner == 1 - info["to_play"] else -1.0)


def test_moves_that_name_the_mover_get_an_index_per_player():
    env = make("tic_tac_toe")
    game = env.unwrapped.game
    _, info = env.reset(seed=0)
    assert game.per_player and game.num_actions == 18 and info["legal_actions"][0] == "x(0,0)"
    _, _, _, _, info = env.step("x(1,1)")
    assert "o(0,0)" in info["legal_actions"] and "x(0,0)" not in info["legal_actions"]
    _, reward, done, _, info = env.step("x(0,0)")  # player 1 writing player 0's move: illegal
    assert done and reward == -1.0 and info["illegal_action"]


@pytest.mark.parametrize("kwargs, message", [
    ({"game": "checkers"}, "moves several times in a row"),
    ({"game": "kuhn_poker"}, "chance events"),
    ({"game": "phantom_ttt"}, "hidden information"),
    ({"game": "chess"}, "moves=index"),
    ({"game": "no_such_game"}, "unknown game 'no_such_game'; games the adapter takes: "),
    ({"game": "hex(bogus=1)"}, "Unknown parameter 'bogus'"),
    ({"game": "hex(board_size=5)", "parameters": {"board_size": 5}}, "not both"),
    ({"game": "hex", "moves": "letters"}, "moves='letters'"),
])
def test_a_game_it_cannot_play_is_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match="openspiel|not both") as err:
        make(**kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_index_moves_play_any_game_even_chess():
    env = selfplay.make_env("openspiel/chess-v0")  # registered with moves="index"
    _, info = env.reset(seed=0)
    assert all(m.isdigit() for m in info["legal_actions"]) and len(info["legal_actions"]) == 20
    game = env.unwrapped.game
    assert [game.text_to_action(t) for t in ("+89", "089", "８９", "99999")] == [None] * 4
    assert game.first_player == info["to_play"] == 1  # OpenSpiel's white is player 1
    _, _, done, _, info = env.step(info["legal_actions"][0])
    assert not done and info["to_play"] == 0


def test_parameters_kwarg_and_state_round_trip():
    env = selfplay.make_env("openspiel/hex-v0", parameters={"board_size": 5})
    assert env.unwrapped.game.name == "openspiel/hex(board_size=5)"
    env.reset(seed=0)
    env.step("c3")
    saved = env.unwrapped.get_state()
    env.step("a1")
    env.unwrapped.set_state(saved)
    assert env.unwrapped.legal_actions().count("a1") == 1 and env.unwrapped.to_play == 1
    bogus = saved.copy()
    bogus[2 + 1] = int(bogus[2])  # the second move on the first move's cell
    bogus[0] = 2
    with pytest.raises(ValueError, match="not legal"):
        env.unwrapped.set_state(bogus)
    with pytest.raises(IllegalActionError, match="legal actions: a1"):
        env.unwrapped.game.next_state(saved, 12)  # c3 is taken


def test_search_and_the_reference_players_run_on_an_adapted_game():
    from envs.games.players import make_player
    from selfplay.arena.match import play_match
    from selfplay.search.game_adapter import GameSearch, uniform_evaluator

    game = make("hex(board_size=5)").unwrapped.game
    root = game.initial_state()
    result = GameSearch(game, uniform_evaluator(game), num_simulations=32).run(
        [root, game.next_state(root, 12)], rng=np.random.default_rng(0))
    assert [sum(s.visits) for s in result.stats] == [32.0, 32.0]
    assert "c3" not in result.stats[1].actions and len(result.stats[1].actions) == 24
    match = play_match(game, make_player("mcts:64", game), make_player("random", game), 4, seed=0)
    assert match.games == 4 and match.illegal_moves_a == match.illegal_moves_b == 0
    assert match.score >= 0.5  # a 64-rollout UCT beats uniform random on 5x5 hex


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "selfplay.cli", *args], capture_output=True,
                            text=True, timeout=timeout, cwd=REPO, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


TINY = [
    "policy.hidden_size=32", "policy.num_layers=1", "policy.num_heads=2",
    "policy.num_kv_heads=1", "policy.intermediate_size=64", "search.num_simulations=4",
]


@pytest.mark.slow
def test_an_openspiel_game_trains_and_is_evaluated_through_the_cli(tmp_path: Path):
    run_dir = tmp_path / "hex"
    _cli("train", "env=openspiel_hex", *TINY, f"run.dir={run_dir}",
         "learner.batch_size=16", "learner.min_replay_steps=16", "learner.publish_every=2steps",
         "run.games_per_actor=4", "run.num_actors=1", "run.progress=false",
         "run.eval_every=1000steps", "arena.gate_games=2", "arena.eval_games=2",
         "arena.search_simulations=2", "arena.opponents=[random]", "arena.gate=false",
         "ray.num_cpus=2", "run.budget_steps=2", "run.budget_minutes=3")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["learner_steps"] >= 2
    import pandas as pd

    steps = pd.read_parquet(run_dir / "episodes")
    assert set(steps["env_id"]) == {"openspiel/hex-v0"}
    assert steps["action"].str.fullmatch(r"[a-e][1-5]").all()
    out = _cli("eval", "env=openspiel_hex", *TINY, f"checkpoint={run_dir}", "player=random",
               "games=2").stdout
    line = json.loads(out.strip().splitlines()[-1])
    played = sum(line[f"{r}_as_{side}"] for r in ("wins", "draws", "losses")
                 for side in ("first", "second"))
    assert played == 2 and line["b"] == "random" and "over 2 games" in out


def test_the_peer_benchmark_rebuilds_any_position_in_play_as_a_pyspiel_state():
    # benchmarks/openspiel_alphazero_peer.py hands OpenSpiel's bot our positions as pyspiel states
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from openspiel_alphazero_peer import move_order

    from envs.games.connect_four import apply_move, initial_state

    game = pyspiel.load_game("connect_four")
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(100):
        state, moves = initial_state(), []
        for _ in range(int(rng.integers(0, 30))):
            column = int(rng.choice([c for c in range(7) if state[35 + c] == 0]))
            if apply_move(state, column) != 0:
                break
            moves.append(column)
        if state[43] != 0:
            continue
        rebuilt, played = game.new_initial_state(), game.new_initial_state()
        for column in move_order(tuple(int(x) for x in state[:42])):
            rebuilt.apply_action(column)
        for column in moves:
            played.apply_action(column)
        assert str(rebuilt) == str(played)
        checked += 1
    assert checked > 50
    with pytest.raises(ValueError, match="no move order"):
        move_order((2,) + (0,) * 41)  # the second player's stone alone: no one could play it
