"""The Gumbel root with sequential halving on answers known in advance."""

from __future__ import annotations

import numpy as np
import pytest

from selfplay.search.gumbel import (
    considered_visit_sequence,
    gumbel_search,
    improved_policy,
    mixed_value,
    sigma,
)


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


def deterministic(q_table: np.ndarray, calls: list | None = None):
    """simulate() that returns q_table[root, action] and records each call."""

    def simulate(root: np.ndarray, action: np.ndarray) -> np.ndarray:
        if calls is not None:
            calls.append((root.copy(), action.copy()))
        return q_table[root, action]

    return simulate


# A low prior on the clearly best action (index 3); the others look better to the prior.
LOGITS = np.log(np.array([0.40, 0.30, 0.25, 0.05]))
Q = np.array([0.0, -0.2, 0.1, 0.9])
BEST = 3


def test_the_visit_schedule_of_sequential_halving() -> None:
    assert considered_visit_sequence(4, 16).tolist() == [0, 0, 0, 0, 1, 1, 1, 1,
                                                         2, 2, 3, 3, 4, 4, 5, 5]
    assert considered_visit_sequence(1, 5).tolist() == [0, 1, 2, 3, 4]
    seq = considered_visit_sequence(16, 64)
    assert seq.size == 64 and seq[:16].tolist() == [0] * 16


@pytest.mark.parametrize("seed", range(20))
def test_picks_the_best_action_despite_a_low_prior(seed: int) -> None:
    calls: list = []
    out = gumbel_search(LOGITS, np.ones(4, bool), deterministic(Q[None], calls),
                        num_simulations=16, max_num_considered=4,
                        rng=np.random.default_rng(seed))
    assert int(out.action) == BEST
    assert len(calls) == 16 and all(r.tolist() == [0] for r, _ in calls)
    # 4 actions twice, then the 2 survivors 4 more times each: 6 + 6 + 2 + 2 visits.
    assert sorted(out.visit_counts.tolist()) == [2, 2, 6, 6] and out.visit_counts[BEST] == 6
    assert np.allclose(out.q_values, Q)
    # The improved policy moves mass onto the best action, well past its prior.
    assert out.policy[BEST] > softmax(LOGITS)[BEST] + 0.5
    assert np.isclose(out.policy.sum(), 1.0)


def test_deterministic_without_gumbel_noise() -> None:
    a = gumbel_search(LOGITS, np.ones(4, bool), deterministic(Q[None]), num_simulations=16,
                      max_num_considered=4, gumbel_scale=0.0)
    b = gumbel_search(LOGITS, np.ones(4, bool), deterministic(Q[None]), num_simulations=16,
                      max_num_considered=4, gumbel_scale=0.0)
    assert int(a.action) == BEST and np.array_equal(a.policy, b.policy)


def test_only_the_top_m_by_prior_are_considered_without_noise() -> None:
    logits = np.log(np.array([0.3, 0.25, 0.2, 0.15, 0.06, 0.04]))
    q = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])  # the best is outside the top 4
    out = gumbel_search(logits, np.ones(6, bool), deterministic(q[None]), num_simulations=16,
                        max_num_considered=4, gumbel_scale=0.0)
    assert out.visit_counts[4:].tolist() == [0, 0] and int(out.action) in range(4)


def test_equal_q_gives_back_the_prior() -> None:
    q = np.full(4, 0.3)
    out = gumbel_search(LOGITS, np.ones(4, bool), deterministic(q[None]), num_simulations=16,
                        max_num_considered=4, root_value=0.3, rng=np.random.default_rng(0))
    assert np.allclose(out.policy, softmax(LOGITS))
    visits = np.array([5, 0, 3, 1])
    for rescale in (True, False):
        p = improved_policy(LOGITS, np.full(4, -0.4), visits, np.ones(4, bool),
                            root_value=-0.4, rescale_values=rescale)
        assert np.allclose(p, softmax(LOGITS))


def test_illegal_actions_get_nothing() -> None:
    legal = np.array([[True, False, True, True], [False, False, True, False]])
    logits = np.zeros((2, 4))
    q = np.array([[0.0, 5.0, 0.5, 1.0], [0.0, 0.0, -1.0, 0.0]])
    out = gumbel_search(logits, legal, deterministic(q), num_simulations=8,
                        max_num_considered=4, rng=np.random.default_rng(0))
    assert out.action.tolist() == [3, 2]
    assert (out.visit_counts[~legal] == 0).all() and (out.policy[~legal] == 0).all()
    assert out.visit_counts.sum(axis=1).tolist() == [8, 8]
    assert np.allclose(out.policy.sum(axis=1), 1.0) and out.policy[1, 2] == 1.0


def test_improved_policy_by_hand() -> None:
    # Two actions, both visited once: Q rescales to [0, 1], sigma = (50 + 1) * 1 * q.
    logits = np.log(np.array([0.5, 0.5]))
    q = np.array([0.0, 0.1])
    p = improved_policy(logits, q, np.array([1, 1]), np.ones(2, bool))
    assert np.allclose(p, softmax(np.array([0.0, 51.0])))
    s = sigma(q[None], np.array([[1, 1]]), np.ones((1, 2), bool), rescale_values=False)
    assert np.allclose(s, [[0.0, 5.1]])
    # Mixed value: (v + N * sum_visited p q / sum_visited p) / (N + 1).
    v = mixed_value(np.array([1.0]), np.array([[0.5, 0.0, 0.0]]), np.array([[3, 0, 0]]),
                    np.array([[0.2, 0.4, 0.4]]))
    assert np.allclose(v, (1.0 + 3 * 0.5) / 4)


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="no legal action"):
        gumbel_search(np.zeros((1, 3)), np.zeros((1, 3), bool), deterministic(np.zeros((1, 3))),
                      num_simulations=4, gumbel_scale=0.0)
    with pytest.raises(ValueError, match="needs an rng"):
        gumbel_search(np.zeros(3), np.ones(3, bool), deterministic(np.zeros((1, 3))),
                      num_simulations=4)
