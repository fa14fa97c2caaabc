"""Matches between two players on a ``Game``: many games at once, results from a's view.

A match plays ``num_games`` games concurrently. Each round, every position where ``a`` is to move
goes to ``a`` in one ``choose_batch`` call (so a policy with search evaluates them as one batch),
then the same for ``b``. Half the games have ``a`` moving first, half ``b``; with an odd count ``a``
gets the extra first move.

A player's answer is untrusted: an action that is not an in-range legal index (out of range, -1,
an occupied cell, ``None``, a string, ...) ends that game as a loss for the player who made it and
is counted in ``illegal_moves_a``/``illegal_moves_b``; the other games go on.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np

from envs.protocol import Game

# ---------------------------------------------------------------------------------------------
# Players


@runtime_checkable
class BatchPlayer(Protocol):
    """Chooses moves for many games' positions at once (one action index per state)."""

    name: str

    def choose_batch(
        self, game: Game, states: list[np.ndarray], rng: np.random.Generator
    ) -> list[int]: ...


@runtime_checkable
class Player(Protocol):
    """A one-position player, as the reference players in ``envs.games.players`` are."""

    name: str

    def choose(self, game: Game, state: np.ndarray, rng: np.random.Generator) -> int: ...


@dataclass(frozen=True)
class _OneAtATime:
    """A ``Player`` seen as a ``BatchPlayer``: asks it about each position in turn."""

    player: Player

    @property
    def name(self) -> str:
        return self.player.name

    def choose_batch(
        self, game: Game, states: list[np.ndarray], rng: np.random.Generator
    ) -> list[int]:
        return [self.player.choose(game, state, rng) for state in states]


def as_batch_player(player: BatchPlayer | Player) -> BatchPlayer:
    """``player`` itself if it already chooses in batches, else a wrapper over ``.choose``."""
    if callable(getattr(player, "choose_batch", None)):
        return player  # type: ignore[return-value]
    if callable(getattr(player, "choose", None)):
        return _OneAtATime(player)  # type: ignore[arg-type]
    raise TypeError(
        f"{player!r} is not a player: it needs .name and .choose(game, state, rng) "
        "or .choose_batch(game, states, rng)"
    )


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class GameRecord:
    """One finished game, enough to replay it with ``game.next_state`` from the initial state."""

    a_first: bool  # True when a was player 0 (moved first)
    actions: tuple[int, ...]  # the legal moves played, in order (an illegal final move is not kept)
    score_a: float  # 1 a won, 0.5 draw, 0 a lost
    reason: str  # "rules" | "illegal_move" | "max_moves"


@dataclass(frozen=True)
class MatchResult:
    """Outcome of a match, from player a's point of view.

    ``score`` counts a draw as half a win. ``confidence_interval`` is the Wilson interval of that
    score treated as a proportion over ``games`` trials, a draw contributing half a success. A
    draw's half point has less variance than a coin flip, so with draws the interval is
    conservative (a little wider than the true one), never overconfident.
    """

    a: str
    b: str
    wins_as_first: int
    draws_as_first: int
    losses_as_first: int
    wins_as_second: int
    draws_as_second: int
    losses_as_second: int
    illegal_moves_a: int = 0  # games a lost by an illegal or malformed action
    illegal_moves_b: int = 0  # games b lost (a won) that way
    truncated: int = 0  # games stopped at max_moves, counted as draws
    records: tuple[GameRecord, ...] = field(default=(), compare=False)  # empty unless recorded

    def __post_init__(self) -> None:
        counts = [getattr(self, f.name) for f in fields(self) if f.type == "int"]
        if any(not isinstance(c, int) or c < 0 for c in counts):
            raise ValueError(f"MatchResult counts must be non-negative integers, got {self}")

    @property
    def wins(self) -> int:
        return self.wins_as_first + self.wins_as_second

    @property
    def draws(self) -> int:
        return self.draws_as_first + self.draws_as_second

    @property
    def losses(self) -> int:
        return self.losses_as_first + self.losses_as_second

    @property
    def games(self) -> int:
        return self.wins + self.draws + self.losses

    @property
    def games_as_first(self) -> int:
        return self.wins_as_first + self.draws_as_first + self.losses_as_first

    @property
    def games_as_second(self) -> int:
        return self.wins_as_second + self.draws_as_second + self.losses_as_second

    @property
    def score(self) -> float:
        """(wins + draws / 2) / games; 0.5 for an empty match (no evidence either way)."""
        if self.games == 0:
            return 0.5
        return (self.wins + 0.5 * self.draws) / self.games

    def confidence_interval(self, z: float = 1.96) -> tuple[float, float]:
        return wilson_interval(self.wins + 0.5 * self.draws, self.games, z)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["records"] = [{**r, "actions": list(r["actions"])} for r in d["records"]]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MatchResult:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown MatchResult keys: {sorted(unknown)}")
        kw = dict(d)
        kw["records"] = tuple(
            GameRecord(
                a_first=bool(r["a_first"]),
                actions=tuple(int(x) for x in r["actions"]),
                score_a=float(r["score_a"]),
                reason=str(r["reason"]),
            )
            for r in d.get("records", ())
        )
        return cls(**kw)


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion; ``successes`` may be fractional (draws as halves).

    Chosen over the normal approximation because it stays inside [0, 1] and is sensible at 0/n
    and n/n, which gating matches of a few dozen games hit often. n = 0 gives (0, 1).
    """
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = (z / denom) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (max(0.0, center - half), min(1.0, center + half))


# ---------------------------------------------------------------------------------------------
# Playing


def _legal_index(game: Game, state: np.ndarray, action: object) -> int | None:
    """``action`` as an int when it is a legal index in ``state``, else None (never raises)."""
    # bool is an Integral too, but True/False as a move is a bug in the player, not a move.
    if isinstance(action, bool) or not isinstance(action, numbers.Integral):
        return None
    index = int(action)
    if not 0 <= index < game.num_actions:
        return None
    return index if bool(game.legal_mask(state)[index]) else None


def random_opening(game: Game, plies: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """The state after up to ``plies`` uniformly random legal moves (fewer if the game ends)."""
    state, moves = game.initial_state(), []
    for _ in range(plies):
        if game.outcome(state) is not None:
            break
        move = int(rng.choice(np.flatnonzero(game.legal_mask(state))))
        state, moves = game.next_state(state, move), moves + [move]
    return state, moves


def play_match(
    game: Game,
    a: BatchPlayer | Player,
    b: BatchPlayer | Player,
    num_games: int,
    *,
    seed: int,
    max_moves: int | None = None,
    record_games: bool = False,
    opening_plies: int = 0,
) -> MatchResult:
    """Play ``num_games`` games between ``a`` and ``b``, concurrently; see the module docstring.

    ``max_moves`` caps the plies of a game; a game still running then counts as a draw (and in
    ``truncated``). ``opening_plies`` starts every game after that many uniformly random moves;
    each opening is played twice, once with each player moving first, so that two deterministic
    players meet many positions and neither gets the luckier openings. The same ``seed`` and
    players give the same result.
    """
    if num_games < 0:
        raise ValueError(f"num_games must be >= 0, got {num_games}")
    if max_moves is not None and max_moves < 0:
        raise ValueError(f"max_moves must be >= 0 or None, got {max_moves}")
    players = (as_batch_player(a), as_batch_player(b))
    rng = np.random.default_rng(seed)

    half = (num_games + 1) // 2
    a_first = [i < half for i in range(num_games)]  # a gets the odd extra game
    openings = [random_opening(game, opening_plies, rng) for _ in range(half)]
    states = [openings[i % half][0].copy() for i in range(num_games)]
    actions: list[list[int]] = [list(openings[i % half][1]) for i in range(num_games)]
    score_a: list[float | None] = [None] * num_games  # set when the game ends
    reason = [""] * num_games
    illegal = [0, 0]

    def finish_by_rules(i: int) -> bool:
        outcome = game.outcome(states[i])
        if outcome is None:
            return False
        value_a = outcome.value_for(0 if a_first[i] else 1)
        score_a[i] = 0.5 + 0.5 * float(np.sign(value_a))
        reason[i] = outcome.reason
        return True

    live = [i for i in range(num_games) if not finish_by_rules(i)]
    while live:
        if max_moves is not None:
            for i in [i for i in live if len(actions[i]) >= max_moves]:
                score_a[i], reason[i] = 0.5, "max_moves"
            live = [i for i in live if score_a[i] is None]
        for side, player in enumerate(players):  # side 0 is a, 1 is b
            # a is player 0 in the games it starts; side s is to move where to_play == s xor !a_first
            mine = [i for i in live if game.to_play(states[i]) == (side ^ (not a_first[i]))]
            if not mine:
                continue
            chosen = list(player.choose_batch(game, [states[i] for i in mine], rng))
            if len(chosen) != len(mine):
                raise ValueError(
                    f"player {player.name!r} returned {len(chosen)} actions for {len(mine)} states"
                )
            for i, action in zip(mine, chosen):
                index = _legal_index(game, states[i], action)
                if index is None:
                    illegal[side] += 1
                    score_a[i], reason[i] = (0.0 if side == 0 else 1.0), "illegal_move"
                    continue
                states[i] = game.next_state(states[i], index)
                actions[i].append(index)
                finish_by_rules(i)
            live = [i for i in live if score_a[i] is None]

    tally = {(first, s): 0 for first in (True, False) for s in (1.0, 0.5, 0.0)}
    for i in range(num_games):
        tally[(a_first[i], score_a[i])] += 1
    records = (
        tuple(
            GameRecord(a_first[i], tuple(actions[i]), float(score_a[i]), reason[i])  # type: ignore[arg-type]
            for i in range(num_games)
        )
        if record_games
        else ()
    )
    return MatchResult(
        a=players[0].name,
        b=players[1].name,
        wins_as_first=tally[(True, 1.0)],
        draws_as_first=tally[(True, 0.5)],
        losses_as_first=tally[(True, 0.0)],
        wins_as_second=tally[(False, 1.0)],
        draws_as_second=tally[(False, 0.5)],
        losses_as_second=tally[(False, 0.0)],
        illegal_moves_a=illegal[0],
        illegal_moves_b=illegal[1],
        truncated=sum(r == "max_moves" for r in reason),
        records=records,
    )


def replay_record(game: Game, record: GameRecord) -> list[np.ndarray]:
    """The states of a recorded game, initial state first (for terminal playback or analysis)."""
    states = [game.initial_state()]
    for action in record.actions:
        states.append(game.next_state(states[-1], action))
    return states


__all__: Sequence[str] = (
    "BatchPlayer",
    "GameRecord",
    "MatchResult",
    "Player",
    "as_batch_player",
    "play_match",
    "replay_record",
    "wilson_interval",
)
