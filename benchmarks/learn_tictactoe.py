"""How long a fresh tiny policy takes to stop losing to the perfect tic-tac-toe player.

Runs the real command, `selfplay train env=tictactoe`, from a fresh policy on this machine until
the incumbent version, playing with search, loses none of 400 games (200 with each side) to the
perfect player, then reports the wall-clock time from the command's start. Beside it, in the same
script: the untrained policy (version 0) with the same search, and each version's prior alone
(no search) against the same player.

    python benchmarks/learn_tictactoe.py            # budget 10 minutes (goal: unbeaten within 5)
    python benchmarks/learn_tictactoe.py --quick    # budget 1 minute, 100 games per evaluation
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import figure, print_table, write_result  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def run_training(run_dir: Path, minutes: float, games: int) -> tuple[float, dict]:
    cmd = [
        sys.executable, "-m", "selfplay.cli", "train", "env=tictactoe", f"run.dir={run_dir}",
        f"run.budget_minutes={minutes}", "run.stop_when_unbeaten=perfect",
        "run.eval_every=30s", f"arena.eval_games={games}", "arena.opponents=[perfect]",
        "run.progress=false",
    ]
    start = time.time()
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    elapsed = time.time() - start
    if result.returncode != 0:
        sys.exit(f"training failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed, json.loads((run_dir / "summary.json").read_text())


def losses(results: list[dict], prior: bool) -> dict | None:
    for r in results:
        if r["b"] == "perfect" and r["a"].endswith("-prior") == prior:
            return r
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1-minute budget, 100 games")
    args = parser.parse_args()
    minutes, games = (1.0, 100) if args.quick else (10.0, 400)

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "ttt"
        elapsed, summary = run_training(run_dir, minutes, games)
        ladder = json.loads((run_dir / "elo.json").read_text())
    first = [m for m in ladder["matches"] if m["b"] == "perfect" and m["a"] in ("v0", "v0-prior")]
    untrained = {m["a"]: m for m in first}
    final_search = losses(summary["final_evaluation"], prior=False)
    final_prior = losses(summary["final_evaluation"], prior=True)
    unbeaten = summary["stop_reason"].startswith("unbeaten")

    search_row = f"games lost to perfect of {games}, with search (v{summary['incumbent_version']})"
    figures = [
        figure(f"wall-clock until 0 of {games} games lost to perfect (with search)", "s",
               elapsed if unbeaten else None, 300.0, "the goal (5 minutes)", "<= 300 s",
               higher_is_better=False),
        figure(search_row, "games", final_search and final_search["losses"],
               untrained.get("v0", {}).get("losses"), "untrained v0, same search", "0",
               higher_is_better=False, digits=0),
        figure(f"games lost to perfect of {games}, prior alone (no search)", "games",
               final_prior and final_prior["losses"], untrained.get("v0-prior", {}).get("losses"),
               "untrained v0, prior alone", "report", higher_is_better=False, digits=0),
    ]
    extra = {"stop_reason": summary["stop_reason"], "learner_steps": summary["learner_steps"],
             "episodes": summary["episodes"], "incumbent_version": summary["incumbent_version"],
             "budget_minutes": minutes}
    print_table("learn_tictactoe", figures)
    print(json.dumps(extra))
    write_result("learn_tictactoe", figures, quick=args.quick, extra=extra)


if __name__ == "__main__":
    main()
