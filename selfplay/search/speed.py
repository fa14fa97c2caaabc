"""Simulations per second of the batched search against the plain-Python reference, same run.

    python -m selfplay.search.speed [--batch 64] [--simulations 200] [--leaves 1]

Both search B tic-tac-toe openings with uniform priors and value 0 through the same ``Game``
calls, so the ratio isolates the tree arithmetic (numba, batched) from the game rules (the same
Python calls in both). A benchmark under ``benchmarks/`` can import ``measure``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from selfplay.search.game_adapter import GameSearch, uniform_evaluator
from selfplay.search.reference import naive_puct


def measure(game, *, batch: int = 64, simulations: int = 200, leaves_per_tree: int = 1,
            repeats: int = 3) -> dict[str, float]:
    """Best-of-``repeats`` simulations/s of GameSearch (B trees) and of ``naive_puct`` (one tree
    at a time, over the same B roots)."""
    states = [game.initial_state() for _ in range(batch)]
    search = GameSearch(game, uniform_evaluator(game), num_simulations=simulations,
                        leaves_per_tree=leaves_per_tree)
    search.run(states[:1], rng=np.random.default_rng(0))  # load the compiled kernels first
    ours = min(_timed(lambda r=r: search.run(states, rng=np.random.default_rng(r)))
               for r in range(repeats))

    cache: dict[tuple[int, ...], np.ndarray] = {}  # path -> state: one next_state per node

    def step(path):
        s = game.next_state(cache.get(path[:-1], states[0]), path[-1])
        cache[path] = s
        out = game.outcome(s)
        if out is not None:  # the mover at s is the opponent of the one who just moved
            return np.ones(game.num_actions), 0.0, np.zeros(game.num_actions, bool), True, \
                -out.value_for(1 - game.to_play(s))
        return np.ones(game.num_actions), 0.0, game.legal_mask(s), False, 0.0

    legal = np.asarray(game.legal_mask(states[0]))
    ones = np.ones(game.num_actions)

    def reference_batch():
        for _ in range(batch):
            cache.clear()
            naive_puct(ones, 0.0, legal, step, num_simulations=simulations)

    baseline = _timed(reference_batch)
    total = batch * simulations
    return {"ours_sims_per_s": total / ours, "reference_sims_per_s": total / baseline,
            "ratio": baseline / ours}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--simulations", type=int, default=200)
    parser.add_argument("--leaves", type=int, default=1)
    args = parser.parse_args()
    from envs.games.tictactoe import TicTacToe

    r = measure(TicTacToe(), batch=args.batch, simulations=args.simulations,
                leaves_per_tree=args.leaves)
    print(f"GameSearch (batched, numba)  B={args.batch} sims={args.simulations} "
          f"leaves={args.leaves}: {r['ours_sims_per_s']:,.0f} simulations/s")
    print(f"naive_puct (plain Python, one tree at a time): "
          f"{r['reference_sims_per_s']:,.0f} simulations/s")
    print(f"ratio: {r['ratio']:.1f}x")


if __name__ == "__main__":
    main()
