"""Connect four after a fixed training budget: win rates against reference players, Elo curve.

Runs the real command, `selfplay train env=connect_four`, from a fresh policy for a fixed
wall-clock budget (60 minutes on 2 cores by default), then plays the final incumbent with search
(128 simulations) and by its prior alone against the random-rollout MCTS player with 1,000
simulations and against alpha-beta at depths 2 and 4, 200 games each from 100 random 2-ply
openings, each played with both sides (``--opening-plies``; without them a deterministic search
meets alpha-beta, which only breaks ties at random, in a few distinct games), and beside it the
untrained policy (version 0) with the same search. The Elo
curve over versions is saved as a PNG next to the results.

    python benchmarks/learn_connect_four.py             # 60-minute budget
    python benchmarks/learn_connect_four.py --quick     # 1-minute budget, 10 games per opponent
    python benchmarks/learn_connect_four.py --evaluate-only --run-dir RUN  # a finished run's matches
    python benchmarks/learn_connect_four.py --set search.full_search_prob=1.0 \
        --set search.num_simulations=32 --out /tmp/c4_arm.json   # an arm off the game's defaults
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import figure, print_table, write_result  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OPPONENTS = {"mcts:1000": "win rate vs rollout MCTS, 1000 sims", "alphabeta:2": "win rate vs alpha-beta depth 2",
             "alphabeta:4": "win rate vs alpha-beta depth 4"}
GOALS = {"mcts:1000": ">= 0.5 (moonshot 0.9)", "alphabeta:2": ">= 0.9", "alphabeta:4": "report"}


def selfplay(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "selfplay.cli", *args], cwd=REPO,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"selfplay {args[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def match(checkpoint: Path, opponent: str, games: int, env_overrides: list[str],
          prior_only: bool = False, opening_plies: int = 0) -> dict:
    search = ["search.kind=none"] if prior_only else ["search.num_simulations=128"]
    out = selfplay("eval", "env=connect_four", f"checkpoint={checkpoint}", f"player={opponent}",
                   f"games={games}", f"opening_plies={opening_plies}", *search, *env_overrides)
    return json.loads(out.strip().splitlines()[-1])


def win_rate(result: dict) -> float:
    games = sum(result[f"{k}_as_{s}"] for k in ("wins", "draws", "losses") for s in ("first", "second"))
    return (result["wins_as_first"] + result["wins_as_second"]) / games


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1-minute budget, 10 games")
    parser.add_argument("--minutes", type=float, default=None, help="training budget")
    parser.add_argument("--run-dir", default="runs/bench-connect-four", help="kept for replay")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra `selfplay train` override (repeatable), after the "
                             "benchmark's own; recorded in the results")
    parser.add_argument("--out", default=None,
                        help="folder for the results JSON (default benchmarks/results/): an "
                             "experiment's arm, kept beside the committed figures")
    parser.add_argument("--games", type=int, default=None,
                        help="games per opponent, half with each side (default 200; --quick 10)")
    parser.add_argument("--opening-plies", type=int, default=2,
                        help="the matches start from games/2 random openings of this many plies, "
                             "each played with both sides (0: from the initial position, as the "
                             "figures before 2026-12-04 were; a deterministic search against "
                             "alpha-beta, which only breaks ties at random, then plays a few "
                             "distinct games)")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="no training: play the matches of the finished run in --run-dir")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir for --minutes (run.resume=true) "
                             "instead of starting afresh")
    args = parser.parse_args()
    minutes = args.minutes or (1.0 if args.quick else 60.0)
    games = args.games or (10 if args.quick else 200)
    # The env's own overrides (a board view) hold for the matches too: the policy reads the text
    # it was trained on.
    env_overrides = [kv for kv in args.set if kv.lstrip("+").startswith("env.")]
    run_dir = (REPO / args.run_dir).resolve()
    if args.evaluate_only and not (run_dir / "summary.json").exists():
        sys.exit(f"--evaluate-only: {run_dir} holds no finished run (no summary.json)")
    if run_dir.exists() and not args.resume and not args.evaluate_only:
        shutil.rmtree(run_dir)

    start = time.time()
    if not args.evaluate_only:
        # The run's own evaluations search as the game's defaults say (arena.search_simulations).
        selfplay("train", "env=connect_four", f"run.dir={run_dir}",
                 f"run.budget_minutes={minutes}",
                 f"run.resume={'true' if args.resume else 'false'}",
                 "run.eval_every=10m", "arena.eval_games=20",
                 "arena.opponents=[random,alphabeta:2]", "run.progress=false",
                 # The game's own training defaults (conf/env_defaults/connect_four.yaml) are what
                 # is measured; --set changes them for an experiment's arm.
                 *args.set)
    summary = json.loads((run_dir / "summary.json").read_text())
    trained_s = summary.get("seconds", 0.0) if args.evaluate_only else time.time() - start
    incumbent = run_dir / "checkpoints" / f"version-{summary['incumbent_version']:06d}"
    untrained = run_dir / "checkpoints" / "version-000000"

    figures, extra = [], {"budget_minutes": minutes, "resumed": args.resume, "overrides": args.set,
                          "training_seconds": round(trained_s),
                          "learner_steps": summary["learner_steps"], "episodes": summary["episodes"],
                          "incumbent_version": summary["incumbent_version"],
                          "opening_plies": args.opening_plies, "evaluated_only": args.evaluate_only,
                          "matches": {}}
    games_label = (f"{games} games from {games // 2} random {args.opening_plies}-ply openings, "
                   f"both sides" if args.opening_plies else f"{games} games, both sides")
    for opponent, label in OPPONENTS.items():
        plies = args.opening_plies
        ours = match(incumbent, opponent, games, env_overrides, opening_plies=plies)
        base = match(untrained, opponent, games, env_overrides, opening_plies=plies)
        prior = match(incumbent, opponent, games, env_overrides, prior_only=True,
                      opening_plies=plies)
        extra["matches"][opponent] = {"trained": ours, "untrained": base, "trained_prior": prior}
        figures.append(figure(f"{label} ({games_label})", "win rate",
                              win_rate(ours), win_rate(base), "untrained v0, same search",
                              GOALS[opponent], digits=3))
        figures.append(figure(f"{label}, prior alone ({games_label})", "win rate",
                              win_rate(prior), win_rate(base), "untrained v0 with search",
                              "report", digits=3))
    import common

    if args.out:  # an experiment's arm: its figures and curve go elsewhere
        common.RESULTS = Path(args.out)
        common.RESULTS.mkdir(parents=True, exist_ok=True)
    png = run_dir / "elo.png"
    if png.exists():
        shutil.copy(png, common.RESULTS / "learn_connect_four_elo.png")
        curve = (common.RESULTS / "learn_connect_four_elo.png").resolve()
        extra["elo_curve"] = str(curve.relative_to(REPO) if curve.is_relative_to(REPO) else curve)
    print_table("learn_connect_four", figures)
    print(json.dumps({k: v for k, v in extra.items() if k != "matches"}))
    write_result("learn_connect_four", figures, quick=args.quick, extra=extra)


if __name__ == "__main__":
    main()
