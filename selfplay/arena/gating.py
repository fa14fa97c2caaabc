"""Gating: does a candidate version replace the incumbent? A pure decision on a match result.

The candidate is player ``a`` of the match (played against the incumbent as ``b``). It is accepted
when its score (wins + draws / 2) / games reaches the threshold, as in AlphaGo Zero's 55% gate.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfplay.arena.match import MatchResult

# Scores are ratios of small integers; a score printed as 0.55 must pass a 0.55 gate even when
# float division lands one ulp below it.
_EPS = 1e-9


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
