"""Batched MCTS on connect four with the language model as evaluator: where a simulation's time goes.

The search self-play runs (``GameSearch``, PUCT, 64 roots at once, the settings of
learn_connect_four.py: ``--leaves 4`` leaves per tree per wave under virtual loss) from 64
positions a few random plies into the game, with three evaluators, in the same process:

- the tiny default policy through the embedded engine (``engine_evaluator``): engine time
  (rendering, tokenizing and the forward passes) and search time (tree arithmetic and game
  rules) are reported apart, with the leaf states per evaluator call and per second;
- the same, cached (``cached_evaluator``, what self-play uses: a position seen again in the
  same version is not evaluated twice);
- the same policy reading the shorter mover-relative board (``view=mover_short``: rows only);
- a uniform evaluator (equal priors, value 0), the search alone.

Simulations per second of each, and the LM search's ratio to the uniform one. The peer, mctx's
MuZero search over pgx's connect four with a 2x64 MLP on JAX (``mctx_peer.py``), runs beside them
at the same roots and simulations when ``jax``, ``mctx`` and ``pgx`` import (``make bench-setup``).

    python benchmarks/search_speed.py            # 64 roots, 32 simulations, 5 repeats
    python benchmarks/search_speed.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import figure, print_table, write_result  # noqa: E402


class TimedEvaluator:
    """An evaluator that counts its calls, leaf states and seconds."""

    def __init__(self, evaluate):
        self.evaluate, self.calls, self.states, self.seconds = evaluate, 0, 0, 0.0

    def __call__(self, states):
        start = time.perf_counter()
        out = self.evaluate(states)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.states += len(states)
        return out


def openings(game, count: int, plies: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        s = game.initial_state()
        for _ in range(plies):
            if game.outcome(s) is not None:
                break
            s = game.next_state(s, int(rng.choice(np.flatnonzero(game.legal_mask(s)))))
        if game.outcome(s) is None:
            out.append(s)
    return out


def measure(game, evaluate, roots, simulations: int, leaves: int, repeats: int) -> dict:
    from selfplay.search.game_adapter import GameSearch

    timed = TimedEvaluator(evaluate)
    search = GameSearch(game, timed, num_simulations=simulations, leaves_per_tree=leaves)
    search.run(roots[:2], rng=np.random.default_rng(0))  # compile / warm up outside the clock
    best = None
    for r in range(repeats):
        timed.calls, timed.states, timed.seconds = 0, 0, 0.0
        start = time.perf_counter()
        search.run(roots, rng=np.random.default_rng(r + 1))
        wall = time.perf_counter() - start
        row = {"wall_s": wall, "engine_s": timed.seconds, "search_s": wall - timed.seconds,
               "sims_per_s": len(roots) * simulations / wall, "evaluator_calls": timed.calls,
               "leaf_states": timed.states, "states_per_call": timed.states / max(timed.calls, 1),
               "engine_share": timed.seconds / wall}
        if best is None or row["wall_s"] < best["wall_s"]:
            best = row
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--roots", type=int, default=64)
    parser.add_argument("--simulations", type=int, default=32)
    parser.add_argument("--leaves", type=int, default=4, help="leaves per tree per wave")
    parser.add_argument("--plies", type=int, default=6, help="random plies before each root")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.roots, args.repeats = 16, 2

    import torch

    from envs.games.connect_four import ConnectFour
    from selfplay.policy.config import EngineConfig, PolicyConfig
    from selfplay.policy.factory import make_engine
    from selfplay.rollout.games import cached_evaluator
    from selfplay.search.game_adapter import engine_evaluator, uniform_evaluator

    torch.set_num_threads(2)
    game = ConnectFour()
    roots = openings(game, args.roots, args.plies)
    short = ConnectFour(view="mover_short")  # same states, fewer tokens per leaf
    engine = make_engine(PolicyConfig(), EngineConfig())
    rows = {
        "lm": measure(game, engine_evaluator(engine, game), roots, args.simulations, args.leaves,
                      args.repeats),
        "lm_cached": measure(game, cached_evaluator(engine_evaluator(engine, game)), roots,
                             args.simulations, args.leaves, 1),
        "lm_mover_short": measure(short, engine_evaluator(engine, short), roots,
                                  args.simulations, args.leaves, args.repeats),
        "uniform": measure(game, uniform_evaluator(game), roots, args.simulations, args.leaves,
                           args.repeats),
    }
    shape = (f"connect four, {args.roots} roots, {args.simulations} sims, {args.leaves} "
             f"leaves/tree/wave, tiny default policy")
    lm, uniform = rows["lm"], rows["uniform"]
    figures = [
        figure(f"LM-evaluated MCTS simulations/s ({shape})", "sims/s", lm["sims_per_s"],
               uniform["sims_per_s"], "the same search, uniform evaluator",
               ">= 28,000 sims/s (10x the 2,800 issue 11 measured)"),
        figure(f"LM-evaluated MCTS simulations/s, evaluator cached ({shape})", "sims/s",
               rows["lm_cached"]["sims_per_s"], lm["sims_per_s"], "uncached", "report"),
        figure(f"engine share of the LM search's time ({shape})", "fraction",
               lm["engine_share"], None, "-", "report", digits=3),
        figure(f"leaf states evaluated per second by the engine ({shape})", "states/s",
               lm["leaf_states"] / max(lm["engine_s"], 1e-9), None, "-", "report"),
    ]
    figures.append(figure(f"LM-evaluated MCTS simulations/s, mover_short board ({shape})",
                          "sims/s", rows["lm_mover_short"]["sims_per_s"], lm["sims_per_s"],
                          "the default (absolute) board", "report"))
    try:
        from mctx_peer import mctx_pgx_sims_per_s

        peer = mctx_pgx_sims_per_s(args.roots, args.simulations, args.repeats)
    except ImportError as err:
        peer = f"not installed ({err.name}): make bench-setup installs jax, mctx and pgx"
    if isinstance(peer, dict):
        figures.append(figure(
            f"LM-evaluated MCTS simulations/s vs mctx + pgx with a 2x64 MLP ({args.roots} roots, "
            f"{args.simulations} sims)", "sims/s", lm["sims_per_s"], peer["sims_per_s"],
            f"mctx {peer['mctx']} muzero_policy + pgx {peer['pgx']}, 2x64 MLP, jitted (JAX "
            f"{peer['jax']}, CPU)", "report"))
    print_table("search_speed", figures)
    for name, row in rows.items():
        print(f"  {name:<10} " + ", ".join(f"{k} {v:,.3f}" for k, v in row.items()))
    print(f"mctx + pgx: {peer}")
    write_result("search_speed", figures, quick=args.quick,
                 extra={"rows": rows, "mctx_pgx": peer, "settings": vars(args)})


if __name__ == "__main__":
    main()
