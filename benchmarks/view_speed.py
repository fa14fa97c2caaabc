"""`selfplay view` over a big run: the episode table's first page and a filter, through the app.

    python benchmarks/view_speed.py [--quick] [--episodes N] [--out DIR]

Writes a run of N episodes (default 200,000; --quick 5,000) through the real writing path: the
``ReplayActor`` appends batches of episodes (tic-tac-toe games with search trees, and text
attempts) and merges its shards as a training run's does. Then serves the run with the viewer
(the real Starlette app under uvicorn, on 127.0.0.1) and times, over HTTP:
  (a) the episode table's first page on a cold viewer (the index built from the store),
  (b) the first page again (the index kept; a refresh lists the store),
  (c) a filter: games of versions 2..5 that player 0 won, newest first,
beside the same rows got with pandas: ``pd.read_parquet`` of the whole store (the columns the
table shows), then the filter and the sort (the baseline a notebook would run). Goal: under 1 s
each for the viewer.

Prints a table and writes benchmarks/results/view_speed.json (a --quick run: view_speed.quick.json;
--out DIR writes there instead, and keeps the run directory there too).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Self
from urllib.parse import urlencode

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import figure, machine, print_table, write_result

from selfplay.view.synthetic import GAME_ENV, template_episodes

PER_APPEND = 256  # episodes per ReplayActor.add, as an actor's play call returns them
VERSIONS = 10
FILTER = {"env": GAME_ENV, "version_min": 2, "version_max": 5, "outcome_min": 1}


def write_run(run_dir: Path, episodes: int, seed: int = 0) -> dict:
    """``episodes`` episodes through ReplayActor.add (append + compaction), in batches."""
    from envs.games.tictactoe import TicTacToe
    from selfplay.replay.actor import ReplayActor
    from selfplay.rollout.games import play_selfplay_games
    from selfplay.search.game_adapter import GameSearch, uniform_evaluator

    game = TicTacToe()
    search = GameSearch(game, uniform_evaluator(game), num_simulations=32, record_nodes=32)
    # Real searched games (trees recorded) and synthetic ones, tiled with fresh ids and times.
    templates = play_selfplay_games(game, search, num_games=16, env_id=GAME_ENV,
                                    policy_version=0, seed=seed)
    templates += template_episodes(games=32, problems=8, k=4, seed=seed)
    rng = np.random.default_rng(seed)
    actor = ReplayActor(run_dir, window=20_000, resume=False)
    started = time.perf_counter()
    t0 = 1.8e9
    for first in range(0, episodes, PER_APPEND):
        n = min(PER_APPEND, episodes - first)
        batch = []
        for i in range(first, first + n):
            e = templates[int(rng.integers(len(templates)))]
            batch.append(replace(e, episode_id=f"{i:012d}{rng.integers(1 << 40):010x}",
                                 policy_version=i * VERSIONS // episodes,
                                 started_at=t0 + i * 0.05 - 1.0, finished_at=t0 + i * 0.05,
                                 actor=f"rollout-{(first // PER_APPEND) % 4}"))
        actor.add(batch)
    seconds = time.perf_counter() - started
    return {"episodes": episodes, "appends": -(-episodes // PER_APPEND),
            "shards": actor.store.num_shards(), "steps": actor.store.num_steps(),
            "write_s": round(seconds, 1)}


class Server:
    """The viewer of ``run_dir`` on a free loopback port, in a thread."""

    def __init__(self, run_dir: Path, refresh_s: float = 0.0):
        import uvicorn

        from selfplay.view.app import make_app

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(make_app(run_dir, refresh_s=refresh_s),
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the viewer did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def get(self, path: str, params: dict | None = None) -> tuple[float, dict]:
        started = time.perf_counter()
        with urllib.request.urlopen(f"{self.base}{path}" + (f"?{urlencode(params)}" if params else ""),
                                    timeout=600) as r:
            data = json.loads(r.read())
        return time.perf_counter() - started, data


def pandas_rows(run_dir: Path, filtered: bool) -> tuple[float, list[str], int]:
    """The baseline: the whole store into pandas, then the filter, the sort and the first 50."""
    import pandas as pd

    from selfplay.view.episodes import INDEX_FIELDS

    started = time.perf_counter()
    # Only the columns the table shows (the whole rows, search trees and all, would take
    # minutes and gigabytes at 200,000 episodes: not a baseline anyone would run twice).
    frame = pd.read_parquet(run_dir / "episodes", columns=[*INDEX_FIELDS, "step_index"])
    episodes = frame[frame.step_index == 0]
    if filtered:
        keep = ((episodes.env_id == FILTER["env"])
                & episodes.policy_version.between(FILTER["version_min"], FILTER["version_max"])
                & (episodes.outcome >= FILTER["outcome_min"]))
        episodes = episodes[keep]
    page = episodes.sort_values("finished_at", ascending=False, kind="stable").head(50)
    return time.perf_counter() - started, list(page.episode_id), len(episodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (5,000 episodes)")
    parser.add_argument("--episodes", type=int, default=None, help="episodes in the run")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the results and keep the run here (default: results/)")
    args = parser.parse_args()
    episodes = args.episodes or (5_000 if args.quick else 200_000)
    work = Path(tempfile.mkdtemp(prefix="view-speed-")) if args.out is None else args.out
    run_dir = work / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    try:
        print(f"writing {episodes} episodes through ReplayActor.add ...", flush=True)
        written = write_run(run_dir, episodes)
        print(f"  {written}", flush=True)
        with Server(run_dir) as server:
            cold_s, cold = server.get("/episodes.json", {})
            warm_s, warm = server.get("/episodes.json", {})
            filter_s, filtered = server.get("/episodes.json", FILTER)
        base_s, base_ids, base_total = pandas_rows(run_dir, filtered=False)
        base_filter_s, base_filter_ids, base_matching = pandas_rows(run_dir, filtered=True)
        # The same rows, or the timing means nothing.
        assert cold["total"] == warm["total"] == base_total == episodes, (cold["total"], base_total)
        assert [r["episode_id"] for r in warm["rows"]] == base_ids
        assert filtered["matching"] == base_matching
        assert [r["episode_id"] for r in filtered["rows"]] == base_filter_ids
    finally:
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)
    baseline = ("pd.read_parquet(episodes/, the table's columns) of the whole store, then "
                "filter, sort, head(50)")
    figures = [
        figure(f"first page of {episodes:,} episodes, cold viewer (index built)", "s", cold_s,
               base_s, baseline, "< 1 s", higher_is_better=False, digits=3),
        figure("first page, index kept (a refresh lists the store)", "s", warm_s, base_s,
               baseline, "< 1 s", higher_is_better=False, digits=3),
        figure("filter: games, versions 2..5, player 0 won", "s", filter_s, base_filter_s,
               baseline, "< 1 s", higher_is_better=False, digits=3),
    ]
    print_table("view_speed", figures)
    extra = {"run": written}
    if args.out is None:
        write_result("view_speed", figures, quick=args.quick, extra=extra)
    else:
        path = args.out / f"view_speed{'.quick' if args.quick else ''}.json"
        result = {"benchmark": "view_speed", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "machine": machine(), "quick": args.quick, "figures": figures, **extra}
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    main()
