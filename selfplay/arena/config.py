"""Config of the arena: evaluation against references and gating of new versions."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ArenaConfig:
    gate: bool = True  # a new version replaces the incumbent only if it scores >= gate_threshold
    gate_threshold: float = 0.55  # score (win + draw/2) needed against the incumbent
    gate_games: int = 40  # games per gating match (half with each side)
    eval_games: int = 40  # games per evaluation against each reference player
    opponents: list[str] = field(default_factory=lambda: ["random", "perfect"])  # reference players
    search_simulations: int = 32  # simulations for the policy's search in arena games (0 = prior only)
