"""`selfplay replay RUN_DIR`: the episodes of a run, for analysis.

    selfplay replay RUN_DIR                      # list the latest episodes
    selfplay replay RUN_DIR --offset 20          # the 20 before those (pages back in time)
    selfplay replay RUN_DIR --show -1            # play the last episode back, move by move
    selfplay replay RUN_DIR --show 3f2a --delay 0.5
    selfplay replay RUN_DIR --export steps.csv   # one row per decision (.csv, .parquet, .jsonl)
    selfplay replay RUN_DIR --html episodes.html # a page to look at

Each decision shows the text the policy read, the action it took, and the search behind it: the
visit count, prior and value of every candidate action, and the root value. A text episode (math,
code) shows its prompt once, then each step's text with the tokens sampled for it, then the verdict
(predicted and reference answer, or the code tests) and the reward from each source.

What a policy wrote is untrusted: it is printed without Rich markup and escaped in the page.

A store can hold millions of episodes: listing, ``--show`` and ``--html`` read the footers, rank
the episodes by finishing time from three small columns of only the row groups that can hold the
ones asked for, and read those episodes whole (listing.py); only ``--export`` reads everything.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from selfplay.errors import UserError
from selfplay.replay.listing import (
    count_episodes,
    extreme_episodes,
    find_by_prefix,
    read_episodes,
    retrying,
)
from selfplay.replay.store import EpisodeStore
from selfplay.types import Episode, Step


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="selfplay replay", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="a run directory (or its episodes/ store)")
    parser.add_argument("--limit", type=int, default=20, help="episodes listed (latest first)")
    parser.add_argument("--offset", type=int, default=0,
                        help="skip this many of the latest episodes (the next page back)")
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


def find_episode(store: EpisodeStore, key: str, version: int | None, total: int) -> Episode:
    """The episode ``--show KEY`` names: an index in finishing order (negative from the end) or
    an episode-id prefix; ``total`` is how many episodes (of ``version``) the run has."""
    try:
        index = int(key)
    except ValueError:
        def by_prefix() -> list[Episode]:
            return read_episodes(store, find_by_prefix(store, key, version))

        matches = retrying(by_prefix)
        if len({e.episode_id for e in matches}) != 1:
            raise UserError(f"--show {key}: {len(matches)} episodes have that id prefix") from None
        return matches[0]
    if not -total <= index < total:
        raise UserError(f"--show {key}: the run has {total} episodes")

    def by_index() -> Episode:
        if index < 0:  # the (-index)-th latest: the oldest of the -index latest
            ref = extreme_episodes(store, -index, newest=True, version=version)[0]
        else:
            ref = extreme_episodes(store, index + 1, newest=False, version=version)[-1]
        return read_episodes(store, [ref])[0]

    return retrying(by_index)


def latest_episodes(store: EpisodeStore, limit: int, offset: int, version: int | None
                    ) -> list[Episode]:
    """The ``limit`` episodes before the ``offset`` latest, in finishing order (oldest first)."""
    def query() -> list[Episode]:
        refs = extreme_episodes(store, offset + limit, newest=True, version=version)
        return read_episodes(store, refs[: max(0, len(refs) - offset)])

    return retrying(query)


# ---------------------------------------------------------------------------- text episodes

# The info keys shown as the verdict or the rewards of a text episode (the rest is printed as is).
_VERDICT_KEYS = ("predicted", "answer", "correct", "passed", "total", "tests", "sandbox_status",
                 "invalid_action", "termination", "env_reward", "feedback", "feedback_error")


def is_text(episode: Episode) -> bool:
    """A text task's episode (math, code): no step exposes legal actions, as every game's do."""
    return all(step.legal_actions is None for step in episode.steps)


def token_summary(step: Step) -> str | None:
    """"N tokens, mean logprob -x.xxx (sampled by vK)" when the sampled tokens were recorded."""
    t = step.tokens
    if t is None:
        return None
    mean = f", mean logprob {float(np.mean(t.logprobs)):.3f}" if t.logprobs else ""
    return f"{len(t.ids)} tokens{mean} (sampled by v{t.version})"


def _json_or_text(value: str):
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def verdict_rows(episode: Episode) -> list[tuple[str, str]]:
    """(label, value) rows: the final answer or test results, then the reward from each source."""
    info = episode.info
    rows: list[tuple[str, str]] = []
    for key in ("predicted", "answer", "correct"):
        if key in info:
            rows.append((key, str(info[key])))
    if "passed" in info and "total" in info:
        rows.append(("tests passed", f"{info['passed']}/{info['total']}"))
    if "tests" in info:
        tests = _json_or_text(info["tests"])
        if isinstance(tests, list):
            rows.extend((f"test {i + 1}", str(why)) for i, why in enumerate(tests))
        else:
            rows.append(("tests", str(tests)))
    for key in ("sandbox_status", "invalid_action", "termination"):
        if info.get(key):
            rows.append((key.replace("_", " "), str(info[key])))
    rows.append(("reward", f"{episode.outcome:+g}"))
    if "env_reward" in info:
        rows.append(("env reward", str(info["env_reward"])))
    if "feedback" in info:
        feedback = _json_or_text(info["feedback"])
        if isinstance(feedback, dict):
            rows.extend((f"feedback {name}", f"{score}") for name, score in feedback.items())
        else:
            rows.append(("feedback", str(feedback)))
    if info.get("feedback_error"):
        rows.append(("feedback error", str(info["feedback_error"])))
    return rows


def other_info(episode: Episode) -> dict[str, str]:
    return {k: v for k, v in episode.info.items() if k not in _VERDICT_KEYS}


# ---------------------------------------------------------------------------- terminal


def list_table(shown: list[Episode], total: int, offset: int = 0) -> Table:
    """``shown`` (in finishing order, the latest ``offset`` of the ``total`` left out) as rows
    numbered by their place among all ``total``."""
    title = (f"{total} episodes (latest {len(shown)} shown)" if not offset else
             f"{total} episodes ({len(shown)} shown, the {offset} latest skipped)")
    table = Table(title=title)
    start = total - offset - len(shown)
    # Games keep their columns; a listing with text episodes names them as a task's and adds
    # how each ended and its group (the k samples of one problem share a group).
    text = any(is_text(e) for e in shown)
    columns = (("#", "episode", "env", "version", "steps", "reward", "termination", "group",
                "actor", "finished") if text else
               ("#", "episode", "env", "version", "moves", "outcome", "actor", "finished"))
    for column in columns:
        table.add_column(column)
    for i, e in enumerate(shown, start=start):
        finished = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.finished_at))
        head = [str(i), escape(e.episode_id[:8]), escape(e.env_id), str(e.policy_version),
                str(e.length), f"{e.outcome:+g}"]
        tail = [escape(e.actor), finished]
        if text:
            head += [escape(e.info.get("termination", "")), escape(e.group_id[:8])]
        table.add_row(*head, *tail)
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
        table.add_row(f"{mark}{escape(a)}", f"{v:g}", f"{sh:.2f}", f"{p:.2f}", f"{q:+.2f}")
    return table


def show_text_episode(console: Console, episode: Episode, delay: float) -> None:
    console.rule(escape(f"episode {episode.episode_id[:8]}  {episode.env_id}  policy "
                        f"v{episode.policy_version}  reward {episode.outcome:+g}"
                        + (f"  group {episode.group_id[:8]}" if episode.group_id else "")))
    console.print("[bold]prompt[/bold]")
    console.print(episode.steps[0].observation.rstrip("\n"), markup=False, highlight=False)
    for i, step in enumerate(episode.steps):
        tokens = token_summary(step)
        console.print(f"[bold]step {i + 1}[/bold]  reward {step.reward:+g}"
                      + (f"  {tokens}" if tokens else ""))
        console.print(step.action.rstrip("\n"), markup=False, highlight=False)
        print_search(console, step)
        if delay > 0:
            time.sleep(delay)
    for label, value in verdict_rows(episode):
        console.print(f"[bold]{escape(label)}[/bold]: {escape(value)}", highlight=False)
    console.print(f"info: {other_info(episode)}", markup=False, highlight=False)


def print_search(console: Console, step) -> None:
    """The search behind a decision, when it had one: simulations, root value, the children."""
    table = decision_table(step)
    if table is not None:
        console.print(f"search: {step.search.simulations} simulations, root value "
                      f"{step.search.root_value:+.2f}")
        console.print(table)


def show_episode(console: Console, episode: Episode, delay: float) -> None:
    if is_text(episode):
        show_text_episode(console, episode, delay)
        return
    console.rule(f"episode {episode.episode_id[:8]}  {episode.env_id}  policy v{episode.policy_version}"
                 f"  outcome {episode.outcome:+g}")
    for i, step in enumerate(episode.steps):
        console.print(f"[bold]move {i + 1}[/bold]  player {step.player} plays "
                      f"[bold green]{step.action}[/bold green]  reward {step.reward:+g}")
        console.print(step.observation.rstrip("\n"), markup=False, highlight=False)
        print_search(console, step)
        if delay > 0:
            time.sleep(delay)
    console.print(f"info: {episode.info}")


# ---------------------------------------------------------------------------- page


def _search_html(step: Step) -> str:
    s = step.search
    rows = "".join(
        f"<tr class='{'chosen' if a == step.action else ''}'><td>{html.escape(a)}</td>"
        f"<td>{v:g}</td><td>{p:.2f}</td><td>{q:+.2f}</td></tr>"
        for a, v, p, q in zip(s.actions, s.visits, s.priors, s.q_values))
    return (f"<p>root value {s.root_value:+.2f}, {s.simulations} simulations</p>"
            f"<table><tr><th>action</th><th>visits</th><th>prior</th><th>Q</th>"
            f"</tr>{rows}</table>")


def _text_episode_html(e: Episode) -> list[str]:
    group = f", group {html.escape(e.group_id[:8])}" if e.group_id else ""
    parts = [(f"<h2>episode {html.escape(e.episode_id[:8])} — {html.escape(e.env_id)}, "
              f"policy v{e.policy_version}, reward {e.outcome:+g}{group}</h2>"),
             f"<h3>prompt</h3><pre>{html.escape(e.steps[0].observation)}</pre>"]
    for i, step in enumerate(e.steps):
        tokens = token_summary(step)
        parts.append(f"<h3>step {i + 1} (reward {step.reward:+g}"
                     f"{', ' + html.escape(tokens) if tokens else ''})</h3>"
                     f"<pre>{html.escape(step.action)}</pre>")
        if step.search is not None:
            parts.append(_search_html(step))
    rows = "".join(f"<tr><th>{html.escape(label)}</th>"
                   f"<td class='text'>{html.escape(value)}</td></tr>"
                   for label, value in verdict_rows(e))
    parts.append(f"<table>{rows}</table>")
    return parts


def write_html(path: Path, episodes: list[Episode]) -> None:
    parts = ["<!doctype html><meta charset='utf-8'><title>selfplay episodes</title>",
             ("<style>body{font-family:sans-serif;max-width:60em;margin:auto}"
              "pre{background:#f4f4f4;padding:.5em}table{border-collapse:collapse}"
              "td,th{padding:0 .6em;text-align:right}"
              ".chosen{font-weight:bold;color:#070}td.text{text-align:left}</style>")]
    for e in episodes:
        if is_text(e):
            parts.extend(_text_episode_html(e))
            continue
        parts.append(f"<h2>episode {html.escape(e.episode_id[:8])} — {html.escape(e.env_id)}, "
                     f"policy v{e.policy_version}, outcome {e.outcome:+g}</h2>")
        for i, step in enumerate(e.steps):
            parts.append(f"<h3>move {i + 1}: player {step.player} plays "
                         f"{html.escape(step.action)} (reward {step.reward:+g})</h3>")
            parts.append(f"<pre>{html.escape(step.observation)}</pre>")
            if step.search is not None:
                parts.append(_search_html(step))
    path.write_text("\n".join(parts), encoding="utf-8")


# ---------------------------------------------------------------------------- export


def _as_json_lists(frame):
    """List cells (token ids, visits, ...) as JSON text, for CSV: pandas would write numpy's repr,
    which elides the middle of a long array ("[1 2 ... 9]") and so loses tokens."""
    frame = frame.copy()
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object and column.map(lambda v: isinstance(v, np.ndarray)).any():
            frame[name] = column.map(
                lambda v: json.dumps(v.tolist()) if isinstance(v, np.ndarray) else v)
    return frame


def export_steps(store: EpisodeStore, path: Path, version: int | None) -> int:
    frame = store.read_table(version=version).to_pandas()
    if path.suffix == ".csv":
        _as_json_lists(frame).to_csv(path, index=False)
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
    if args.limit < 1:
        raise UserError(f"--limit {args.limit}: must be at least 1")
    if args.offset < 0:
        raise UserError(f"--offset {args.offset}: must be 0 or more")
    total = count_episodes(store, args.version)
    if not total:
        console.print("no episodes in this run yet")
        return 0
    if args.show is not None:
        show_episode(console, find_episode(store, args.show, args.version, total), args.delay)
        return 0
    episodes = latest_episodes(store, args.limit, args.offset, args.version)
    if args.html:
        write_html(Path(args.html), episodes)
        console.print(f"wrote {len(episodes)} episodes to {args.html}")
        return 0
    console.print(list_table(episodes, total, args.offset))
    return 0
