"""`selfplay replay RUN_DIR`: the episodes of a run, for analysis.

    selfplay replay RUN_DIR                      # list the latest episodes
    selfplay replay RUN_DIR --show -1            # play the last episode back, move by move
    selfplay replay RUN_DIR --show 3f2a --delay 0.5
    selfplay replay RUN_DIR --export steps.csv   # one row per decision (.csv, .parquet, .jsonl)
    selfplay replay RUN_DIR --html episodes.html # a page to look at

Each decision shows the text the policy read, the action it took, and the search behind it: the
visit count, prior and value of every candidate action, and the root value.
"""

from __future__ import annotations

import argparse
import html
import sys
import time
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.table import Table

from selfplay.errors import UserError
from selfplay.replay.store import EpisodeStore
from selfplay.types import Episode, Step


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="selfplay replay", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="a run directory (or its episodes/ store)")
    parser.add_argument("--limit", type=int, default=20, help="episodes listed (latest first)")
    parser.add_argument("--version", type=int, default=None, help="only this policy version")
    parser.add_argument("--show", default=None,
                        help="play one episode back: its index in the listing order "
                             "(negative counts from the end) or an episode-id prefix")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between moves in --show")
    parser.add_argument("--export", default=None, help="write every step as a table (.csv/.parquet/.jsonl)")
    parser.add_argument("--html", default=None, help="write the listed episodes as an HTML page")
    return parser.parse_args(list(argv))


def open_store(run_dir: str) -> EpisodeStore:
    path = Path(run_dir)
    if not path.exists():
        raise UserError(f"{run_dir}: no such run directory")
    root = path.parent if path.name == "episodes" else path
    if not (root / "episodes").is_dir():
        raise UserError(f"{run_dir}: no episodes/ store here (is it a run directory?)")
    return EpisodeStore(root, read_only=True)


def select_episodes(episodes: list[Episode], version: int | None) -> list[Episode]:
    chosen = [e for e in episodes if version is None or e.policy_version == version]
    return sorted(chosen, key=lambda e: e.finished_at)


def find_episode(episodes: list[Episode], key: str) -> Episode:
    try:
        index = int(key)
    except ValueError:
        matches = [e for e in episodes if e.episode_id.startswith(key)]
        if len(matches) != 1:
            raise UserError(f"--show {key}: {len(matches)} episodes have that id prefix") from None
        return matches[0]
    if not -len(episodes) <= index < len(episodes):
        raise UserError(f"--show {key}: the run has {len(episodes)} episodes")
    return episodes[index]


def list_table(episodes: list[Episode], limit: int) -> Table:
    table = Table(title=f"{len(episodes)} episodes (latest {min(limit, len(episodes))} shown)")
    for column in ("#", "episode", "env", "version", "moves", "outcome", "actor", "finished"):
        table.add_column(column)
    start = max(0, len(episodes) - limit)
    for i, e in enumerate(episodes[start:], start=start):
        table.add_row(str(i), e.episode_id[:8], e.env_id, str(e.policy_version), str(e.length),
                      f"{e.outcome:+g}", e.actor,
                      time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.finished_at)))
    return table


def decision_table(step: Step) -> Table | None:
    if step.search is None:
        return None
    s = step.search
    table = Table(show_header=True, box=None, padding=(0, 1))
    for column in ("action", "visits", "share", "prior", "Q"):
        table.add_column(column, justify="right")
    share = s.visit_distribution
    for a, v, sh, p, q in sorted(zip(s.actions, s.visits, share, s.priors, s.q_values),
                                 key=lambda row: -row[1]):
        mark = "[bold green]" if a == step.action else ""
        table.add_row(f"{mark}{a}", f"{v:g}", f"{sh:.2f}", f"{p:.2f}", f"{q:+.2f}")
    return table


def show_episode(console: Console, episode: Episode, delay: float) -> None:
    console.rule(f"episode {episode.episode_id[:8]}  {episode.env_id}  policy v{episode.policy_version}"
                 f"  outcome {episode.outcome:+g}")
    for i, step in enumerate(episode.steps):
        console.print(f"[bold]move {i + 1}[/bold]  player {step.player} plays "
                      f"[bold green]{step.action}[/bold green]  reward {step.reward:+g}")
        console.print(step.observation.rstrip("\n"), markup=False, highlight=False)
        table = decision_table(step)
        if table is not None:
            console.print(f"search: {step.search.simulations} simulations, root value "
                          f"{step.search.root_value:+.2f}")
            console.print(table)
        if delay > 0:
            time.sleep(delay)
    console.print(f"info: {episode.info}")


def write_html(path: Path, episodes: list[Episode]) -> None:
    parts = ["<!doctype html><meta charset='utf-8'><title>selfplay episodes</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:auto}pre{background:#f4f4f4;"
             "padding:.5em}table{border-collapse:collapse}td,th{padding:0 .6em;text-align:right}"
             ".chosen{font-weight:bold;color:#070}</style>"]
    for e in episodes:
        parts.append(f"<h2>episode {html.escape(e.episode_id[:8])} — {html.escape(e.env_id)}, "
                     f"policy v{e.policy_version}, outcome {e.outcome:+g}</h2>")
        for i, step in enumerate(e.steps):
            parts.append(f"<h3>move {i + 1}: player {step.player} plays "
                         f"{html.escape(step.action)} (reward {step.reward:+g})</h3>")
            parts.append(f"<pre>{html.escape(step.observation)}</pre>")
            if step.search is not None:
                s = step.search
                rows = "".join(
                    f"<tr class='{'chosen' if a == step.action else ''}'><td>{html.escape(a)}</td>"
                    f"<td>{v:g}</td><td>{p:.2f}</td><td>{q:+.2f}</td></tr>"
                    for a, v, p, q in zip(s.actions, s.visits, s.priors, s.q_values))
                parts.append(f"<p>root value {s.root_value:+.2f}, {s.simulations} simulations</p>"
                             f"<table><tr><th>action</th><th>visits</th><th>prior</th><th>Q</th>"
                             f"</tr>{rows}</table>")
    path.write_text("\n".join(parts))


def export_steps(store: EpisodeStore, path: Path, version: int | None) -> int:
    frame = store.to_pandas(min_version=version)
    if version is not None:
        frame = frame[frame["policy_version"] == version]
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        raise UserError(f"--export {path}: use a .csv, .parquet or .jsonl file name")
    return len(frame)


def replay_main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    store = open_store(args.run_dir)
    # Piped output (a file, a test, `less`) gets full-width rows instead of 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 200)
    if args.export:
        rows = export_steps(store, Path(args.export), args.version)
        console.print(f"wrote {rows} steps to {args.export}")
        return 0
    episodes = select_episodes(list(store.episodes()), args.version)
    if not episodes:
        console.print("no episodes in this run yet")
        return 0
    if args.show is not None:
        show_episode(console, find_episode(episodes, args.show), args.delay)
        return 0
    if args.html:
        write_html(Path(args.html), episodes[-args.limit:])
        console.print(f"wrote {min(args.limit, len(episodes))} episodes to {args.html}")
        return 0
    console.print(list_table(episodes, args.limit))
    return 0
