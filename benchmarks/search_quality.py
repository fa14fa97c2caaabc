"""Search quality on connect-four tactics: how often GameSearch misses a win in one or a forced
block at the self-play settings, beside larger budgets.

A fixed set of positions (uniformly random games, a random ply; labelled from the rules and
checked against alpha-beta, envs/games/tactics.py): ones where the player to move can win at once,
and ones where the opponent threatens to win and exactly one move stops it. Each position is
searched once per setting, with root noise where the setting has it (seeded), and the move is the
most-visited one, as self-play plays after its first temperature moves. Two evaluators: the
uniform one (priors equal, value 0: search by terminal results alone) and a fresh tiny LM
(``engine_evaluator`` on ``make_engine(PolicyConfig(), EngineConfig())``), whose priors and
values are untrained noise: what the first self-play games are searched with.

Settings: the self-play setting of benchmarks/learn_connect_four.py (32 simulations, 4 leaves per
tree per wave under virtual loss, Dirichlet 0.25 at alpha 0.5, c_puct 1.5), the same budget
without virtual loss and without noise, the conf/search/mcts.yaml default (64, 1 leaf), and
larger budgets; the baseline of each figure is the largest budget with the same evaluator.

    .venv/bin/python benchmarks/search_quality.py            # 200 positions of each kind
    .venv/bin/python benchmarks/search_quality.py --quick    # 24 of each, fewer settings
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import figure, print_table, write_result

from envs.games.connect_four import ConnectFour
from envs.games.tactics import best_moves, classify, random_positions
from selfplay.search.game_adapter import GameSearch, uniform_evaluator
from selfplay.search.policies import select_action


@dataclass(frozen=True)
class Setting:
    label: str
    num_simulations: int
    leaves_per_tree: int
    noise: bool  # Dirichlet 0.25 at the root (PUCT) or Gumbel noise (gumbel), as in self-play
    root: str = "puct"  # puct | gumbel (search.root; its chosen move is the one played)


SELF_PLAY = Setting("self-play: 32 sims, 4 leaves/wave, noise", 32, 4, True)
SETTINGS = [
    SELF_PLAY,
    Setting("32 sims, 1 leaf/wave, noise", 32, 1, True),
    Setting("32 sims, 1 leaf/wave, no noise", 32, 1, False),
    Setting("gumbel root: 32 sims, 1 leaf/wave, Gumbel noise", 32, 1, True, "gumbel"),
    Setting("gumbel root: 16 sims, 1 leaf/wave, Gumbel noise", 16, 1, True, "gumbel"),
    Setting("conf default: 64 sims, 1 leaf/wave, noise", 64, 1, True),
    Setting("128 sims, 4 leaves/wave, noise", 128, 4, True),
    Setting("512 sims, 4 leaves/wave, noise", 512, 4, True),
]
QUICK_SETTINGS = [SETTINGS[0], SETTINGS[2], SETTINGS[3], SETTINGS[6], SETTINGS[7]]


# ------------------------------------------------------------------------------------------------
# Positions


def tactical_positions(game: ConnectFour, per_kind: int, seed: int, check_depth: int = 4):
    """``per_kind`` win-in-one and forced-block positions: lists of (state, target mask [A]).
    Every label is checked against alpha-beta at ``check_depth``: its best moves must be
    targets (a win in one) or the block itself."""
    rng = np.random.default_rng(seed)
    found: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"win": [], "block": []}
    for s in random_positions(game, rng, min_ply=6):
        tactic = classify(game, s)
        if tactic is None or len(found[tactic.kind]) >= per_kind:
            if all(len(v) >= per_kind for v in found.values()):
                break
            continue
        target = np.zeros(game.num_actions, bool)
        target[tactic.targets] = True
        best = best_moves(game, s, check_depth)
        if not target[best].all():
            raise AssertionError(f"alpha-beta disagrees with the {tactic.kind} label:\n"
                                 f"{game.render_text(s)}targets {tactic.targets}, best "
                                 f"{np.flatnonzero(best)}")
        found[tactic.kind].append((s, target))
    return found


# ------------------------------------------------------------------------------------------------
# Measuring


def measure(game, evaluate, positions, setting: Setting, seed: int) -> dict:
    """Missed % and the mean visit share on the target moves, over ``positions``."""
    search = GameSearch(game, evaluate, num_simulations=setting.num_simulations, c_puct=1.5,
                        dirichlet_alpha=0.5, dirichlet_fraction=0.25,
                        leaves_per_tree=setting.leaves_per_tree, virtual_loss=1.0,
                        root=setting.root, max_considered=game.num_actions)
    rng = np.random.default_rng(seed)
    states = [s for s, _ in positions]
    start = time.perf_counter()
    result = search.run(states, rng=rng, add_noise=setting.noise)
    seconds = time.perf_counter() - start
    missed, share = 0, 0.0
    for row, (_, target) in enumerate(positions):
        visits = result.output.visit_counts[row].astype(np.float64)
        if result.chosen is not None:  # a Gumbel root plays the move sequential halving kept
            choice = int(result.legal_actions[row][result.chosen[row]])
        else:
            choice = select_action(visits, 0.0, rng)  # the most visited, ties at random
        missed += not target[choice]
        share += visits[target].sum() / visits.sum()
    n = len(positions)
    return {"missed_pct": 100.0 * missed / n, "target_visit_share": share / n,
            "positions": n, "seconds": round(seconds, 2)}


def low_prior_evaluator(game, positions, target_mass: float = 0.05):
    """Uniform priors and value 0, except at the measured roots, where the target moves share
    only ``target_mass`` of the prior: a policy that has learnt to look elsewhere (the case of a
    sure win "with a low prior")."""
    roots = {}
    for kind_positions in positions.values():
        for s, target in kind_positions:
            legal = game.legal_mask(s)
            p = np.where(legal & ~target, (1 - target_mass) / max((legal & ~target).sum(), 1), 0.0)
            p[target] = target_mass / target.sum()
            roots[s.tobytes()] = p

    def evaluate(states):
        priors = np.stack([roots.get(s.tobytes(), np.ones(game.num_actions)) for s in states])
        return priors, np.zeros(len(states))

    return evaluate


def lm_evaluator(game, threads: int):
    import torch

    from selfplay.policy.config import EngineConfig, PolicyConfig
    from selfplay.policy.factory import make_engine
    from selfplay.rollout.games import cached_evaluator
    from selfplay.search.game_adapter import engine_evaluator

    torch.set_num_threads(threads)
    # A fresh evaluator per setting would be fairer to no one: the cache only saves time.
    return cached_evaluator(engine_evaluator(make_engine(PolicyConfig(), EngineConfig()), game))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="24 positions of each kind")
    parser.add_argument("--positions", type=int, default=None, help="positions of each kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--view", default="absolute",
                        help="the text the LM reads: absolute | mover | mover_short")
    parser.add_argument("--no-lm", action="store_true", help="the uniform evaluator only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the LM")
    args = parser.parse_args()
    per_kind = args.positions or (24 if args.quick else 200)
    settings = QUICK_SETTINGS if args.quick else SETTINGS
    baseline = max(settings, key=lambda s: s.num_simulations)

    game = ConnectFour(view=args.view)
    start = time.perf_counter()
    positions = tactical_positions(game, per_kind, args.seed)
    print(f"{per_kind} win-in-one and {per_kind} forced-block positions "
          f"({time.perf_counter() - start:.1f}s)")
    evaluators = {"uniform": uniform_evaluator(game),
                  "5% prior on target": low_prior_evaluator(game, positions)}
    if not args.no_lm:
        evaluators["tiny LM (fresh)"] = lm_evaluator(game, args.threads)

    results: dict[str, dict[str, dict[str, dict]]] = {}
    print(f"\n{'evaluator':<19} {'setting':<44} {'missed wins %':>13} {'missed blocks %':>15}"
          f" {'win share':>9} {'block share':>11} {'s':>6}")
    for ev_name, evaluate in evaluators.items():
        results[ev_name] = {}
        for k, setting in enumerate(settings):
            row = {kind: measure(game, evaluate, positions[kind], setting, args.seed + 7 * k)
                   for kind in ("win", "block")}
            results[ev_name][setting.label] = row
            print(f"{ev_name:<19} {setting.label:<44} {row['win']['missed_pct']:>13.1f} "
                  f"{row['block']['missed_pct']:>15.1f} {row['win']['target_visit_share']:>9.2f}"
                  f" {row['block']['target_visit_share']:>11.2f} "
                  f"{row['win']['seconds'] + row['block']['seconds']:>6.1f}")

    figures = []
    for ev_name, rows in results.items():
        base = rows[baseline.label]
        for setting in settings:
            if setting is baseline:
                continue
            for kind, what in (("win", "missed wins-in-1"), ("block", "missed forced blocks")):
                figures.append(figure(
                    f"{what}, {ev_name}, {setting.label}", "%", rows[setting.label][kind]
                    ["missed_pct"], base[kind]["missed_pct"],
                    f"{baseline.label}, same evaluator", "report (lower is better)",
                    higher_is_better=False))
    print()
    print_table("search_quality", figures)
    write_result("search_quality", figures, quick=args.quick,
                 extra={"positions_per_kind": per_kind, "view": args.view, "results": results})


if __name__ == "__main__":
    main()
