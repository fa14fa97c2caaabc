"""Ours against RLlib PPO on connect four, each trained for the same wall-clock budget.

Trains our policy with the real command, `selfplay train env=connect_four` (the settings of
learn_connect_four.py), and RLlib PPO by self-play against a league of frozen snapshots
(`python -m selfplay.adapters.rllib_train env=connect_four`), each for ``--minutes`` (30 by
default) on this machine, one after the other. Then plays ``--games`` games head to head (half
with each side first), ours with search (128 simulations) and by its prior alone, RLlib by its
policy's argmax over the legal moves (`player=rllib:DIR` of `selfplay eval`); and each of them
against the reference players. Prints win rates and the Elo ladder fitted to every match (anchor:
random); writes the results file (``--out`` elsewhere, e.g. from a busy machine).

    python benchmarks/vs_rllib.py                     # 30 minutes per side, 400 games head to head
    python benchmarks/vs_rllib.py --quick             # 0.5 minutes per side, a few games
    python benchmarks/vs_rllib.py --quick --out /tmp/vs_rllib.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import figure, machine, print_table, write_result

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SEARCH_SIMULATIONS = 128  # ours in every match, as in learn_connect_four.py
OURS_TRAIN = ["run.eval_every=10m", "arena.eval_games=20", "arena.search_simulations=64",
              "arena.opponents=[random,alphabeta:2]", "run.progress=false",
              "search.num_simulations=32", "search.leaves_per_tree=4", "run.games_per_actor=64"]
REFERENCES = {"full": ["random", "alphabeta:4", "mcts:1000"], "quick": ["random", "alphabeta:2"]}


def run(cmd: list[str], what: str) -> str:
    result = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    if result.returncode != 0:
        sys.exit(f"{what} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def selfplay(*args: str) -> str:
    return run([sys.executable, "-m", "selfplay.cli", *args], f"selfplay {args[0]}")


# ---- training ----------------------------------------------------------------------------


def train_ours(run_dir: Path, minutes: float) -> tuple[Path, dict]:
    start = time.time()
    selfplay("train", "env=connect_four", f"run.dir={run_dir}", f"run.budget_minutes={minutes}",
             *OURS_TRAIN)
    summary = json.loads((run_dir / "summary.json").read_text())
    checkpoint = run_dir / "checkpoints" / f"version-{summary['incumbent_version']:06d}"
    return checkpoint, {"wall_seconds": round(time.time() - start), "learner_steps":
                        summary["learner_steps"], "episodes": summary["episodes"],
                        "incumbent_version": summary["incumbent_version"]}


def train_rllib(out_dir: Path, minutes: float, env_runners: int) -> dict:
    start = time.time()
    run([sys.executable, "-m", "selfplay.adapters.rllib_train", "env=connect_four",
         "iterations=0", f"budget_minutes={minutes}", f"out_dir={out_dir}",
         f"num_env_runners={env_runners}"], "rllib_train")
    summary = json.loads((out_dir / "summary.json").read_text())
    return {"wall_seconds": round(time.time() - start), "training_seconds": summary["seconds"],
            "iterations": summary["iteration"], "env_steps": summary["env_steps"],
            "league_size": summary["league_size"], "league_newest": summary["league_newest"]}


# ---- matches -----------------------------------------------------------------------------


def ours_match(checkpoint: Path, opponent: str, games: int, simulations: int):
    from selfplay.arena.match import MatchResult

    out = selfplay("eval", "env=connect_four", f"checkpoint={checkpoint}", f"player={opponent}",
                   f"games={games}", f"search.num_simulations={simulations}")
    return MatchResult.from_dict(json.loads(out.strip().splitlines()[-1]))


def rllib_match(rllib_dir: Path, opponent: str, games: int):
    from envs.games.players import make_player
    from selfplay.adapters.rllib_env import game_for
    from selfplay.adapters.rllib_player import rllib_player
    from selfplay.arena.match import play_match

    game = game_for("selfplay/ConnectFour-v0")
    return play_match(game, rllib_player(rllib_dir, game), make_player(opponent, game), games,
                      seed=0)


def renamed(result, a: str, b: str | None = None):
    return dataclasses.replace(result, a=a, b=result.b if b is None else b, records=())


# ---- the report --------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="0.5 minutes per side, few games")
    parser.add_argument("--minutes", type=float, default=None, help="training budget per side")
    parser.add_argument("--games", type=int, default=None, help="head-to-head games (400)")
    parser.add_argument("--ref-games", type=int, default=None,
                        help="games against each reference player (100)")
    parser.add_argument("--rllib-env-runners", type=int, default=0,
                        help="RLlib EnvRunner actors (0: the driver samples; best on 2 cores)")
    parser.add_argument("--work-dir", default="runs/bench-vs-rllib", help="both runs, kept")
    parser.add_argument("--out", default=None,
                        help="write the results JSON here instead of benchmarks/results/")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    minutes = args.minutes or (0.5 if args.quick else 30.0)
    games = args.games or (10 if args.quick else 400)
    ref_games = args.ref_games or (6 if args.quick else 100)
    work = (REPO / args.work_dir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    ours_ckpt, ours_info = train_ours(work / "ours", minutes)
    rllib_dir = work / "rllib"
    rllib_info = train_rllib(rllib_dir, minutes, args.rllib_env_runners)

    rl = "rllib-ppo"
    sides = {"ours": SEARCH_SIMULATIONS, "ours-prior": 0}  # ours with search and without
    matches = {}
    for name, sims in sides.items():
        matches[f"{name} vs {rl}"] = renamed(
            ours_match(ours_ckpt, f"rllib:{rllib_dir}", games, sims), name, rl)
        for ref in REFERENCES[mode]:
            matches[f"{name} vs {ref}"] = renamed(ours_match(ours_ckpt, ref, ref_games, sims), name)
    for ref in REFERENCES[mode]:
        matches[f"{rl} vs {ref}"] = renamed(rllib_match(rllib_dir, ref, ref_games), rl)

    from selfplay.arena.elo import fit_elo

    ladder = fit_elo(matches.values(), anchor="random")
    figures = [figure(f"head to head, ours (search {SEARCH_SIMULATIONS}) vs RLlib PPO "
                      f"({games} games, both sides)", "score",
                      matches[f"ours vs {rl}"].score, 1 - matches[f"ours vs {rl}"].score,
                      "RLlib PPO self-play, same wall-clock", "> 0.5", digits=3),
               figure(f"head to head, ours by its prior alone vs RLlib PPO ({games} games)",
                      "score", matches[f"ours-prior vs {rl}"].score,
                      1 - matches[f"ours-prior vs {rl}"].score,
                      "RLlib PPO self-play, same wall-clock", "report", digits=3)]
    for ref in REFERENCES[mode]:
        rl_score = matches[f"{rl} vs {ref}"].score
        figures.append(figure(f"score vs {ref}, ours with search ({ref_games} games)", "score",
                              matches[f"ours vs {ref}"].score, rl_score, "RLlib PPO",
                              "report", digits=3))
        figures.append(figure(f"score vs {ref}, ours by its prior alone ({ref_games} games)",
                              "score", matches[f"ours-prior vs {ref}"].score, rl_score,
                              "RLlib PPO", "report", digits=3))
    extra = {"budget_minutes": minutes, "ours": ours_info, "rllib": rllib_info,
             "elo": {k: round(v) for k, v in sorted(ladder.items(), key=lambda kv: -kv[1])},
             "matches": {k: {"wins": m.wins, "draws": m.draws, "losses": m.losses,
                             "illegal_moves_a": m.illegal_moves_a,
                             "illegal_moves_b": m.illegal_moves_b}
                         for k, m in matches.items()}}
    print_table("vs_rllib", figures)
    print("Elo ladder (anchor random = 0):")
    for name, rating in extra["elo"].items():
        print(f"  {name:<14} {rating:>6}")
    print(json.dumps({k: extra[k] for k in ("ours", "rllib")}))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "benchmark": "vs_rllib",
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": machine(), "quick": args.quick, "figures": figures, **extra}, indent=2) + "\n")
        print(f"wrote {out}")
    else:
        write_result("vs_rllib", figures, quick=args.quick, extra=extra)


if __name__ == "__main__":
    main()
