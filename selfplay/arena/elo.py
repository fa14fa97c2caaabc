"""The Elo ladder of a run: every match result recorded, and ratings fitted to all of them.

Ratings are the maximum-likelihood Bradley–Terry fit on the Elo scale,
P(i beats j) = 1 / (1 + 10 ** ((R_j - R_i) / 400)), a draw counting as half a win and half a loss.
Fitting all results at once (rather than updating incrementally, K-factor style) makes the ratings
independent of the order matches were played in, which matters when versions are evaluated
asynchronously. One anchor player (default "random") is fixed at 0.

Without a prior, a player that never lost has an infinite maximum-likelihood rating. Each other
player therefore gets ``prior_games`` virtual drawn games against the anchor: a weak pull towards
the anchor that keeps every rating finite and every player connected to the anchor; with tens of
real games per match it moves ratings by a few points.

The ladder lives in the run directory as ``elo.json``, rewritten atomically on ``save()``.
"""

from __future__ import annotations

import re

import io
import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from selfplay.arena.match import MatchResult
from selfplay.atomic import atomic_write_bytes, atomic_write_json
from selfplay.errors import UserError

ELO_FILENAME = "elo.json"
DEFAULT_ANCHOR = "random"
DEFAULT_PRIOR_GAMES = 1.0
_ELO_PER_NAT = 400.0 / math.log(10.0)  # Elo points per unit of natural log-odds
_FORMAT = "selfplay-elo"
_SCHEMA_VERSION = 1


class LadderFileError(UserError):
    """An ``elo.json`` that cannot be read as a ladder; the message names the file."""


class Scored(Protocol):
    """What a fit needs from a result: who played whom, and a's wins/draws/losses."""

    @property
    def a(self) -> str: ...
    @property
    def b(self) -> str: ...
    @property
    def wins(self) -> int: ...
    @property
    def draws(self) -> int: ...
    @property
    def losses(self) -> int: ...


# ---------------------------------------------------------------------------------------------
# The fit


def fit_elo(
    results: Iterable[Scored],
    anchor: str = DEFAULT_ANCHOR,
    prior_games: float = DEFAULT_PRIOR_GAMES,
    *,
    initial: dict[str, float] | None = None,
) -> dict[str, float]:
    """Bradley–Terry maximum-likelihood Elo ratings of every player in ``results``, anchor = 0.

    ``prior_games`` virtual draws against the anchor per player (see the module docstring); it
    must be positive, or an unbeaten player's rating would be infinite. Matches of a player
    against itself carry no information and are ignored. Solved by Newton's method on the
    (concave) log-likelihood, with the step capped and backtracked so it always converges;
    ``initial`` ratings (e.g. the previous fit) only change how fast, not where.
    """
    if not prior_games > 0:
        raise ValueError(
            f"prior_games must be > 0 (keeps unbeaten players finite), got {prior_games}"
        )
    results = list(results)
    names = sorted({anchor} | {r.a for r in results} | {r.b for r in results})
    index = {name: i for i, name in enumerate(names)}
    n = len(names)
    points = np.zeros((n, n))  # [n, n] points[i, j]: what i scored against j (draw = 0.5)
    for r in results:
        i, j = index[r.a], index[r.b]
        if i == j:
            continue
        points[i, j] += r.wins + 0.5 * r.draws
        points[j, i] += r.losses + 0.5 * r.draws
    k = index[anchor]
    others = [i for i in range(n) if i != k]
    points[others, k] += 0.5 * prior_games
    points[k, others] += 0.5 * prior_games
    games = points + points.T  # [n, n] games between i and j

    def log_likelihood(x: np.ndarray) -> float:
        diff = x[:, None] - x[None, :]
        return float(-(points * np.logaddexp(0.0, -diff)).sum())  # sum of S_ij log sigmoid(x_i-x_j)

    x = np.zeros(n)  # ratings in natural log-odds units; x[k] stays 0
    for name, rating in (initial or {}).items():
        if name in index and name != anchor and math.isfinite(rating):
            x[index[name]] = rating / _ELO_PER_NAT
    for _ in range(200):
        p = 1.0 / (1.0 + np.exp(-(x[:, None] - x[None, :])))  # [n, n] P(i beats j)
        grad = (points - games * p).sum(axis=1)
        w = games * p * (1.0 - p)
        neg_hessian = np.diag(w.sum(axis=1)) - w
        sub = np.ix_(others, others)
        step = np.zeros(n)
        step[others] = np.linalg.solve(neg_hessian[sub], grad[others])
        biggest = float(np.abs(step).max(initial=0.0))
        if biggest < 1e-10:
            break
        step *= min(1.0, 2.0 / biggest)  # far from the optimum a full Newton step can overshoot
        before = log_likelihood(x)
        while log_likelihood(x + step) < before and np.abs(step).max() > 1e-12:
            step *= 0.5
        x = x + step
    return {name: float(x[i] * _ELO_PER_NAT) for name, i in index.items()}


def expected_score(rating_a: float, rating_b: float) -> float:
    """Expected score of a against b under the Elo model (draws as half a win)."""
    return 1.0 / (1.0 + 10.0 ** ((rating_b - rating_a) / 400.0))


# ---------------------------------------------------------------------------------------------
# The ladder


@dataclass(frozen=True)
class MatchRecord:
    """One recorded match, as stored in ``elo.json``; ``step``/``version`` belong to player a."""

    a: str
    b: str
    wins: int
    draws: int
    losses: int
    recorded_at: float  # unix seconds
    step: int | None = None  # learner step of a's weights
    version: int | None = None  # policy version of a

    @property
    def games(self) -> int:
        return self.wins + self.draws + self.losses


@dataclass(frozen=True)
class HistoryPoint:
    """A policy version's rating as fitted right after its (latest) match was recorded."""

    version: int
    player: str
    rating: float
    step: int | None
    recorded_at: float


class EloLadder:
    """Match results and fitted ratings of a run; ``load`` it, ``record`` results, ``save`` it."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        anchor: str = DEFAULT_ANCHOR,
        prior_games: float = DEFAULT_PRIOR_GAMES,
    ):
        if not prior_games > 0:
            raise ValueError(f"prior_games must be > 0, got {prior_games}")
        self.path = _ladder_file(path) if path is not None else None
        self.anchor = anchor
        self.prior_games = float(prior_games)
        self._matches: list[MatchRecord] = []
        self._history: dict[int, HistoryPoint] = {}
        self._ratings: dict[str, float] = {anchor: 0.0}

    # -- recording and reading -------------------------------------------------------------

    def record(
        self,
        result: MatchResult | Scored,
        step: int | None = None,
        version: int | None = None,
        *,
        recorded_at: float | None = None,
    ) -> dict[str, float]:
        """Add a match (a's ``step``/``version``), refit, and return the new ratings."""
        when = time.time() if recorded_at is None else float(recorded_at)
        rec = MatchRecord(
            result.a,
            result.b,
            int(result.wins),
            int(result.draws),
            int(result.losses),
            when,
            step,
            version,
        )
        self._matches.append(rec)
        self._refit()
        if version is not None:
            self._history[version] = HistoryPoint(version, rec.a, self._ratings[rec.a], step, when)
        return self.ratings()

    def ratings(self) -> dict[str, float]:
        """Current rating of every player that has played (and the anchor), in Elo points."""
        return dict(self._ratings)

    def matches(self) -> list[MatchRecord]:
        return list(self._matches)

    def history(self) -> list[HistoryPoint]:
        """Per policy version, its rating when it was recorded; ascending by version."""
        return [self._history[v] for v in sorted(self._history)]

    def reference_players(self) -> list[str]:
        """Players that are not policy versions (random, perfect, ...), by rating. A version is
        a player recorded with a version, or named like one (``v12``, ``v12-prior``) — the
        incumbent side of a gating match is recorded without its version."""
        versioned = {h.player for h in self._history.values()}
        refs = [p for p in self._ratings if p not in versioned and not VERSION_NAME.match(p)]
        return sorted(refs, key=lambda p: self._ratings[p])

    def _refit(self) -> None:
        # Warm start: one new match moves ratings a little, so Newton needs few steps from here.
        self._ratings = fit_elo(self._matches, self.anchor, self.prior_games, initial=self._ratings)

    # -- persistence -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "schema_version": _SCHEMA_VERSION,
            "anchor": self.anchor,
            "prior_games": self.prior_games,
            "ratings": self.ratings(),  # derived; kept for people reading the file
            "matches": [asdict(m) for m in self._matches],
            "history": [asdict(h) for h in self.history()],
        }

    def save(self, path: str | Path | None = None) -> Path:
        """Write the ladder atomically (temp file beside it, fsync, rename); returns the file."""
        target = _ladder_file(path) if path is not None else self.path
        if target is None:
            raise ValueError("this EloLadder has no path; pass save(path)")
        atomic_write_json(target, self.to_dict())
        self.path = target
        return target

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        anchor: str | None = None,
        prior_games: float | None = None,
    ) -> EloLadder:
        """The ladder in ``path`` (a file, or a run directory holding ``elo.json``).

        A missing file gives an empty ladder (with ``anchor``/``prior_games`` or the defaults).
        An unreadable or malformed file raises ``LadderFileError`` naming it; so does asking for
        an ``anchor`` other than the one the file was fitted with.
        """
        file = _ladder_file(path)
        if not file.exists():
            return cls(
                file,
                anchor=anchor if anchor is not None else DEFAULT_ANCHOR,
                prior_games=prior_games if prior_games is not None else DEFAULT_PRIOR_GAMES,
            )
        try:
            data = json.loads(file.read_text())
            if not isinstance(data, dict) or data.get("format") != _FORMAT:
                raise ValueError(f"not a {_FORMAT} file")
            if data.get("schema_version") != _SCHEMA_VERSION:
                raise ValueError(f"schema_version {data.get('schema_version')!r} is not supported")
            ladder = cls(
                file,
                anchor=str(data["anchor"]),
                prior_games=float(prior_games if prior_games is not None else data["prior_games"]),
            )
            ladder._matches = [MatchRecord(**m) for m in data["matches"]]
            ladder._history = {int(h["version"]): HistoryPoint(**h) for h in data["history"]}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise LadderFileError(
                f"{file}: cannot read the Elo ladder ({e}); fix or move the file away to start anew"
            ) from e
        if anchor is not None and anchor != ladder.anchor:
            raise LadderFileError(
                f"{file}: the ladder is anchored on {ladder.anchor!r}, not {anchor!r}"
            )
        ladder._refit()
        return ladder


def _ladder_file(path: str | Path) -> Path:
    path = Path(path)
    return path / ELO_FILENAME if path.is_dir() else path


# ---------------------------------------------------------------------------------------------
# The curve


VERSION_NAME = re.compile(r"^v(\d+)(-prior)?$")  # how the arena names policy versions


def plot_elo_curve(ladder: EloLadder, path_png: str | Path, *, title: str | None = None) -> Path:
    """A PNG of each policy version's rating over versions, reference players as flat lines.

    Uses matplotlib's object API with the Agg canvas directly, so it never touches pyplot's
    global backend (safe inside Ray actors and under a user's interactive session).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ratings = ladder.ratings()
    # The ladder's current (fitted) rating of every version: with search ("v12") and by its
    # prior alone ("v12-prior") as two curves.
    curves: dict[str, list[tuple[int, float]]] = {"with search": [], "prior alone": []}
    for name, rating in ratings.items():
        match = VERSION_NAME.match(name)
        if match:
            curves["prior alone" if match.group(2) else "with search"].append((int(match.group(1)), rating))
    history = [point for points in curves.values() for point in points]
    for label, points in curves.items():
        if points:
            points.sort()
            ax.plot([v for v, _ in points], [r for _, r in points], marker="o", label=f"policy, {label}")
    for i, name in enumerate(ladder.reference_players()):
        ax.axhline(
            ratings[name],
            linestyle="--",
            linewidth=1,
            color=f"C{i + 2}",  # C0 and C1 are the two version curves
            label=f"{name} ({ratings[name]:+.0f})",
        )
    if not history and not ratings:
        ax.text(0.5, 0.5, "no matches yet", ha="center", va="center", transform=ax.transAxes)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # versions are whole numbers
    ax.set_xlabel("policy version")
    ax.set_ylabel(f"Elo ({ladder.anchor} = 0)")
    ax.set_title(title or "Elo over policy versions")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    path_png = Path(path_png)
    atomic_write_bytes(path_png, buffer.getvalue())
    return path_png
