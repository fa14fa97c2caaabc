"""best-of-N, majority vote and pass@k against brute force."""

from __future__ import annotations

import itertools
import math

import pytest

from selfplay.search.best_of_n import best_of_n, majority_vote, pass_at_k


def _pass_at_k_brute_force(n: int, c: int, k: int) -> float:
    """The fraction of k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_pass_at_k_brute_force(n, c, k), abs=1e-12)


def test_pass_at_k_edges_and_large_n():
    assert pass_at_k(10, 0, 3) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 8, 3) == 1.0  # only 2 wrong samples: every 3-subset has a right one
    assert pass_at_k(200, 13, 1) == pytest.approx(13 / 200)
    # Large n: the binomials overflow floats, the product form does not.
    exact = 1 - math.comb(5000 - 37, 100) / math.comb(5000, 100)
    assert pass_at_k(5000, 37, 100) == pytest.approx(exact, rel=1e-9)
    for bad in [(3, 4, 1), (3, 1, 0), (3, 1, 4), (3, -1, 1)]:
        with pytest.raises(ValueError, match="pass_at_k"):
            pass_at_k(*bad)


def test_majority_vote():
    assert majority_vote(["4", "5", "4", None, "5", "4"]) == ("4", 3)
    assert majority_vote([None, None]) == (None, 0)
    assert majority_vote([]) == (None, 0)
    # A tie in count: the first seen wins without scores ...
    assert majority_vote(["a", "b", "b", "a"]) == ("a", 2)
    # ... and the larger summed score wins with them.
    assert majority_vote(["a", "b", "b", "a"], [0.1, 0.9, 0.5, 0.2]) == ("b", 2)
    # Counts come before scores.
    assert majority_vote(["a", "a", "b"], [0.0, 0.0, 5.0]) == ("a", 2)
    with pytest.raises(ValueError, match="scores"):
        majority_vote(["a"], [1.0, 2.0])


def test_best_of_n():
    assert best_of_n([0.1, 0.7, 0.3]) == 1
    assert best_of_n([0.5, 0.5]) == 0  # the first on a tie
    assert best_of_n([float("nan"), -2.0, float("nan")]) == 1
    assert best_of_n([-math.inf, -math.inf]) == 0
    with pytest.raises(ValueError):
        best_of_n([])
