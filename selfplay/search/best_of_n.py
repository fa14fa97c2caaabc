"""Search without a tree: best-of-N by a score, majority vote over answers, and pass@k.

All pure functions over plain sequences; the candidates come from an engine's ``generate`` and
the scores from a verifier, a reward model or a judge, none of which this module knows about.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence


def best_of_n(scores: Sequence[float]) -> int:
    """Index of the highest-scoring candidate (the first one on a tie). NaN scores never win."""
    best, best_score = -1, -math.inf
    for i, s in enumerate(scores):
        s = float(s)
        if not math.isnan(s) and (best < 0 or s > best_score):
            best, best_score = i, s
    if best < 0:
        raise ValueError(f"best_of_n needs at least one non-NaN score, got {list(scores)!r}")
    return best


def majority_vote(
    answers: Sequence[Hashable | None],
    scores: Sequence[float] | None = None,
) -> tuple[Hashable | None, int]:
    """The most frequent answer and its count; ``None`` answers (nothing could be extracted) do
    not vote. Ties go to the answer with the larger summed score when ``scores`` are given, and
    otherwise (or when those tie too) to the answer seen first. Returns (None, 0) when no
    candidate has an answer."""
    if scores is not None and len(scores) != len(answers):
        raise ValueError(f"majority_vote: {len(answers)} answers but {len(scores)} scores")
    count: dict[Hashable, int] = {}
    total: dict[Hashable, float] = {}
    first: dict[Hashable, int] = {}
    for i, a in enumerate(answers):
        if a is None:
            continue
        count[a] = count.get(a, 0) + 1
        total[a] = total.get(a, 0.0) + (float(scores[i]) if scores is not None else 0.0)
        first.setdefault(a, i)
    if not count:
        return None, 0
    winner = max(count, key=lambda a: (count[a], total[a], -first[a]))
    return winner, count[winner]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from n samples of which c are correct:
    ``1 - C(n - c, k) / C(n, k)``, as the product ``prod_{i=n-c+1}^{n} (1 - k / i)`` so that
    large n neither overflows nor loses precision (Chen et al. 2021)."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0  # every k-subset holds a correct sample
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod
