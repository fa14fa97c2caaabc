"""Config of the arena: evaluation against references and gating of new versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class ArenaConfig:
    gate: bool = True  # a new version replaces the incumbent only if it scores >= gate_threshold
    gate_threshold: float = 0.55  # score (win + draw/2) needed against the incumbent
    gate_games: int = 40  # games per gating match (half with each side)
    eval_games: int = 40  # games per evaluation against each reference player
    opponents: list[str] = field(default_factory=lambda: ["random", "perfect"])  # reference players
    gate_opening_plies: int = 2  # random plies opening each gating game (each opening played with both sides), so deterministic versions meet varied positions
    search_simulations: int = 128  # simulations for the policy's search in arena games (0 = prior only)
    max_moves: Optional[int] = None  # plies before a game is called a draw (None: rules only)
    record_games: bool = False  # keep every arena game's moves in the match result (for replay)
    elo_anchor: str = "random"  # the player fixed at 0 Elo on the run's ladder (elo.json)
    elo_prior_games: float = 1.0  # virtual draws vs the anchor: unbeaten stays finite
