"""Arena: matches, Wilson intervals, the Elo fit and ladder, gating, the Elo curve.

Matches are tested on a one-pile Nim defined here (take 1-3 stones, taking the last stone wins),
whose perfect strategy is known: leave a multiple of 4. That keeps these tests independent of the
built-in games.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np
import pytest

from envs.protocol import GameOutcome
from selfplay.arena.elo import (
    EloLadder,
    LadderFileError,
    expected_score,
    fit_elo,
    plot_elo_curve,
)
from selfplay.arena.gating import gate
from selfplay.arena.match import (
    MatchResult,
    as_batch_player,
    play_match,
    replay_record,
    wilson_interval,
)

# ---------------------------------------------------------------------------------------------
# A tiny game and players


class Nim:
    """One pile; a move takes 1, 2 or 3 stones (action i takes i + 1); the last stone wins."""

    name = "nim"
    num_actions = 3
    state_shape = (2,)

    def __init__(self, stones: int = 10):
        self.stones = stones

    def initial_state(self) -> np.ndarray:
        return np.array([self.stones, 0], dtype=np.int64)  # [stones left, player to move]

    def to_play(self, state: np.ndarray) -> int:
        return int(state[1])

    def legal_mask(self, state: np.ndarray) -> np.ndarray:
        return np.arange(1, 4) <= state[0]

    def next_state(self, state: np.ndarray, action: int) -> np.ndarray:
        return np.array([state[0] - (action + 1), 1 - state[1]], dtype=np.int64)

    def outcome(self, state: np.ndarray) -> GameOutcome | None:
        if state[0] > 0:
            return None
        winner = 1 - int(state[1])  # the player who just took the last stone
        return GameOutcome(1.0 if winner == 0 else -1.0)

    def action_to_text(self, action: int) -> str:
        return str(action + 1)

    def text_to_action(self, text: str) -> int | None:
        return int(text) - 1 if text.strip() in ("1", "2", "3") else None

    def render_text(self, state: np.ndarray) -> str:
        return f"{state[0]} stones"


@dataclass
class Perfect:
    name: str = "perfect"

    def choose(self, game, state, rng) -> int:
        take = int(state[0]) % 4
        return take - 1 if take else 0  # lost position: take one and hope


@dataclass
class Random:
    name: str = "random"

    def choose(self, game, state, rng) -> int:
        return int(rng.choice(np.flatnonzero(game.legal_mask(state))))


@dataclass
class Constant:
    """Always answers ``action`` (possibly illegal or malformed)."""

    action: object
    name: str = "constant"

    def choose(self, game, state, rng):
        return self.action


class CountingBatch:
    """A batch player that records the size of every batch it is asked about."""

    name = "batched-perfect"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def choose_batch(self, game, states, rng) -> list[int]:
        self.batches.append(len(states))
        return [Perfect().choose(game, s, rng) for s in states]


# ---------------------------------------------------------------------------------------------
# play_match


def test_counts_add_up_and_sides_alternate():
    # With 10 stones the first player wins with perfect play: perfect vs perfect is decided by
    # who moves first, so the result shows exactly which side a had in each game.
    r = play_match(Nim(10), Perfect("p1"), Perfect("p2"), 7, seed=0)
    assert (r.a, r.b) == ("p1", "p2")
    assert r.games == 7 and r.wins + r.draws + r.losses == 7
    assert (r.games_as_first, r.games_as_second) == (4, 3)  # odd count: a gets the extra first
    assert (r.wins, r.losses, r.draws) == (4, 3, 0)
    assert r.wins_as_first == 4 and r.losses_as_second == 3
    assert r.illegal_moves_a == r.illegal_moves_b == 0
    assert r.score == pytest.approx(4 / 7)


def test_perfect_beats_random_whenever_it_moves_first():
    r = play_match(Nim(10), Perfect(), Random(), 40, seed=1)
    assert r.wins_as_first == 20 and r.losses_as_first == 0
    assert r.wins + r.draws + r.losses == 40
    # As second it wins unless random happens to play perfectly every move.
    assert r.wins_as_second >= 10


def test_same_seed_same_result_and_records_replay():
    r1 = play_match(Nim(10), Random("r1"), Random("r2"), 20, seed=5, record_games=True)
    r2 = play_match(Nim(10), Random("r1"), Random("r2"), 20, seed=5, record_games=True)
    assert r1 == r2 and r1.records == r2.records
    assert len(r1.records) == 20
    game = Nim(10)
    for rec in r1.records:
        final = replay_record(game, rec)[-1]
        outcome = game.outcome(final)
        assert outcome is not None and rec.reason == "rules"
        assert rec.score_a == (outcome.value_for(0 if rec.a_first else 1) + 1) / 2


def test_batch_player_is_asked_once_per_round_for_all_its_positions():
    a = CountingBatch()
    r = play_match(Nim(10), a, Perfect(), 16, seed=0)
    assert r.wins_as_first == 8 and r.losses_as_second == 8
    assert max(a.batches) == 16  # all its positions in one call
    assert len(a.batches) <= 10  # one call per round, not one per position (10 stones <= 10 plies)


@pytest.mark.parametrize("bad", [-1, 3, 99, None, "2", 1.0, True])
def test_illegal_or_malformed_action_loses_that_game_and_the_match_goes_on(bad):
    r = play_match(Nim(10), Constant(bad), Random(), 6, seed=0)
    # a loses every game at its first move; b never gets a bad move in.
    assert (r.wins, r.draws, r.losses) == (0, 0, 6)
    assert r.illegal_moves_a == 6 and r.illegal_moves_b == 0
    r = play_match(Nim(10), Random(), Constant(bad, name="bad"), 6, seed=0)
    assert (r.wins, r.losses) == (6, 0) and r.illegal_moves_b == 6


def test_occupied_move_late_in_the_game_is_illegal():
    # "Take 3" is legal until fewer than 3 stones remain: 10 -> 7 (a) -> 4 (b) -> 1 (a); then b
    # (constant 3) faces 1 stone and "take 3" is illegal; a wins those games.
    r = play_match(
        Nim(10), Constant(2, name="take3"), Constant(2, name="take3b"), 2, seed=0, record_games=True
    )
    first = r.records[0]
    assert first.a_first and first.actions == (2, 2, 2) and first.reason == "illegal_move"
    second = r.records[1]  # b first: 10 -> 7 (b) -> 4 (a) -> 1 (b); a's "take 3" is illegal
    assert not second.a_first and second.actions == (2, 2, 2) and second.score_a == 0.0
    assert (r.wins, r.losses) == (1, 1) and r.illegal_moves_a == r.illegal_moves_b == 1


def test_max_moves_adjudicates_a_draw():
    r = play_match(Nim(10), Random(), Random(), 4, seed=0, max_moves=1)
    assert (r.draws, r.truncated) == (4, 4)
    assert r.score == 0.5


def test_wrong_number_of_actions_is_a_clear_error():
    class Short:
        name = "short"

        def choose_batch(self, game, states, rng):
            return []

    with pytest.raises(ValueError, match="'short' returned 0 actions for"):
        play_match(Nim(10), Short(), Random(), 2, seed=0)


def test_as_batch_player_rejects_non_players():
    with pytest.raises(TypeError, match="not a player"):
        as_batch_player(object())
    p = CountingBatch()
    assert as_batch_player(p) is p
    assert as_batch_player(Perfect()).name == "perfect"


def test_match_result_round_trips_through_json():
    r = play_match(Nim(6), Perfect(), Random(), 5, seed=2, record_games=True)
    back = MatchResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r and back.records == r.records
    with pytest.raises(ValueError, match="unknown MatchResult keys"):
        MatchResult.from_dict({**r.to_dict(), "bogus": 1})


def test_with_builtin_tictactoe_if_available():
    players = pytest.importorskip("envs.games.players")
    tictactoe = pytest.importorskip("envs.games.tictactoe")
    game_cls = next(
        (getattr(tictactoe, n) for n in dir(tictactoe) if n.lower() == "tictactoe"), None
    )
    if game_cls is None:
        pytest.skip("no TicTacToe class")
    game = game_cls()
    a, b = players.make_player("random", game), players.make_player("random", game)
    r = play_match(game, a, b, 10, seed=0)
    assert r.games == 10 and r.illegal_moves_a == r.illegal_moves_b == 0
    perfect = play_match(game, players.make_player("perfect", game), b, 10, seed=0)
    assert perfect.losses == 0 and perfect.wins >= 5  # perfect play never loses tic-tac-toe
    occupied = play_match(game, Constant(4, name="center"), b, 4, seed=0)
    assert occupied.illegal_moves_a >= 1  # the centre is taken by its second move at the latest


# ---------------------------------------------------------------------------------------------
# Wilson interval


def _wilson_by_hand(k: float, n: int, z: float) -> tuple[float, float]:
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


def test_wilson_known_values():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    for k, n, z in [(50, 100, 1.96), (7, 20, 1.96), (3, 10, 2.576)]:
        assert wilson_interval(k, n, z) == pytest.approx(_wilson_by_hand(k, n, z))
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(_wilson_by_hand(10, 10, 1.96)[0])
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_match_confidence_interval_counts_draws_as_half():
    r = MatchResult("a", "b", 20, 20, 10, 10, 20, 20)  # 30 W, 40 D, 30 L
    assert r.score == 0.5
    assert r.confidence_interval() == pytest.approx(_wilson_by_hand(50, 100, 1.96))


# ---------------------------------------------------------------------------------------------
# Elo fit


@dataclass(frozen=True)
class R:
    a: str
    b: str
    wins: int
    draws: int
    losses: int


def test_fit_76_percent_is_about_200_elo():
    expected = 400 * math.log10(76 / 24)  # 200.2
    ratings = fit_elo([R("A", "B", 7600, 0, 2400)], anchor="B")
    assert ratings["B"] == 0.0
    assert ratings["A"] == pytest.approx(expected, abs=2)
    # Draws count as half a win: 52% wins + 48% draws is also a 76% score.
    ratings = fit_elo([R("A", "B", 5200, 4800, 0)], anchor="B")
    assert ratings["A"] == pytest.approx(expected, abs=2)


def test_fit_is_transitive_and_anchor_stays_zero():
    ratings = fit_elo([R("A", "B", 7600, 0, 2400), R("B", "random", 7600, 0, 2400)])
    assert ratings["random"] == 0.0
    assert ratings["B"] == pytest.approx(200.2, abs=3)
    assert ratings["A"] == pytest.approx(400.4, abs=5)
    assert expected_score(ratings["A"], ratings["B"]) == pytest.approx(0.76, abs=0.005)


def test_fit_symmetric_results_give_equal_ratings():
    ratings = fit_elo(
        [R("A", "random", 30, 5, 5), R("B", "random", 30, 5, 5), R("A", "B", 4, 2, 4)]
    )
    assert ratings["A"] == pytest.approx(ratings["B"], abs=1e-6)
    assert ratings["random"] == 0.0 and ratings["A"] > 0


def test_fit_unbeaten_player_stays_finite_and_order_does_not_matter():
    results = [R("A", "random", 40, 0, 0), R("A", "B", 25, 0, 15), R("B", "random", 30, 4, 6)]
    ratings = fit_elo(results)
    assert all(math.isfinite(v) for v in ratings.values())
    assert ratings["A"] > ratings["B"] > 0
    assert fit_elo(results[::-1]) == pytest.approx(ratings)
    # Self-matches carry no information.
    assert fit_elo(results + [R("A", "A", 5, 0, 5)]) == pytest.approx(ratings)
    with pytest.raises(ValueError, match="prior_games"):
        fit_elo(results, prior_games=0)


def test_fit_empty_gives_just_the_anchor():
    assert fit_elo([], anchor="perfect") == {"perfect": 0.0}


# ---------------------------------------------------------------------------------------------
# Ladder


def _populated_ladder(path) -> EloLadder:
    ladder = EloLadder(path)
    ladder.record(MatchResult("perfect", "random", 20, 0, 0, 18, 2, 0))
    for v, (w, d, l) in enumerate([(5, 2, 13), (12, 3, 5), (18, 1, 1)], start=1):
        ladder.record(MatchResult(f"v{v}", "random", w, 0, 0, 0, d, l), step=100 * v, version=v)
    ladder.record(MatchResult("v3", "perfect", 2, 5, 3, 1, 4, 5), step=300, version=3)
    return ladder


def test_ladder_records_history_and_round_trips(tmp_path):
    ladder = _populated_ladder(tmp_path)  # a run directory: the file is elo.json inside it
    assert ladder.path == tmp_path / "elo.json"
    history = ladder.history()
    assert [h.version for h in history] == [1, 2, 3] and history[1].player == "v2"
    assert history[0].rating < history[1].rating
    assert history[2].step == 300
    assert history[2].rating == pytest.approx(ladder.ratings()["v3"])  # its latest record counts
    assert ladder.ratings()["random"] == 0.0
    assert ladder.reference_players() == ["random", "perfect"]
    ladder.save()

    loaded = EloLadder.load(tmp_path)
    assert loaded.matches() == ladder.matches()
    assert loaded.history() == ladder.history()
    assert loaded.ratings() == pytest.approx(ladder.ratings())
    assert json.loads((tmp_path / "elo.json").read_text())["anchor"] == "random"


def test_ladder_save_is_atomic(tmp_path, monkeypatch):
    ladder = _populated_ladder(tmp_path / "elo.json")
    ladder.save()
    assert sorted(os.listdir(tmp_path)) == ["elo.json"]  # no temp file left behind
    before = (tmp_path / "elo.json").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk on fire")

    # A crash before the rename leaves the old file whole.
    monkeypatch.setattr(os, "replace", crash)
    ladder.record(MatchResult("v4", "random", 10, 0, 0, 10, 0, 0), version=4)
    with pytest.raises(OSError):
        ladder.save()
    monkeypatch.undo()
    assert (tmp_path / "elo.json").read_bytes() == before
    assert EloLadder.load(tmp_path / "elo.json").history()[-1].version == 3


def test_ladder_missing_file_is_empty_and_corrupt_file_names_the_path(tmp_path):
    empty = EloLadder.load(tmp_path / "elo.json", anchor="perfect")
    assert empty.ratings() == {"perfect": 0.0} and empty.matches() == [] and empty.history() == []

    bad = tmp_path / "elo.json"
    bad.write_text('{"format": "selfplay-elo", "matches": [')
    with pytest.raises(LadderFileError, match=str(bad)):
        EloLadder.load(bad)
    bad.write_text(
        '{"format": "selfplay-elo", "schema_version": 1, "anchor": "random", '
        '"prior_games": 1.0, "matches": [{"a": "x"}], "history": []}'
    )
    with pytest.raises(LadderFileError, match="cannot read"):
        EloLadder.load(tmp_path)

    _populated_ladder(bad).save()
    with pytest.raises(LadderFileError, match="anchored on 'random', not 'perfect'"):
        EloLadder.load(bad, anchor="perfect")


def test_plot_writes_a_png(tmp_path):
    ladder = _populated_ladder(tmp_path)
    out = plot_elo_curve(ladder, tmp_path / "elo.png")
    data = out.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"
    empty = plot_elo_curve(EloLadder(), tmp_path / "empty.png")
    assert empty.stat().st_size > 0


# ---------------------------------------------------------------------------------------------
# Gating


def _result(wins: int, draws: int, losses: int) -> MatchResult:
    return MatchResult("cand", "inc", wins, draws, losses, 0, 0, 0)


def test_gate_thresholds():
    at = gate(_result(11, 0, 9))  # 0.55 exactly
    assert at.accepted and at.score == pytest.approx(0.55) and at.threshold == 0.55
    assert gate(_result(10, 2, 8)).accepted  # 11/20 with draws as halves
    below = gate(_result(54, 0, 46))
    assert not below.accepted and "0.540 < 0.550" in below.reason
    assert gate(_result(60, 0, 40), threshold=0.6).accepted
    assert not gate(_result(59, 0, 41), threshold=0.6).accepted


def test_gate_disabled_always_accepts_and_empty_match_is_rejected():
    off = gate(_result(0, 0, 20), enabled=False)
    assert off.accepted and off.score == 0.0 and "disabled" in off.reason
    assert not gate(_result(0, 0, 0)).accepted
    with pytest.raises(ValueError, match="threshold"):
        gate(_result(1, 0, 0), threshold=1.5)


def test_fit_warm_start_lands_on_the_same_ratings():
    results = [R("A", "random", 40, 0, 0), R("A", "B", 25, 0, 15), R("B", "random", 30, 4, 6)]
    cold = fit_elo(results)
    warm = fit_elo(results, initial={"A": 1500.0, "B": -300.0, "random": 99.0, "gone": 5.0})
    assert warm == pytest.approx(cold, abs=1e-6) and warm["random"] == 0.0


def test_paired_random_openings_are_played_with_both_sides():
    from envs.games.tictactoe import TicTacToe
    from selfplay.arena.match import as_batch_player, play_match

    game = TicTacToe()

    class FirstLegal:
        name = "first-legal"

        def choose(self, game, state, rng):
            return int(np.flatnonzero(game.legal_mask(state))[0])

    result = play_match(game, as_batch_player(FirstLegal()), as_batch_player(FirstLegal()), 20,
                        seed=3, opening_plies=2, record_games=True)
    openings = [r.actions[:2] for r in result.records]
    assert openings[:10] == openings[10:]  # game i and game i+10 share an opening
    assert len(set(openings[:10])) > 1  # and the openings differ
    # identical deterministic players: each opening's two games mirror each other's score
    assert result.score == pytest.approx(0.5)


@pytest.mark.parametrize("plies", [0, 2])
def test_evaluations_open_with_arena_eval_opening_plies(tmp_path, monkeypatch, plies):
    """GameArena.evaluate plays each reference from paired random openings when asked: a
    deterministic candidate's games then start from different positions, each with both sides."""
    from hydra import compose, initialize_config_dir

    import selfplay.arena.game_arena as game_arena
    from selfplay.arena.elo import EloLadder
    from selfplay.arena.match import as_batch_player
    from selfplay.config import register_configs
    from selfplay.workers import worker_configs

    register_configs()
    conf = os.path.join(os.path.dirname(__file__), "..", "conf")
    with initialize_config_dir(config_dir=os.path.abspath(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "env=tictactoe", f"run.dir={tmp_path}", "arena.opponents=[random]",
            "arena.search_simulations=0", f"arena.eval_opening_plies={plies}"])
    arena = game_arena.GameArena(worker_configs(cfg).evaluator, {}, EloLadder(tmp_path / "e.json"))

    class FirstLegal:
        name = "v1"

        def choose(self, game, state, rng):
            return int(np.flatnonzero(game.legal_mask(state))[0])

    monkeypatch.setattr(arena, "_player", lambda *a: as_batch_player(FirstLegal()))
    played = []
    real_play_match = game_arena.play_match

    def recording_play_match(*args, **kwargs):
        played.append(real_play_match(*args, **kwargs, record_games=True))
        return played[-1]

    monkeypatch.setattr(game_arena, "play_match", recording_play_match)
    [summary] = arena.evaluate(None, 1, games=20, seed=5)
    assert summary["games"] == 20 and summary["b"] == "random"
    records = played[0].records
    first_moves = [tuple(r.actions[:2]) for r in records]
    if plies == 0:  # the candidate opens every game it starts in the same corner
        assert {r.actions[0] for r in records[:10]} == {0}
    else:
        assert first_moves[:10] == first_moves[10:]  # each opening played with both sides
        assert len(set(first_moves[:10])) > 1


def test_negative_opening_plies_are_one_clear_error():
    from selfplay.arena.config import ArenaConfig, check_arena_config
    from selfplay.errors import UserError

    with pytest.raises(UserError, match="arena.eval_opening_plies=-1"):
        check_arena_config(ArenaConfig(eval_opening_plies=-1))


def test_selfplay_eval_refuses_negative_opening_plies_before_loading_anything(tmp_path):
    from hydra import compose, initialize_config_dir

    from selfplay.config import register_configs
    from selfplay.errors import UserError
    from selfplay.evaluate import eval_main

    register_configs()
    conf = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "conf"))
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "env=tictactoe", f"checkpoint={tmp_path / 'nothing-here'}", "opening_plies=-2"])
    with pytest.raises(UserError, match="opening_plies=-2"):
        eval_main(cfg)
