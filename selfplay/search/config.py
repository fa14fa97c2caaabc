"""Config of the search that picks each action (Hydra group search/)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SearchConfig:
    kind: str = "mcts"  # "mcts" (PUCT) or "none" (sample from the prior)
    num_simulations: int = 64  # simulations per decision
    c_puct: float = 1.5  # exploration constant in PUCT
    dirichlet_alpha: float = 0.5  # root noise concentration (about 10 / number of legal actions)
    dirichlet_fraction: float = 0.25  # weight of the noise at the root (0 turns it off)
    temperature: float = 1.0  # move-choice temperature over root visits, early in a game
    temperature_moves: int = 4  # after this many moves the choice is greedy (temperature 0)
    leaves_per_tree: int = 1  # leaves taken per tree per batch (virtual loss when > 1)
    virtual_loss: float = 1.0  # value penalty on a path in flight, when leaves_per_tree > 1
    record_nodes: int = 64  # most-visited tree nodes below the root stored per decision, for `selfplay view` (0: the root's children only)
