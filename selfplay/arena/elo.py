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

A week-long run records tens of thousands of matches between thousands of versions, so the ladder
does not refit densely on every record (an n x n Newton system over every match, each time).
It keeps the points scored per pair of players as records come in (O(1) each), and on a record:

- refits each side of the match that has few opponents (at most ``local_opponents``: a version,
  which meets the references and a gate or two) by a one-player Newton fit against its
  opponents' current ratings — bounded work, not in proportion to the ladder. A hub (a reference
  player that every version meets) waits for the next full fit: one more match moves it little;
- refits the whole ladder (sparse Newton over the pairs, warm-started, a few iterations) when
  the records have grown by ``refit_growth`` since the last full fit, and on every record while
  there are at most ``dense_records`` of them. The geometric cadence keeps the amortised work
  per record constant however long the run, and a small ladder is always exactly the full fit.

``refit()`` forces a full fit (``load`` does one); ``fit_work`` counts the pair terms evaluated
so far, a machine-independent measure of what the fits cost.
"""

from __future__ import annotations

import io
import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from selfplay.arena.match import MatchResult
from selfplay.atomic import atomic_write_bytes, atomic_write_json
from selfplay.errors import UserError

ELO_FILENAME = "elo.json"
DEFAULT_ANCHOR = "random"
DEFAULT_PRIOR_GAMES = 1.0
DEFAULT_DENSE_RECORDS = 64  # a ladder this small is refitted fully on every record
DEFAULT_REFIT_GROWTH = 0.125  # then fully once the records have grown by this fraction
DEFAULT_LOCAL_OPPONENTS = 32  # between full fits, a player with at most this many opponents is refitted alone
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


class PairTable:
    """Points each player scored against each other one, kept as results are recorded.

    Player 0 is the anchor. ``points[i][j]`` is what i scored against j (a draw is half a point
    each); ``x[i]`` is i's rating in natural log-odds units (Elo / ``_ELO_PER_NAT``).
    """

    def __init__(self, anchor: str):
        self.names: list[str] = [anchor]
        self.index: dict[str, int] = {anchor: 0}
        self.points: list[dict[int, float]] = [{}]
        self.x: list[float] = [0.0]

    def __len__(self) -> int:
        return len(self.names)

    def player(self, name: str, rating: float = 0.0) -> int:
        i = self.index.get(name)
        if i is None:
            i = self.index[name] = len(self.names)
            self.names.append(name)
            self.points.append({})
            self.x.append(rating)
        return i

    def add(self, r: Scored) -> None:
        i, j = self.player(r.a), self.player(r.b)
        if i == j:
            return  # a player against itself carries no information
        self.points[i][j] = self.points[i].get(j, 0.0) + r.wins + 0.5 * r.draws
        self.points[j][i] = self.points[j].get(i, 0.0) + r.losses + 0.5 * r.draws

    def edges(self, prior_games: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every pair once (i < j), the prior's virtual draws with the anchor added:
        I, J [E] int64, and what I scored against J and J against I [E] float64."""
        n = len(self.names)
        rows = [(i, j, s, self.points[j][i])  # ``add`` stores both sides of every pair
                for i in range(n) for j, s in self.points[i].items() if i < j]
        I = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        J = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        A = np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows))
        B = np.fromiter((r[3] for r in rows), dtype=np.float64, count=len(rows))
        others = np.arange(1, n, dtype=np.int64)
        half = np.full(n - 1, 0.5 * prior_games)
        return (np.concatenate([I, np.zeros(n - 1, np.int64)]), np.concatenate([J, others]),
                np.concatenate([A, half]), np.concatenate([B, half]))


def _log_likelihood(x: np.ndarray, I, J, A, B) -> float:
    d = x[I] - x[J]
    return float(-(A * np.logaddexp(0.0, -d) + B * np.logaddexp(0.0, d)).sum())


def fit_sparse(
    table: PairTable, prior_games: float, *, max_iterations: int = 200, tol: float = 1e-10
) -> tuple[int, int]:
    """Refit every rating of ``table`` in place (warm-started from ``table.x``): Newton on the
    concave log-likelihood with a sparse Hessian, the step capped and backtracked as in
    ``fit_elo``, whose ratings it reproduces. Returns (iterations, pair terms evaluated)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve
    from scipy.special import expit

    n = len(table)
    if n < 2:
        return 0, 0
    I, J, A, B = table.edges(prior_games)
    G = A + B  # [E] games between I and J
    off = (I > 0) & (J > 0)  # entries of the Hessian off the diagonal, the anchor's row removed
    x = np.asarray(table.x, dtype=np.float64)
    iterations = work = 0
    for iterations in range(1, max_iterations + 1):
        d = x[I] - x[J]
        p = expit(d)  # [E] P(I beats J)
        r = A - G * p
        grad = np.bincount(I, r, n) - np.bincount(J, r, n)
        w = G * p * (1.0 - p)
        diag = np.bincount(I, w, n) + np.bincount(J, w, n)
        rows = np.concatenate([np.arange(1, n), I[off], J[off]]) - 1
        cols = np.concatenate([np.arange(1, n), J[off], I[off]]) - 1
        vals = np.concatenate([diag[1:], -w[off], -w[off]])
        hessian = coo_matrix((vals, (rows, cols)), shape=(n - 1, n - 1)).tocsc()
        step = np.zeros(n)
        step[1:] = np.atleast_1d(spsolve(hessian, grad[1:]))
        work += I.size
        biggest = float(np.abs(step).max(initial=0.0))
        if biggest < tol:
            break
        step *= min(1.0, 2.0 / biggest)  # far from the optimum a full Newton step can overshoot
        # Backtrack on a real loss only: near the optimum the change is below the sum's
        # rounding noise, and halving on noise would cost dozens of passes for nothing.
        before = _log_likelihood(x, I, J, A, B)
        noise = 1e-12 * (1.0 + abs(before))
        while (_log_likelihood(x + step, I, J, A, B) < before - noise
               and np.abs(step).max() > 1e-12):
            step *= 0.5
            work += I.size
        x = x + step
    table.x = x.tolist()
    return iterations, work


def fit_one(table: PairTable, i: int, prior_games: float, *, max_iterations: int = 60,
            tol: float = 1e-10) -> int:
    """Refit player ``i``'s rating alone, every other held fixed; returns the pair terms
    evaluated. A one-dimensional concave problem over i's opponents: Newton's method kept
    inside a bracket of the root of the gradient (bisecting when a step would leave it), so it
    converges from any start. Plain floats: a player has a handful of opponents, and numpy's
    per-call overhead would cost more than the arithmetic."""
    if i == 0:
        return 0
    half = 0.5 * prior_games
    mine_of, theirs_of = table.points[i], table.points
    terms = [(table.x[j], s + (half if j == 0 else 0.0), theirs_of[j][i] + (half if j == 0 else 0.0))
             for j, s in mine_of.items()]
    if 0 not in mine_of:
        terms.append((0.0, half, half))
    xi, lo, hi, work = table.x[i], -math.inf, math.inf, 0
    for _ in range(max_iterations):
        grad = curvature = 0.0
        for xj, mine, theirs in terms:
            p = 1.0 / (1.0 + math.exp(min(700.0, xj - xi)))
            g = mine + theirs
            grad += mine - g * p
            curvature += g * p * (1.0 - p)
        work += len(terms)
        if grad > 0:
            lo = xi  # the gradient falls as xi grows: the root is above
        else:
            hi = xi
        step = grad / curvature if curvature > 0 else math.copysign(2.0, grad)
        step = max(-2.0, min(2.0, step))  # never a wild step, as in the full fit
        nxt = xi + step
        if not lo < nxt < hi:  # Newton left the bracket: bisect it (or walk out of an open end)
            nxt = (lo + hi) / 2 if math.isfinite(lo) and math.isfinite(hi) else xi + step
        if abs(nxt - xi) < tol:
            xi = nxt
            break
        xi = nxt
    table.x[i] = xi
    return work


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
        dense_records: int = DEFAULT_DENSE_RECORDS,
        refit_growth: float = DEFAULT_REFIT_GROWTH,
        local_opponents: int = DEFAULT_LOCAL_OPPONENTS,
    ):
        if not prior_games > 0:
            raise ValueError(f"prior_games must be > 0, got {prior_games}")
        if not refit_growth > 0:
            raise ValueError(f"refit_growth must be > 0, got {refit_growth}")
        self.path = _ladder_file(path) if path is not None else None
        self.anchor = anchor
        self.prior_games = float(prior_games)
        self.dense_records = int(dense_records)
        self.refit_growth = float(refit_growth)
        self.local_opponents = int(local_opponents)
        self._matches: list[MatchRecord] = []
        self._history: dict[int, HistoryPoint] = {}
        self._table = PairTable(anchor)
        self._ratings: dict[str, float] = {anchor: 0.0}
        self._records_at_refit = 0  # len(self._matches) at the last full fit
        self.fit_work = 0  # pair terms evaluated by every fit so far (a cost measure)
        self.last_refit_iterations = 0  # Newton iterations of the last full fit

    # -- recording and reading -------------------------------------------------------------

    def record(
        self,
        result: MatchResult | Scored,
        step: int | None = None,
        version: int | None = None,
        *,
        recorded_at: float | None = None,
    ) -> Mapping[str, float]:
        """Add a match (a's ``step``/``version``), update the ratings (see the module docstring)
        and return them: a read-only view that follows later records (``dict()`` it to keep)."""
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
        self._table.add(rec)
        records = len(self._matches)
        if records <= self.dense_records or records >= self._records_at_refit * (1 + self.refit_growth):
            self.refit()
        else:
            for k in dict.fromkeys((self._table.index[rec.a], self._table.index[rec.b])):
                if len(self._table.points[k]) <= self.local_opponents:
                    self.fit_work += fit_one(self._table, k, self.prior_games)
                name = self._table.names[k]
                self._ratings[name] = self._table.x[k] * _ELO_PER_NAT  # a new player joins at 0
        if version is not None:
            self._history[version] = HistoryPoint(version, rec.a, self._ratings[rec.a], step, when)
        return MappingProxyType(self._ratings)

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

    def refit(self) -> None:
        """Fit every rating to every match (warm-started from the current ratings: a few
        Newton steps once the ladder is settled)."""
        self.last_refit_iterations, work = fit_sparse(self._table, self.prior_games)
        self.fit_work += work
        self._records_at_refit = len(self._matches)
        self._ratings = {name: x * _ELO_PER_NAT for name, x in zip(self._table.names, self._table.x)}

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
            for m in ladder._matches:
                ladder._table.add(m)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise LadderFileError(
                f"{file}: cannot read the Elo ladder ({e}); fix or move the file away to start anew"
            ) from e
        if anchor is not None and anchor != ladder.anchor:
            raise LadderFileError(
                f"{file}: the ladder is anchored on {ladder.anchor!r}, not {anchor!r}"
            )
        ladder.refit()
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
