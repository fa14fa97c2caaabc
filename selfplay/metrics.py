"""Metrics of a training run: TensorBoard scalars and the progress line on the terminal."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


class MetricsWriter:
    """TensorBoard scalars under ``RUN_DIR/tensorboard`` (losses, win rates, Elo, rates)."""

    def __init__(self, logdir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(logdir))
        self.started = time.time()
        self.episode_count = 0
        self.step_times: list[float] = []

    def scalar(self, name: str, value: float, step: int) -> None:
        self.writer.add_scalar(name, value, step)

    def episodes(self, episodes: list, step: int) -> None:
        self.episode_count += len(episodes)
        elapsed = max(time.time() - self.started, 1e-9)
        self.scalar("selfplay/episodes_per_s", self.episode_count / elapsed, step)
        if episodes:
            self.scalar("selfplay/episode_length", float(np.mean([e.length for e in episodes])), step)
            if episodes[0].group_id:  # text: the mean reward of the samples
                sampled = [e.outcome for e in episodes if e.info.get("termination") != "reference"]
                if sampled:  # written reference solutions (rollout.reference_mix) are not samples
                    self.scalar("rollout/reward_mean", float(np.mean(sampled)), step)
            else:
                self.scalar("selfplay/first_player_score",
                            float(np.mean([(e.outcome + 1) / 2 for e in episodes])), step)

    def learner(self, results: list[dict[str, float]], step: int) -> None:
        sums: dict[str, list[float]] = defaultdict(list)
        for r in results:
            for k, v in r.items():
                sums[k].append(v)
        for k, vs in sums.items():
            self.scalar(k, float(np.mean(vs)), step)
        seconds = sum(r.get("learner/step_seconds", 0.0) for r in results)
        if seconds > 0:
            self.scalar("learner/steps_per_s", len(results) / seconds, step)

    def arena(self, results: list[dict[str, Any]], ratings: dict[str, float], step: int,
              unbeaten_by: str | None = None) -> bool:
        """Write match scores and Elo; returns whether the searched policy lost no game to
        ``unbeaten_by`` in these results."""
        unbeaten = False
        for r in results:
            if "wins" not in r:  # held-out text metrics: pass@k, maj@k, mean reward
                for key, value in r.items():
                    if isinstance(value, (int, float)) and key not in ("version", "problems", "k"):
                        self.scalar(f"eval/{key}", float(value), step)
                continue
            games = r["wins"] + r["draws"] + r["losses"]
            kind = "prior" if r["a"].endswith("-prior") else "search"
            self.scalar(f"arena/{kind}_vs_{r['b']}/score",
                        (r["wins"] + r["draws"] / 2) / max(games, 1), step)
            self.scalar(f"arena/{kind}_vs_{r['b']}/losses", r["losses"], step)
            if unbeaten_by and r["b"] == unbeaten_by and kind == "search":
                unbeaten = r["losses"] == 0 and games > 0
        for name, rating in ratings.items():
            self.scalar(f"elo/{name}", rating, step)
        self.writer.flush()
        return unbeaten

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class ProgressDisplay:
    """One progress bar (tqdm) over the budget, with the run's counters beside it."""

    def __init__(self, budget_minutes: float, budget_steps: int, enabled: bool = True):
        from tqdm import tqdm

        self.by_time = budget_minutes > 0
        total = budget_minutes * 60 if self.by_time else (budget_steps or None)
        self.bar = tqdm(total=total, unit="s" if self.by_time else "step", disable=not enabled,
                        file=sys.stderr, dynamic_ncols=True, bar_format=(
                            "{l_bar}{bar}| {n:.0f}/{total_fmt} {unit} {postfix}"))
        self.started = time.time()

    def update(self, progress) -> None:
        done = time.time() - self.started if self.by_time else progress.learner_step
        self.bar.n = min(done, self.bar.total) if self.bar.total else done
        self.bar.set_postfix_str(
            f"episodes {progress.episodes} | steps {progress.learner_step} | "
            f"v{progress.version} (playing v{progress.incumbent})", refresh=False)
        self.bar.refresh()

    def note(self, text: str) -> None:
        self.bar.write(text)

    def close(self) -> None:
        self.bar.close()
