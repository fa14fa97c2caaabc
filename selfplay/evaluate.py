"""`selfplay eval checkpoint=RUN_OR_CHECKPOINT player=OPPONENT games=N`: a match, both sides
(``opening_plies=K``: every game from one of games/2 random K-ply openings, each played with both
sides, so a deterministic search meets more than the few games a tie-breaking reference allows).

The policy plays with search (``search.num_simulations``; ``search=none`` for its prior alone)
against a reference player or another checkpoint; prints wins/draws/losses with a 95% interval.
"""

from __future__ import annotations

import json

from selfplay.arena.match import as_batch_player, play_match
from selfplay.arena.players import policy_player_from_checkpoint
from selfplay.build import build_env, game_of
from selfplay.errors import UserError
from selfplay.play import resolve_opponent


def eval_main(cfg) -> int:
    game = game_of(build_env(cfg.env))
    if game is None:  # a single-agent text task: pass@k on held-out problems
        from selfplay.evaluate_text import eval_text

        return eval_text(cfg)
    if not cfg.checkpoint:
        raise UserError("checkpoint=: name a checkpoint directory or a run directory to evaluate")
    if cfg.games < 1:
        raise UserError(f"games={cfg.games}: must be >= 1")
    if cfg.opening_plies < 0:
        raise UserError(f"opening_plies={cfg.opening_plies}: must be >= 0 (random plies opening "
                        "each game; 0 = none)")
    sims = cfg.search.num_simulations if cfg.search.kind == "mcts" else 0
    policy = policy_player_from_checkpoint(
        cfg.checkpoint, game, engine_cfg=cfg.engine, search_cfg=cfg.search, num_simulations=sims,
        env_cfg=cfg.env)
    opponent = resolve_opponent(cfg.player, game, cfg)
    result = play_match(game, policy, as_batch_player(opponent), cfg.games, seed=cfg.run.seed,
                        opening_plies=cfg.opening_plies)
    low, high = result.confidence_interval()
    opened = f", {cfg.opening_plies}-ply random openings" if cfg.opening_plies else ""
    print(f"{result.a} (search {sims} sims{opened}) vs {result.b}: W/D/L {result.wins}/{result.draws}/"
          f"{result.losses} over {result.games} games, score {result.score:.3f} "
          f"(95% CI {low:.3f}-{high:.3f})")
    print(json.dumps(result.to_dict()))
    return 0
