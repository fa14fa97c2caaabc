"""Batched self-play and its evaluator cache."""

from __future__ import annotations

import numpy as np

from selfplay.rollout import cached_evaluator


def test_cache_never_evicts_what_the_same_call_needs():
    calls = []

    def evaluate(states):
        calls.append(len(states))
        return np.stack([np.full(3, s[0], float) for s in states]), np.array([float(s[0]) for s in states])

    cached = cached_evaluator(evaluate, max_entries=2)
    states = [np.array([i], np.int8) for i in range(5)]
    priors, values = cached(states[:2])
    priors, values = cached(states)  # 2 hits + 3 misses with room for 2: all answered
    assert values.tolist() == [0, 1, 2, 3, 4] and priors[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert calls == [2, 3]
    cached([states[4]])
    assert calls == [2, 3]  # the most recent entries stayed


def test_cache_is_least_recently_used():
    calls = []

    def evaluate(states):
        calls.append([int(s[0]) for s in states])
        return np.zeros((len(states), 2)), np.zeros(len(states))

    cached = cached_evaluator(evaluate, max_entries=2)
    a, b, c = (np.array([i], np.int8) for i in range(3))
    cached([a]); cached([b]); cached([a]); cached([c])  # b is the least recently used
    cached([a])
    assert calls == [[0], [1], [2]]
    cached([b])
    assert calls[-1] == [1]
