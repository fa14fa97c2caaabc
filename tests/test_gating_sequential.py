"""The sequential gate (Wald's SPRT on decisive games): known values, config checks, and its error
rates measured on simulated matches, against the old 40-game 55% threshold gate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from selfplay.arena.config import ArenaConfig
from selfplay.arena.gating import (
    SequentialGate,
    check_gate_config,
    decide_match,
    gate,
    gate_from_config,
    merge_results,
    operating_characteristic,
    run_sequential,
)
from selfplay.arena.match import MatchResult

GATES = 2000  # simulated gates per scenario
ALPHA, BETA = 0.05, 0.10


def result(w: int, d: int, l: int, a: str = "cand", b: str = "inc") -> MatchResult:
    """w/d/l split over both sides, as a game match would be."""
    return MatchResult(a, b, w - w // 2, d - d // 2, l - l // 2, w // 2, d // 2, l // 2)


# ---- known values ------------------------------------------------------------------------------


def test_bounds_and_llr_by_hand():
    g = SequentialGate()
    assert g.upper == pytest.approx(math.log(18.0))  # (1 - 0.10) / 0.05
    assert g.lower == pytest.approx(math.log(0.10 / 0.95))
    assert g.llr(3, 2) == pytest.approx(3 * math.log(1.3) + 2 * math.log(0.7))
    # ln 1.3 = 0.262 per win: 11 wins stay below ln 18 = 2.890, 12 cross it
    assert g.decide(11, 0).state == "continue"
    accept = g.decide(12, 0)
    assert accept.state == "accept" and accept.accepted and accept.decided
    assert "LLR +3.148" in accept.reason and "+2.890" in accept.reason and "-2.251" in accept.reason
    # ln 0.7 = -0.357 per loss: 6 losses stay above -2.251, 7 cross it
    assert g.decide(0, 6).state == "continue"
    reject = g.decide(0, 7)
    assert reject.state == "reject" and not reject.accepted and reject.decided


def test_draws_carry_no_information_but_count_towards_the_cap():
    g = SequentialGate(max_games=100)
    assert g.decide(5, 5, 80).llr == g.decide(5, 5, 0).llr
    assert g.decide(5, 5, 89).state == "continue"
    capped = g.decide(5, 5, 90)
    assert capped.state == "reject" and "cap of 100" in capped.reason
    assert capped.games == 100 and capped.score == 0.5
    # decided by the LLR before the cap is looked at
    assert g.decide(12, 0, 200).state == "accept"


def test_final_rejects_what_is_undecided():
    g = SequentialGate()
    assert g.decide(3, 1).state == "continue"
    final = g.decide(3, 1, final=True)
    assert final.state == "reject" and "no more games" in final.reason
    assert g.decide(12, 0, final=True).state == "accept"


def test_bad_counts_and_parameters_are_refused():
    g = SequentialGate()
    with pytest.raises(ValueError, match="losses"):
        g.decide(1, -1)
    with pytest.raises(ValueError, match="draws"):
        g.decide(1, 1, 0.5)  # type: ignore[arg-type]
    for kwargs, key in [({"p1": 0.5}, "p1"), ({"p1": 1.0}, "p1"), ({"alpha": 0.0}, "alpha"),
                        ({"beta": 0.5}, "beta"), ({"max_games": 0}, "max_games")]:  # fmt: skip
        with pytest.raises(ValueError, match=key):
            SequentialGate(**kwargs)


# ---- config ------------------------------------------------------------------------------------


def test_config_defaults_build_the_default_gate():
    arena = ArenaConfig()
    assert arena.gate_test == "threshold" and arena.gate_batch == 20
    assert SequentialGate.from_config(arena) == SequentialGate(0.65, 0.05, 0.10, 400)
    node = OmegaConf.structured(ArenaConfig)  # as the run sees it
    node.gate_test = "sprt"
    node.gate_p1 = 0.7
    assert SequentialGate.from_config(node).p1 == 0.7


@pytest.mark.parametrize(
    "key, value",
    [("gate_test", "wald"), ("gate_p1", 0.4), ("gate_p1", 1.2), ("gate_alpha", 0.0),
     ("gate_beta", 0.7), ("gate_batch", 0), ("gate_max_games", -3), ("gate_threshold", 1.5)],
)  # fmt: skip
def test_config_errors_name_the_key(key, value):
    arena = ArenaConfig(**{key: value})
    with pytest.raises(ValueError, match=f"arena.{key}="):
        check_gate_config(arena)


def test_typed_config_refuses_a_wrong_type():
    node = OmegaConf.structured(ArenaConfig)
    with pytest.raises(Exception, match="gate_batch"):
        node.gate_batch = "many"


# ---- a finished match by either rule -----------------------------------------------------------


def test_decide_match_with_either_rule():
    r = result(11, 0, 9)  # 0.55: the threshold gate accepts, the test has seen too little
    assert decide_match(r, "threshold") == gate(r)
    assert decide_match(r, "threshold").accepted
    sprt = decide_match(r, "sprt")
    assert not sprt.accepted and sprt.state == "reject" and "'inc'" in sprt.reason
    assert sprt.score == pytest.approx(r.score)
    strong = decide_match(result(30, 10, 5), "sprt")
    assert strong.accepted and (strong.wins, strong.draws, strong.losses) == (30, 10, 5)
    assert decide_match(result(0, 0, 20), "sprt", enabled=False).accepted
    with pytest.raises(ValueError, match="gate test"):
        decide_match(r, "elo")


def test_gate_from_config():
    r = result(16, 0, 4)  # LLR 16 ln 1.3 + 4 ln 0.7 = 2.770
    assert gate_from_config(r, ArenaConfig()).accepted  # score 0.8 >= 0.55
    assert not gate_from_config(r, ArenaConfig(gate_test="sprt")).accepted  # < ln 18 = 2.890
    assert gate_from_config(r, ArenaConfig(gate_test="sprt", gate_alpha=0.1)).accepted  # ln 9
    assert not gate_from_config(r, ArenaConfig(gate_threshold=0.85)).accepted
    with pytest.raises(ValueError, match="arena.gate_alpha"):
        gate_from_config(r, ArenaConfig(gate_test="sprt", gate_alpha=2.0))


# ---- playing in batches ------------------------------------------------------------------------


class Scripted:
    """play(start, n) from a fixed string of outcomes, 'W', 'D', 'L'; records the calls."""

    def __init__(self, outcomes: str):
        self.outcomes, self.calls = outcomes, []

    def __call__(self, start: int, n: int) -> MatchResult:
        self.calls.append((start, n))
        chunk = self.outcomes[start : start + n]
        return MatchResult(
            "cand", "inc", chunk.count("W"), chunk.count("D"), chunk.count("L"), 0, 0, 0
        )


def test_run_sequential_stops_at_the_first_look_that_decides():
    play = Scripted("W" * 100)
    decision, match = run_sequential(play, SequentialGate(), batch=5)
    assert decision.accepted and match.games == 15 and match.wins == 15  # 12 wins needed
    assert play.calls == [(0, 5), (5, 5), (10, 5)]
    play = Scripted("L" * 100)
    decision, match = run_sequential(play, SequentialGate(), batch=5)
    assert decision.state == "reject" and match.games == 10  # 7 losses needed


def test_run_sequential_rejects_at_the_cap_or_when_games_run_out():
    play = Scripted("WWWWLLL" * 100)  # LLR drifts by 4 ln 1.3 + 3 ln 0.7 = -0.02 per 7 games
    decision, match = run_sequential(play, SequentialGate(max_games=50), batch=20)
    assert decision.state == "reject" and "cap of 50" in decision.reason
    assert play.calls == [(0, 20), (20, 20), (40, 10)] and match.games == 50
    play = Scripted("D" * 30)
    decision, match = run_sequential(play, SequentialGate(), batch=8, available=30)
    assert decision.state == "reject" and "no more games" in decision.reason
    assert match.draws == 30 and play.calls[-1] == (24, 6)


def test_run_sequential_refuses_bad_input():
    with pytest.raises(ValueError, match="batch"):
        run_sequential(Scripted("W"), SequentialGate(), batch=0)
    with pytest.raises(ValueError, match="no games"):
        run_sequential(Scripted("W"), SequentialGate(), batch=4, available=0)
    with pytest.raises(ValueError, match="returned 1 games"):
        run_sequential(Scripted("W"), SequentialGate(), batch=4)  # only one outcome to give


def test_merge_results_adds_counts():
    merged = merge_results(result(3, 1, 2), result(4, 0, 1))
    assert (merged.wins, merged.draws, merged.losses) == (7, 1, 3)
    assert merged.wins_as_first == 2 + 2 and merged.wins_as_second == 1 + 2
    with pytest.raises(ValueError, match="cannot merge"):
        merge_results(result(1, 0, 0), result(1, 0, 0, b="other"))


# ---- error rates on simulated matches ----------------------------------------------------------


def simulate(
    p: float, draw_rate: float, rng: np.random.Generator, *, batch: int = 20
) -> tuple[float, float]:
    """Acceptance rate and mean games of GATES sequential gates (the default test), each game a
    draw with ``draw_rate``, else a candidate win with ``p``; played with the real
    run_sequential."""
    test = SequentialGate()

    def play(start: int, n: int) -> MatchResult:
        u = rng.random(n)
        draws = int((u < draw_rate).sum())
        wins = int((u >= 1.0 - (1.0 - draw_rate) * p).sum())
        return MatchResult("cand", "inc", wins, draws, n - wins - draws, 0, 0, 0)

    accepted, games = 0, 0
    for _ in range(GATES):
        decision, match = run_sequential(play, test, batch)
        accepted += decision.accepted
        games += match.games
    return accepted / GATES, games / GATES


def _se(rate: float) -> float:
    return math.sqrt(max(rate * (1 - rate), 1e-4) / GATES)


@pytest.mark.parametrize("draw_rate", [0.0, 0.3])
def test_equal_candidate_is_accepted_at_most_alpha(draw_rate):
    rng = np.random.default_rng(1234)
    rate, _ = simulate(0.5, draw_rate, rng)
    assert rate <= ALPHA + 0.01
    exact = operating_characteristic(SequentialGate(), 0.5, draw_rate=draw_rate).accept
    assert abs(rate - exact) < 4 * _se(exact)  # the simulation and the exact figure agree


@pytest.mark.parametrize("p, draw_rate", [(0.65, 0.0), (0.65, 0.3), (0.7, 0.3)])
def test_better_candidate_is_rejected_at_most_beta(p, draw_rate):
    rng = np.random.default_rng(99)
    rate, games = simulate(p, draw_rate, rng)
    assert 1.0 - rate <= BETA + 0.015
    exact = operating_characteristic(SequentialGate(), p, draw_rate=draw_rate)
    assert abs(rate - exact.accept) < 4 * _se(exact.accept)
    assert games < 150  # far fewer than the 400-game cap on average


def test_the_old_threshold_gate_accepts_an_equal_candidate_far_more_often():
    """The reason for the change: 40 games at 0.55 is close to a coin flip for equals."""
    rng = np.random.default_rng(7)
    wins = rng.binomial(40, 0.5, size=GATES)
    old = np.mean([gate(result(int(w), 0, 40 - int(w))).accepted for w in wins])
    assert old == pytest.approx(0.318, abs=0.04)  # P(Binomial(40, 1/2) >= 22)
    new, _ = simulate(0.5, 0.0, np.random.default_rng(8))
    assert old > 0.25 and old > 5 * new


def test_operating_characteristic_matches_the_docstring_table():
    g = SequentialGate()
    rows = {0.0: (0.025, 0.042, 0.004), 0.6: (0.031, 0.099, 0.011)}
    at = {}
    for draw_rate, (alpha, beta_65, beta_70) in rows.items():
        at = {p: operating_characteristic(g, p, draw_rate=draw_rate) for p in (0.5, 0.65, 0.7)}
        assert at[0.5].accept == pytest.approx(alpha, abs=6e-4)
        assert at[0.65].reject == pytest.approx(beta_65, abs=6e-4)
        assert at[0.7].reject == pytest.approx(beta_70, abs=6e-4)
        assert at[0.5].accept + at[0.5].reject == pytest.approx(1.0)
    # a stronger candidate is accepted more often: the test is monotone in p
    mid = [operating_characteristic(g, p, draw_rate=0.6).accept for p in (0.4, 0.575)]
    accepts = [mid[0], at[0.5].accept, mid[1], at[0.65].accept, at[0.7].accept]
    assert accepts == sorted(accepts) and accepts[0] < 0.01 and 0.1 < mid[1] < 0.9


def test_operating_characteristic_by_enumeration():
    """Every outcome sequence of a 4-game capped test with looks after each game, by hand."""
    import itertools

    g = SequentialGate(p1=0.9, alpha=0.2, beta=0.2, max_games=4)  # bounds +-ln 4 = +-1.386
    p = 0.6
    accept = 0.0
    for seq in itertools.product("WL", repeat=4):
        prob = math.prod(p if s == "W" else 1 - p for s in seq)
        for n in range(1, 5):
            d = g.decide(seq[:n].count("W"), seq[:n].count("L"))
            if d.decided:
                accept += prob * d.accepted
                break
    assert operating_characteristic(g, p, batch=1).accept == pytest.approx(accept)
