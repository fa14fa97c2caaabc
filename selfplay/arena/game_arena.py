"""The games arena: gating matches between versions and matches against reference players."""

from __future__ import annotations

from typing import Any

from selfplay.arena.elo import EloLadder
from selfplay.arena.gating import SequentialGate, gate, run_sequential
from selfplay.arena.match import MatchResult, as_batch_player, play_match
from selfplay.arena.players import policy_player
from selfplay.build import build_env, game_of


def summarize(result: MatchResult) -> dict[str, Any]:
    """The figures of a match that metrics, logs and summary.json need (a's point of view)."""
    low, high = result.confidence_interval()
    return {"a": result.a, "b": result.b, "wins": result.wins, "draws": result.draws,
            "losses": result.losses, "games": result.games, "score": result.score,
            "ci95": [low, high], "illegal_moves_a": result.illegal_moves_a}


class GameArena:
    """``cfg`` is an EvaluatorWorkerConfig; ``engines`` hold a "candidate" and an "incumbent"."""

    def __init__(self, cfg, engines: dict, ladder: EloLadder):
        self.cfg, self.engines, self.ladder = cfg, engines, ladder
        self.game = game_of(build_env(cfg.env))

    def _player(self, slot: str, weights, version: int, simulations: int):
        engine = self.engines[slot]
        engine.load_weights(weights, version)
        name = f"v{version}" if simulations else f"v{version}-prior"
        return policy_player(name, engine, self.game, self.cfg.search, simulations)

    def gate(self, cand_weights, cand_version: int, inc_weights, inc_version: int, seed: int) -> dict:
        arena = self.cfg.arena
        sims = arena.search_simulations
        if not arena.gate:  # no gate (AlphaZero 2018): every candidate is accepted unplayed
            return {"result": None, "accepted": True, "score": float("nan"),
                    "reason": "arena.gate=false"}
        cand = self._player("candidate", cand_weights, cand_version, sims)
        inc = self._player("incumbent", inc_weights, inc_version, sims)
        if arena.gate_test == "sprt":
            # Batches of games until the sequential test decides (error rates: gating.py).
            decision, result = run_sequential(
                lambda start, n: play_match(self.game, cand, inc, n, seed=seed + start,
                                            max_moves=arena.max_moves,
                                            opening_plies=arena.gate_opening_plies),
                SequentialGate.from_config(arena), arena.gate_batch)
        else:
            result = play_match(self.game, cand, inc, arena.gate_games, seed=seed,
                                max_moves=arena.max_moves, opening_plies=arena.gate_opening_plies)
            decision = gate(result, threshold=arena.gate_threshold, enabled=arena.gate)
        self.ladder.record(result, version=cand_version)
        return {"result": summarize(result), "accepted": decision.accepted, "score": decision.score}

    def evaluate(self, weights, version: int, games: int, seed: int) -> list[dict]:
        """Matches of the version (with search, and by its prior alone) against the references."""
        from envs.games.players import make_player

        arena = self.cfg.arena
        players = [self._player("candidate", weights, version, arena.search_simulations)]
        if arena.search_simulations > 0:
            players.append(policy_player(f"v{version}-prior", self.engines["candidate"],
                                         self.game, self.cfg.search, 0))
        results = []
        for name in arena.opponents:
            try:
                opponent = as_batch_player(make_player(name, self.game))
            except ValueError:
                continue  # e.g. "perfect" exists for tic-tac-toe only
            for player in players:
                result = play_match(self.game, player, opponent, games, seed=seed,
                                    max_moves=arena.max_moves,
                                    opening_plies=arena.eval_opening_plies)
                self.ladder.record(result, version=version)
                results.append(summarize(result))
        return results
