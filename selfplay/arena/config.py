"""Config of the arena: evaluation against references and gating of new versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from selfplay.errors import UserError


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
    opponents: list[str] = field(default_factory=lambda: ["random", "perfect"])  # reference players (a name no game has is an error; one this game lacks, e.g. perfect outside tic-tac-toe, is skipped)
    gate_opening_plies: int = 2  # random plies opening each gating game (each opening played with both sides), so deterministic versions meet varied positions
    eval_opening_plies: int = 0  # random plies opening each evaluation game against a reference (each opening played with both sides); 0 = from the initial position (tic-tac-toe: a random opening can be lost against perfect play). Without them a deterministic search meets a reference that only breaks ties at random, so 20 games can be a handful of distinct ones
    search_simulations: int = 128  # simulations for the policy's search in arena games (0 = prior only)
    max_moves: Optional[int] = None  # plies before an arena game (gating or evaluation) is called a draw (None: rules only)
    elo_anchor: str = "random"  # the player fixed at 0 Elo on the run's ladder (elo.json)
    elo_prior_games: float = 1.0  # virtual draws vs the anchor: unbeaten stays finite


def game_players(game: Any) -> list[str]:
    """The reference players ``game`` has (``arena.opponents`` and ``player=`` names)."""
    from envs.games.players import PLAYER_NAMES, make_player

    available = []
    for name in PLAYER_NAMES:
        try:
            make_player(name.partition("[")[0], game)
        except ValueError:
            continue  # e.g. "perfect" is tic-tac-toe's only
        available.append(name)
    return available


def check_arena_config(arena: ArenaConfig, game: Any | None = None) -> None:
    """A UserError naming the ``arena.*`` key whose value no arena can use. With ``game`` (a game
    task), each of ``arena.opponents`` must name a player some game has: a typo is an error
    listing the game's players, while a real player this game lacks ("perfect" outside
    tic-tac-toe) is left out of its evaluations, as the default list relies on."""
    from envs.games.players import make_player

    for key in ("gate_opening_plies", "eval_opening_plies"):
        if getattr(arena, key) < 0:
            raise UserError(f"arena.{key}={getattr(arena, key)}: must be >= 0 (random plies "
                            "opening each game; 0 = none)")
    if arena.max_moves is not None and arena.max_moves < 0:
        raise UserError(f"arena.max_moves={arena.max_moves}: must be >= 0, or null for no cap")
    if not arena.elo_prior_games > 0:
        raise UserError(f"arena.elo_prior_games={arena.elo_prior_games}: must be > 0 "
                        "(the virtual draws that keep an unbeaten player's rating finite)")
    if not str(arena.elo_anchor).strip():
        raise UserError("arena.elo_anchor is empty: name the player fixed at 0 Elo (e.g. random)")
    if game is None:
        return
    known = ("random", "perfect", "alphabeta", "mcts")
    for name in arena.opponents:
        base = str(name).strip().partition(":")[0]
        try:
            make_player(str(name), game)
        except ValueError as err:
            if base in known and str(name).strip() == base:
                continue  # a real player this game does not have
            players = ", ".join(game_players(game))
            detail = "" if base not in known else f" ({err})"
            raise UserError(f"arena.opponents: {name!r} is not a player{detail}; "
                            f"{game.name} has: {players}") from None
