"""Turning root visit counts into a move (the acting policy) and into a training target."""

from __future__ import annotations

import numpy as np


def visit_distribution(visits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``visits^(1/T)`` normalised: float64 [A] (or [..., A]). T = 0 puts equal mass on the
    most-visited actions. All-zero visits give a uniform distribution."""
    v = np.asarray(visits, dtype=np.float64)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    top = v.max(axis=-1, keepdims=True)
    if temperature == 0:
        p = ((v == top) & (top > 0)).astype(np.float64)
    else:
        # Scale by the maximum first: visits^(1/T) overflows for small T otherwise.
        p = (v / np.where(top > 0, top, 1.0)) ** (1.0 / temperature)
    total = p.sum(axis=-1, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / max(v.shape[-1], 1))


def select_action(visits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """Index of the chosen action in ``visits`` [A]: T = 0 takes the most-visited action (ties
    broken at random, so equal candidates are not always resolved to the first), otherwise a
    sample from ``visits^(1/T)``."""
    v = np.asarray(visits, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"visits must be a non-empty 1-D array, got shape {v.shape}")
    if temperature == 0:
        best = np.flatnonzero(v == v.max())
        return int(best[rng.integers(best.size)]) if best.size > 1 else int(best[0])
    return int(rng.choice(v.size, p=visit_distribution(v, temperature)))
