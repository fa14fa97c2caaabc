"""Evaluation: matches between players, the Elo ladder over versions, gating of new versions."""

from selfplay.arena.elo import EloLadder, fit_elo, plot_elo_curve
from selfplay.arena.gating import GateDecision, gate
from selfplay.arena.match import BatchPlayer, MatchResult, as_batch_player, play_match

__all__ = [
    "BatchPlayer",
    "EloLadder",
    "GateDecision",
    "MatchResult",
    "as_batch_player",
    "fit_elo",
    "gate",
    "play_match",
    "plot_elo_curve",
]
