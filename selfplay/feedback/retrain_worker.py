"""The Ray actor that holds the run's reward model and retrains it on the cadence
``feedback.retrain_every`` (the pure pieces: selfplay/feedback/retrain.py).

It starts from the newest ``RUN_DIR/reward_models/version-N`` (a resumed run continues from its
last retraining) or else from the ``reward_model`` source's own ``path``, which it never writes.
It reads the episode store read-only, as every reader beside a live run does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from selfplay.feedback.config import FeedbackConfig
from selfplay.feedback.retrain import (
    retrain,
    reward_model_dir,
    reward_model_versions,
)
from selfplay.types import Episode

RETRAINED_KIND = "reward_model"


@dataclass
class RewardModelWorkerConfig:
    run_dir: str
    feedback: FeedbackConfig
    source: int  # index in feedback.sources of the reward_model source retrained


def retrained_source(feedback: FeedbackConfig) -> int | None:
    """The index of the source retraining applies to: the first ``reward_model`` with a path."""
    for i, src in enumerate(feedback.sources):
        if src.kind == RETRAINED_KIND and src.path:
            return i
    return None


def with_reward_model(feedback: FeedbackConfig, source: int, path: str) -> FeedbackConfig:
    """``feedback`` with source ``source`` reading the reward model at ``path``."""
    sources = list(feedback.sources)
    sources[source] = replace(sources[source], path=path)
    return replace(feedback, sources=sources)


def newest_episodes(run_dir: Path, count: int) -> list[Episode]:
    """The ``count`` newest episodes of the run's store (fewer when it holds fewer)."""
    from selfplay.replay.store import EpisodeStore

    try:
        store = EpisodeStore(run_dir, read_only=True)
    except FileNotFoundError:
        return []
    shards, held = [], 0
    for path in reversed(store.shard_paths()):
        shards.insert(0, path)
        held += store.shard_info(path).num_episodes
        if held >= count:
            break
    episodes = list(store.episodes(shards=shards)) if shards else []
    return episodes[-count:]


class RewardModelWorker:
    def __init__(self, cfg: RewardModelWorkerConfig):
        from selfplay.feedback.reward_model import RewardModel

        torch.set_num_threads(1)
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        found = reward_model_versions(self.run_dir)
        self.version, start = found[-1] if found else (0, cfg.feedback.sources[cfg.source].path)
        self.path = str(start)
        self.model, _ = RewardModel.load(start)

    def current(self) -> tuple[int, str]:
        """(version, path) of the reward model the rollouts should score with (0: the source's)."""
        return self.version, self.path

    def retrain(self, seed: int) -> dict:
        """Retrain on the newest episodes; a new version is saved (and returned) when there were
        pairs to train on. Returns RetrainResult's fields."""
        f = self.cfg.feedback
        episodes = newest_episodes(self.run_dir, f.retrain_episodes)
        result, trained = retrain(self.model, episodes, steps=f.retrain_steps,
                                  batch_size=f.retrain_batch_size, lr=f.retrain_lr,
                                  held_out=f.retrain_held_out, seed=seed)
        if trained:
            self.version += 1
            self.path = str(self.model.save(reward_model_dir(self.run_dir, self.version)))
            result = replace(result, version=self.version, path=self.path)
        return asdict(result)


__all__ = ["RewardModelWorker", "RewardModelWorkerConfig", "newest_episodes", "retrained_source",
           "with_reward_model"]
