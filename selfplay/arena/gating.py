"""Gating: does a candidate version replace the incumbent? Pure decisions on match results.

The candidate is player ``a`` of the match (played against the incumbent as ``b``). Two rules,
chosen by ``arena.gate_test``:

``"threshold"`` (``gate``): accept when the score (wins + draws / 2) / games reaches a fixed
threshold, as in AlphaGo Zero's 55% gate. Over 40 games an *equal* candidate reaches 0.55 about
32% of the time (P(Binomial(40, 1/2) >= 22) = 0.318 with no draws): a coin flip, not a test.

``"sprt"`` (``SequentialGate``): Wald's sequential probability ratio test on the decisive games
(a draw carries no information about who is better and does not move the test). With p the
probability that the candidate wins a decisive game,

    H0: p = 0.5  (the candidate is no better)      H1: p = p1  (default 0.65, about +108 Elo)

the log-likelihood ratio after W wins and L losses is
``LLR = W ln(2 p1) + L ln(2 (1 - p1))``; the test accepts once ``LLR >= ln((1 - beta) / alpha)``,
rejects once ``LLR <= ln(beta / (1 - alpha))`` and otherwise plays on. Nominal error rates:

- alpha (default 0.05) = P(accept | p = 0.5): an equal candidate replaces the incumbent;
- beta (default 0.10) = P(reject | p = p1): a candidate that much better is kept out.

Whatever the looks, P(accept | p = 0.5) <= alpha / (1 - beta) = 0.056 holds exactly (under H0 the
likelihood ratio is a martingale of mean 1; Ville's inequality bounds its ever reaching
(1 - beta) / alpha). The test looks at the counts only between batches (``arena.gate_batch``
games or prompts), so it overshoots its bounds and is *more* conservative than nominal. ``max_games`` caps the games played
(draws included: the cap bounds compute); a test still undecided at the cap rejects (keeps the
incumbent), which can only lower alpha and raise beta. Exact figures for the defaults (p1 0.65,
alpha 0.05, beta 0.10, batch 20, cap 400; ``operating_characteristic`` computes them):

    draw rate   P(accept | p=0.5)   P(reject | p=0.65)   P(reject | p=0.7)   E[games] p=0.5 / 0.65
    0           0.025               0.042                0.004               69 / 79
    0.3         0.028               0.056                0.007               88 / 105
    0.6         0.031               0.099                0.011               138 / 165

Candidates between the hypotheses are accepted with intermediate probability (p = 0.55: ~0.20,
p = 0.6: ~0.70 with no draws).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from selfplay.arena.match import MatchResult

# Scores are ratios of small integers; a score printed as 0.55 must pass a 0.55 gate even when
# float division lands one ulp below it. The same slack lets an LLR land exactly on a bound.
_EPS = 1e-9

GATE_TESTS = ("threshold", "sprt")


# ---------------------------------------------------------------------------------------------
# The fixed threshold (games use it today)


@dataclass(frozen=True)
class GateDecision:
    accepted: bool
    score: float  # the candidate's score against the incumbent
    threshold: float
    reason: str  # one line for logs: why accepted or rejected


def gate(result: MatchResult, threshold: float = 0.55, enabled: bool = True) -> GateDecision:
    """Accept ``result.a`` over ``result.b`` when ``result.score >= threshold`` (or gating is off)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"gate threshold must be in [0, 1], got {threshold}")
    score = result.score
    record = f"{result.wins}W {result.draws}D {result.losses}L vs {result.b!r}"
    if not enabled:
        return GateDecision(True, score, threshold, f"gating disabled; {record}")
    if result.games == 0:
        return GateDecision(False, score, threshold, f"no games played against {result.b!r}")
    if score >= threshold - _EPS:
        why = f"score {score:.3f} >= {threshold:.3f} ({record})"
        return GateDecision(True, score, threshold, why)
    return GateDecision(False, score, threshold, f"score {score:.3f} < {threshold:.3f} ({record})")


# ---------------------------------------------------------------------------------------------
# The sequential test


@dataclass(frozen=True)
class SequentialDecision:
    """Where the sequential test stands after ``wins``/``losses``/``draws``."""

    state: str  # "accept" | "reject" | "continue"
    wins: int
    losses: int
    draws: int
    llr: float  # log-likelihood ratio of H1 (p = p1) against H0 (p = 0.5), decisive games only
    lower: float  # reject at or below: ln(beta / (1 - alpha))
    upper: float  # accept at or above: ln((1 - beta) / alpha)
    reason: str  # one line for logs, with the LLR and the bounds

    @property
    def accepted(self) -> bool:
        return self.state == "accept"

    @property
    def decided(self) -> bool:
        return self.state != "continue"

    @property
    def games(self) -> int:
        return self.wins + self.losses + self.draws

    @property
    def score(self) -> float:
        """(wins + draws / 2) / games, as ``MatchResult.score``; 0.5 with no games."""
        return (self.wins + 0.5 * self.draws) / self.games if self.games else 0.5


@dataclass(frozen=True)
class SequentialGate:
    """Wald's SPRT of H0: p = 0.5 against H1: p = ``p1`` on decisive games (module docstring).

    ``alpha`` = P(accept | the candidate is equal), ``beta`` = P(reject | p = p1), both nominal:
    looks between batches make the real rates lower (see the table in the module docstring).
    ``max_games`` caps the games played, draws included; undecided at the cap is a reject (keep
    the incumbent), which only lowers alpha (and raises beta a little when draws are common).
    """

    p1: float = 0.65  # P(candidate wins a decisive game) under H1
    alpha: float = 0.05  # P(accept | p = 0.5)
    beta: float = 0.10  # P(reject | p = p1)
    max_games: int = 400  # undecided after this many games (draws included): reject

    def __post_init__(self) -> None:
        if not 0.5 < self.p1 < 1.0:
            raise ValueError(f"p1 must be in (0.5, 1) (H1: the candidate is better), got {self.p1}")
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not 0.0 < value < 0.5:
                raise ValueError(f"{name} must be in (0, 0.5), got {value}")
        if isinstance(self.max_games, bool) or not isinstance(self.max_games, int):
            raise TypeError(f"max_games must be an int, got {self.max_games!r}")
        if self.max_games < 1:
            raise ValueError(f"max_games must be >= 1, got {self.max_games}")

    @classmethod
    def from_config(cls, arena: Any) -> SequentialGate:
        """The test an ``ArenaConfig`` asks for (its keys checked first, errors naming them)."""
        check_gate_config(arena)
        return cls(
            p1=float(arena.gate_p1),
            alpha=float(arena.gate_alpha),
            beta=float(arena.gate_beta),
            max_games=int(arena.gate_max_games),
        )

    @property
    def lower(self) -> float:
        return math.log(self.beta / (1.0 - self.alpha))

    @property
    def upper(self) -> float:
        return math.log((1.0 - self.beta) / self.alpha)

    def llr(self, wins: int, losses: int) -> float:
        """ln P(results | p1) / P(results | 0.5) over the decisive games."""
        return wins * math.log(2.0 * self.p1) + losses * math.log(2.0 * (1.0 - self.p1))

    def decide(
        self, wins: int, losses: int, draws: int = 0, *, final: bool = False
    ) -> SequentialDecision:
        """Accept, reject, or continue after these counts. ``final``: no more games will come
        (the prompts ran out, or the match was played without looks), so undecided rejects."""
        for name, value in (("wins", wins), ("losses", losses), ("draws", draws)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        wins, losses, draws = int(wins), int(losses), int(draws)
        llr, lower, upper = self.llr(wins, losses), self.lower, self.upper
        games = wins + losses + draws
        if llr >= upper - _EPS:
            state, why = "accept", f"accept: LLR {llr:+.3f} >= upper bound {upper:+.3f}"
        elif llr <= lower + _EPS:
            state, why = "reject", f"reject: LLR {llr:+.3f} <= lower bound {lower:+.3f}"
        elif games >= self.max_games:
            state, why = (
                "reject",
                f"reject: LLR {llr:+.3f} undecided at the cap of {self.max_games} games",
            )
        elif final:
            state, why = "reject", f"reject: LLR {llr:+.3f} undecided and no more games"
        else:
            state, why = "continue", f"continue: LLR {llr:+.3f}"
        where = (
            f"bounds [{lower:+.3f}, {upper:+.3f}]; {wins}W {draws}D {losses}L; "
            f"H1 p={self.p1:g}, alpha={self.alpha:g}, beta={self.beta:g}"
        )
        return SequentialDecision(state, wins, losses, draws, llr, lower, upper, f"{why} ({where})")

    def decide_match(self, result: MatchResult, *, final: bool = True) -> SequentialDecision:
        """The test on a match's totals (``final`` by default: the match is over)."""
        decision = self.decide(result.wins, result.losses, result.draws, final=final)
        return _replace_reason(decision, f"{decision.reason} vs {result.b!r}")


def _replace_reason(d: SequentialDecision, reason: str) -> SequentialDecision:
    return SequentialDecision(d.state, d.wins, d.losses, d.draws, d.llr, d.lower, d.upper, reason)


def decide_match(
    result: MatchResult,
    test: str = "threshold",
    *,
    threshold: float = 0.55,
    sequential: SequentialGate | None = None,
    enabled: bool = True,
) -> GateDecision | SequentialDecision:
    """A finished match as a gate decision by either rule (both have ``.accepted``, ``.score``,
    ``.reason``). ``"sprt"`` applies ``sequential`` (default ``SequentialGate()``) to the totals,
    undecided rejecting. A match played to its end without looks keeps P(accept | equal) <=
    alpha / (1 - beta) (the module docstring) but has less power and costs every game, so play
    it with ``run_sequential`` where games can stop early. ``enabled=False`` accepts either way."""
    if test not in GATE_TESTS:
        raise ValueError(f"gate test must be one of {GATE_TESTS}, got {test!r}")
    if test == "threshold" or not enabled:
        return gate(result, threshold=threshold, enabled=enabled)
    return (sequential or SequentialGate()).decide_match(result, final=True)


def gate_from_config(result: MatchResult, arena: Any) -> GateDecision | SequentialDecision:
    """``decide_match`` with the rule and parameters of an ``ArenaConfig``."""
    check_gate_config(arena)
    sequential = SequentialGate.from_config(arena) if arena.gate_test == "sprt" else None
    return decide_match(
        result,
        arena.gate_test,
        threshold=float(arena.gate_threshold),
        sequential=sequential,
        enabled=bool(arena.gate),
    )


def check_gate_config(arena: Any) -> None:
    """ValueError naming the ``arena.gate_*`` key whose value cannot be used."""

    def bad(key: str, value: Any, want: str) -> ValueError:
        return ValueError(f"arena.{key}={value!r}: must be {want}")

    if arena.gate_test not in GATE_TESTS:
        raise bad("gate_test", arena.gate_test, " or ".join(repr(t) for t in GATE_TESTS))
    if not 0.0 <= arena.gate_threshold <= 1.0:
        raise bad("gate_threshold", arena.gate_threshold, "in [0, 1]")
    if not 0.5 < arena.gate_p1 < 1.0:
        raise bad(
            "gate_p1", arena.gate_p1, "in (0.5, 1): the candidate's decisive-game win rate under H1"
        )
    for key in ("gate_alpha", "gate_beta"):
        if not 0.0 < getattr(arena, key) < 0.5:
            raise bad(key, getattr(arena, key), "in (0, 0.5)")
    for key in ("gate_batch", "gate_max_games"):
        value = getattr(arena, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad(key, value, "an integer >= 1")


# ---------------------------------------------------------------------------------------------
# Playing a gate in batches


def merge_results(first: MatchResult, second: MatchResult) -> MatchResult:
    """Two matches between the same players as one (counts added, records concatenated)."""
    if (first.a, first.b) != (second.a, second.b):
        raise ValueError(f"cannot merge {first.a} vs {first.b} with {second.a} vs {second.b}")
    counts = (
        "wins_as_first", "draws_as_first", "losses_as_first",
        "wins_as_second", "draws_as_second", "losses_as_second",
        "illegal_moves_a", "illegal_moves_b", "truncated",
    )  # fmt: skip
    summed = {name: getattr(first, name) + getattr(second, name) for name in counts}
    return MatchResult(first.a, first.b, **summed, records=first.records + second.records)


def run_sequential(
    play: Callable[[int, int], MatchResult],
    test: SequentialGate,
    batch: int,
    *,
    available: int | None = None,
) -> tuple[SequentialDecision, MatchResult]:
    """Play ``batch`` games at a time and look after each, until the test decides.

    ``play(start, n)`` plays ``n`` more games (the ``start``-th onwards, so a caller can take its
    seeds or prompts from there) and returns their result, candidate as ``a``. At most
    ``test.max_games`` games; ``available`` caps them further (e.g. the held-out prompts), and
    running out of them undecided rejects. Returns the decision and the whole match.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    limit = test.max_games if available is None else min(test.max_games, int(available))
    if limit < 1:
        raise ValueError(f"run_sequential: no games to play (available={available})")
    total: MatchResult | None = None
    played = 0
    while True:
        n = min(batch, limit - played)
        if n > 0:
            part = play(played, n)
            if part.games != n:
                raise ValueError(f"play(start={played}, n={n}) returned {part.games} games")
            total = part if total is None else merge_results(total, part)
            played += n
        wins, losses, draws = (total.wins, total.losses, total.draws) if total else (0, 0, 0)
        decision = test.decide(wins, losses, draws, final=played >= limit)
        if decision.decided:
            assert total is not None  # limit >= 1: the first batch was played
            return decision, total


# ---------------------------------------------------------------------------------------------
# Exact error rates


@dataclass(frozen=True)
class OperatingPoint:
    accept: float  # P(the test accepts)
    reject: float  # P(it rejects), the cap's rejects included
    capped: float  # P(it reached the cap undecided), a part of ``reject``
    expected_games: float  # E[games played]


def operating_characteristic(
    test: SequentialGate, p: float, *, draw_rate: float = 0.0, batch: int = 20
) -> OperatingPoint:
    """Exact acceptance probability of ``test`` looked at every ``batch`` games (and at the cap),
    when each game is a draw with ``draw_rate`` and otherwise a candidate win with ``p``.

    The distribution over (wins, losses) of the undecided tests goes from one look to the next
    by a convolution with the multinomial of one batch (done by FFT); at each look the mass
    past a bound is accepted or rejected. About 0.05 s for the defaults.
    """
    if not 0.0 <= p <= 1.0 or not 0.0 <= draw_rate < 1.0:
        raise ValueError(f"need p in [0, 1] and draw_rate in [0, 1), got {p}, {draw_rate}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    cap = test.max_games
    size = cap + 1
    w = np.arange(size)[:, None]
    l = np.arange(size)[None, :]
    llr = w * math.log(2 * test.p1) + l * math.log(2 * (1 - test.p1))  # [wins, losses]
    up, down = llr >= test.upper - _EPS, llr <= test.lower + _EPS
    p_win, p_loss = p * (1 - draw_rate), (1 - p) * (1 - draw_rate)
    prob = np.zeros((size, size))  # [wins, losses] P(undecided with these counts)
    prob[0, 0] = 1.0
    # Padded past size + batch, the FFT's convolution is linear, not circular; a power of two is
    # several times faster than a length with a large prime factor.
    shape = (1 << (size + batch).bit_length(),) * 2
    kernels: dict[int, np.ndarray] = {}  # games in a batch -> FFT of its (wins, losses) law
    accept = reject = games = 0.0
    played = 0
    while played < cap:
        n = min(batch, cap - played)
        if n not in kernels:
            kernels[n] = np.fft.rfft2(_batch_kernel(n, p_win, p_loss, draw_rate), shape)
        conv = np.fft.irfft2(np.fft.rfft2(prob, shape) * kernels[n], shape)
        prob = np.clip(conv[:size, :size], 0.0, None)  # wins, losses <= games <= cap: nothing cut
        played += n
        a, r = float(prob[up].sum()), float(prob[down].sum())
        accept, reject, games = accept + a, reject + r, games + played * (a + r)
        prob[up | down] = 0.0
    capped = float(prob.sum())
    return OperatingPoint(accept, reject + capped, capped, games + cap * capped)


def _batch_kernel(n: int, p_win: float, p_loss: float, p_draw: float) -> np.ndarray:
    """[n+1, n+1] P(dw wins and dl losses in n games): the trinomial, built game by game."""
    kernel = np.zeros((n + 1, n + 1))
    kernel[0, 0] = 1.0
    for _ in range(n):
        step = p_draw * kernel
        step[1:, :] += p_win * kernel[:-1, :]
        step[:, 1:] += p_loss * kernel[:, :-1]
        kernel = step
    return kernel


__all__ = [
    "GATE_TESTS",
    "GateDecision",
    "OperatingPoint",
    "SequentialDecision",
    "SequentialGate",
    "check_gate_config",
    "decide_match",
    "gate",
    "gate_from_config",
    "merge_results",
    "operating_characteristic",
    "run_sequential",
]
