"""Game-rule speed: batched numba random playouts and rollout-MCTS simulations, against OpenSpiel.

    python benchmarks/env_speed.py [--quick]

Measures, on one core and in the same run:
  (a) random playouts per second from the empty board: ours (``random_playouts``, one numba loop
      over all games) vs OpenSpiel driven from Python (legal_actions / apply_action);
  (b) random-rollout UCT simulations per second from the empty board: ours (one search, and a
      batch of searches in one call) vs OpenSpiel's Python ``MCTSBot`` and its C++ ``MCTSBot``,
      all with uct_c=2, one random rollout per simulation, no solver;
  (c) the OpenSpiel adapter's overhead (``selfplay.adapters.openspiel``): random playouts of
      OpenSpiel's own game through the ``Game`` protocol that search uses (legal_mask /
      next_state / outcome on history states) and through the gymnasium env (reset / step with
      move strings), each against the same game driven from pyspiel directly.
Prints a table and writes benchmarks/results/env_speed.json (DESIGN.md's benchmarks protocol;
a --quick run writes env_speed.quick.json instead).
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # one core, before numba is imported

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import figure, machine, write_result

from envs.games import connect_four, rollout_mcts, tictactoe
from envs.games.kernels import kernel_id_of

UCT_C = 2.0
NOTE = "measured on 1 core; no GPU used"
GAMES = {"tictactoe": tictactoe, "connect_four": connect_four}
SPIEL_NAMES = {"tictactoe": "tic_tac_toe", "connect_four": "connect_four"}


def rate(work: Callable[[], int], seconds: float) -> float:
    """Units of work per second: repeat ``work`` (returns units done) for about ``seconds``."""
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or done == 0:
        done += work()
    return done / (time.perf_counter() - start)


# ---- ours ----------------------------------------------------------------------------------


def ours_playouts(mod: Any, seconds: float) -> float:
    mod.random_playouts(10, 0)  # compile (or load from cache) outside the clock
    seed = iter(range(1, 1 << 30))
    batch = 100_000
    return rate(lambda: len(mod.random_playouts(batch, next(seed))), seconds)


def ours_mcts(mod: Any, sims: int, seconds: float) -> float:
    gid = kernel_id_of(tictactoe.TicTacToe() if mod is tictactoe else connect_four.ConnectFour())
    root = mod.initial_state()
    rollout_mcts.uct_search(gid, root, 10, UCT_C, 0)
    seed = iter(range(1, 1 << 30))
    return rate(
        lambda: int(rollout_mcts.uct_search(gid, root, sims, UCT_C, next(seed)).sum()), seconds
    )


def ours_mcts_batch(mod: Any, sims: int, roots: int, seconds: float) -> float:
    gid = kernel_id_of(tictactoe.TicTacToe() if mod is tictactoe else connect_four.ConnectFour())
    batch = np.stack([mod.initial_state() for _ in range(roots)])
    rollout_mcts.uct_search_batch(gid, batch[:1], 10, UCT_C, 0)
    seed = iter(range(1, 1 << 30))
    return rate(
        lambda: int(rollout_mcts.uct_search_batch(gid, batch, sims, UCT_C, next(seed)).sum()),
        seconds,
    )


# ---- OpenSpiel ---------------------------------------------------------------------------


def spiel_playouts(pyspiel: Any, name: str, seconds: float) -> float:
    game = pyspiel.load_game(SPIEL_NAMES[name])
    rng = np.random.default_rng(0)

    def one() -> int:
        state = game.new_initial_state()
        while not state.is_terminal():
            legal = state.legal_actions()
            state.apply_action(legal[rng.integers(len(legal))])
        return 1

    return rate(one, seconds)


def spiel_mcts_python(pyspiel: Any, name: str, sims: int, seconds: float) -> float:
    from open_spiel.python.algorithms import mcts

    game = pyspiel.load_game(SPIEL_NAMES[name])
    rs = np.random.RandomState(0)
    evaluator = mcts.RandomRolloutEvaluator(n_rollouts=1, random_state=rs)
    bot = mcts.MCTSBot(game, UCT_C, sims, evaluator, solve=False, random_state=rs)
    return rate(lambda: (bot.step(game.new_initial_state()), sims)[1], seconds)


def spiel_mcts_cpp(pyspiel: Any, name: str, sims: int, seconds: float) -> float:
    game = pyspiel.load_game(SPIEL_NAMES[name])
    evaluator = pyspiel.RandomRolloutEvaluator(1, 0)
    bot = pyspiel.MCTSBot(game, evaluator, UCT_C, sims, 1000, False, 0, False)
    return rate(lambda: (bot.step(game.new_initial_state()), sims)[1], seconds)


# ---- the OpenSpiel adapter ---------------------------------------------------------------


def adapter_playouts(name: str, seconds: float) -> float:
    """Random playouts of OpenSpiel's game through our adapter's ``Game`` protocol."""
    from selfplay.adapters.openspiel import OpenSpielGame

    game = OpenSpielGame(SPIEL_NAMES[name])
    rng = np.random.default_rng(0)

    def one() -> int:
        state = game.initial_state()
        while game.outcome(state) is None:
            legal = np.flatnonzero(game.legal_mask(state))
            state = game.next_state(state, int(legal[rng.integers(len(legal))]))
        return 1

    return rate(one, seconds)


def adapter_env_playouts(name: str, seconds: float) -> float:
    """Random playouts through the adapter's gymnasium env: reset, then step with move strings
    taken from ``info["legal_actions"]`` (what a text policy sees and writes)."""
    import selfplay
    from selfplay.adapters.openspiel import register

    register()
    env = selfplay.make_env(f"openspiel/{SPIEL_NAMES[name]}-v0")
    rng = np.random.default_rng(0)

    def one() -> int:
        _, info = env.reset()
        done = False
        while not done:
            legal = info["legal_actions"]
            _, _, terminated, truncated, info = env.step(legal[rng.integers(len(legal))])
            done = terminated or truncated
        return 1

    return rate(one, seconds)


# ---- the run -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    args = parser.parse_args()
    t_ours, t_base = (0.5, 1.0) if args.quick else (3.0, 8.0)
    sims = (
        {"tictactoe": 2000, "connect_four": 5000}
        if args.quick
        else {"tictactoe": 20000, "connect_four": 20000}
    )
    sims_py = 200 if args.quick else 1000

    try:
        import pyspiel
    except ImportError as err:
        pyspiel = None
        print(
            f"OpenSpiel not importable ({err}); install with: pip install -e '.[bench]'. "
            "Reporting ours only."
        )

    figures = []
    for name, mod in GAMES.items():
        ours = ours_playouts(mod, t_ours)
        base = spiel_playouts(pyspiel, name, t_base) if pyspiel else None
        figures.append(
            figure(
                f"{name} random playouts",
                "games/s",
                ours,
                base,
                "OpenSpiel 2.0.2 from Python (legal_actions/apply_action)",
                ">= 20x",
            )
        )
    for name, mod in GAMES.items():
        n = sims[name]
        one = ours_mcts(mod, n, t_ours)
        batch = ours_mcts_batch(mod, max(1, n // 64), 64, t_ours)
        cpp = spiel_mcts_cpp(pyspiel, name, n, t_base) if pyspiel else None
        py = spiel_mcts_python(pyspiel, name, sims_py, t_base) if pyspiel else None
        cpp_name = f"OpenSpiel C++ MCTSBot via pyspiel ({n} sims/search, uct_c=2, no solver)"
        figures.append(
            figure(
                f"{name} rollout-MCTS sims, one search of {n}",
                "sims/s",
                one,
                cpp,
                cpp_name,
                ">= 1x (the C++ bot)",
            )
        )
        figures.append(
            figure(
                f"{name} rollout-MCTS sims, 64 searches of {max(1, n // 64)} in one call",
                "sims/s",
                batch,
                cpp,
                cpp_name,
                ">= 1x (the C++ bot)",
            )
        )
        figures.append(
            figure(
                f"{name} rollout-MCTS sims, one search of {n}",
                "sims/s",
                one,
                py,
                f"OpenSpiel Python MCTSBot ({sims_py} sims/search, "
                "RandomRolloutEvaluator(1), no solver)",
                "info",
            )
        )

    if pyspiel:
        for name in GAMES:
            base = spiel_playouts(pyspiel, name, t_base)
            spiel_name = "the same OpenSpiel game from Python (legal_actions/apply_action)"
            figures.append(figure(f"openspiel/{SPIEL_NAMES[name]} through the adapter's Game",
                                  "games/s", adapter_playouts(name, t_base), base, spiel_name,
                                  "info (the adapter's overhead)"))
            figures.append(figure(f"openspiel/{SPIEL_NAMES[name]} through the adapter's env",
                                  "games/s", adapter_env_playouts(name, t_base), base, spiel_name,
                                  "info (the adapter's overhead)"))

    where = machine(NOTE)
    print(f"env_speed ({'quick' if args.quick else 'full'}) on {where}")
    print(f"{'figure':<64} {'unit':>8} {'ours':>12} {'baseline':>12} {'ratio':>8}  goal")
    for f in figures:
        base = "n/a" if f["baseline"] is None else f"{f['baseline']:,.0f}"
        ratio = "n/a" if f["ratio"] is None else f"{f['ratio']:.1f}x"
        print(
            f"{f['name']:<64} {f['unit']:>8} {f['ours']:>12,.0f} {base:>12} {ratio:>8}  {f['goal']}"
        )
        print(f"{'':<64}   vs {f['baseline_name']}")
    write_result("env_speed", figures, quick=args.quick, note=NOTE)  # atomic; --quick: .quick.json


if __name__ == "__main__":
    main()
