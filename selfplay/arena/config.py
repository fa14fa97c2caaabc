"""Config of the arena: evaluation against references and gating of new versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class ArenaConfig:
    gate: bool = True  # a new version replaces the incumbent only if it passes the gate (gate_test); false: every version is accepted, no gate games played
    gate_threshold: float = 0.55  # score (win + draw/2) needed against the incumbent
    gate_games: int = 40  # games per gating match (half with each side)
    gate_test: str = "threshold"  # "threshold" (score >= gate_threshold over gate_games) | "sprt" (sequential test: selfplay.arena.gating)
    gate_p1: float = 0.65  # sprt: H1, the candidate's win rate in decisive games it must show (H0 is 0.5)
    gate_alpha: float = 0.05  # sprt: P(accept | the candidate is no better), nominal (looks in batches make it lower)
    gate_beta: float = 0.10  # sprt: P(reject | its decisive-game win rate is gate_p1), nominal
    gate_batch: int = 20  # sprt: games or prompts played between two looks of the sequential test
    gate_max_games: int = 400  # sprt: cap on games or prompts (draws included); undecided at the cap rejects
    eval_games: int = 40  # games per evaluation against each reference player
    opponents: list[str] = field(default_factory=lambda: ["random", "perfect"])  # reference players
    gate_opening_plies: int = 2  # random plies opening each gating game (each opening played with both sides), so deterministic versions meet varied positions
    search_simulations: int = 128  # simulations for the policy's search in arena games (0 = prior only)
    max_moves: Optional[int] = None  # plies before a game is called a draw (None: rules only)
    record_games: bool = False  # keep every arena game's moves in the match result (for replay)
    elo_anchor: str = "random"  # the player fixed at 0 Elo on the run's ladder (elo.json)
    elo_prior_games: float = 1.0  # virtual draws vs the anchor: unbeaten stays finite
