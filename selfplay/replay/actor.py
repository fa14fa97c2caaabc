"""The replay actor: one EpisodeStore plus one ReplaySampler behind a small interface.

It is a plain class, so the single-process path and tests use it directly; a run wraps it in Ray
with ``remote_replay_actor(...)`` (or ``ray.remote(ReplayActor)`` at the call site). Keeping Ray
out of the class keeps ``import selfplay.replay`` light and the actor testable without a cluster.

Order of work in ``add``: the episodes are made durable (a shard, fsynced) before the sampler sees
them, so anything the learner trained on can be replayed after a crash; then the store merges its
small shards in tiers (``compact_fanout``; store.py and compaction.py), so a week-long run keeps
about a hundred files, not one per play call.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from selfplay.replay.compaction import DEFAULT_FANOUT, DEFAULT_MAX_BYTES, check_fanout
from selfplay.replay.sampler import (
    Batch,
    DecisionKey,
    ReplaySampler,
    check_keep,
    check_priority_beta,
)
from selfplay.replay.store import EpisodeStore
from selfplay.types import Episode

# Merges one add may trigger: enough for a full cascade of levels; a store written before
# compaction existed (thousands of small shards) is digested a few merges per add.
MERGES_PER_ADD = 8


class ReplayActor:
    """Owns the run's episode store and the learner's sampler."""

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        window: int = 20000,
        max_staleness: int = 0,
        prioritized: bool = False,
        *,
        keep: str = "searched",
        resume: bool = True,
        priority_beta: float = 1.0,
        compact_fanout: int = DEFAULT_FANOUT,
        compact_max_bytes: int = DEFAULT_MAX_BYTES,
        augment_env: Any = None,
    ):
        # ``augment_env``: the game env's config (EnvConfig) when draws are symmetry-augmented.
        game = None
        if augment_env is not None:
            from selfplay.build import build_env, game_of

            env = build_env(augment_env)
            game = game_of(env)
            env.close()
        # The sampler first: a wrong argument fails before the store creates any directory.
        self.sampler = ReplaySampler(window, max_staleness, prioritized, keep=keep,
                                     priority_beta=priority_beta, augment_game=game)
        self.compact_fanout = check_fanout(compact_fanout)
        self.compact_max_bytes = compact_max_bytes
        self.store = EpisodeStore(root_dir)
        if resume:  # refill the window from what earlier runs left in the store
            self.sampler.load_from_store(self.store)
        # Running totals, so stats() never rescans the store.
        self._steps = self.store.num_steps()
        self._episodes = self.store.num_episodes()
        self._shards = self.store.num_shards()
        self._started = time.monotonic()
        self._added_episodes = 0  # through this actor, for the rate

    def add(self, episodes: Sequence[Episode]) -> int:
        """Persist ``episodes`` as one shard and feed the sampler; returns steps in the store."""
        episodes = list(episodes)
        if not episodes:
            return self._steps
        self.store.append(episodes)
        self.sampler.add(episodes)
        self._steps += sum(ep.length for ep in episodes)
        self._episodes += len(episodes)
        self._shards += 1
        self._added_episodes += len(episodes)
        if self.compact_fanout:
            merged = self.store.compact(self.compact_fanout, self.compact_max_bytes,
                                        max_merges=MERGES_PER_ADD)
            if merged:
                self._shards = self.store.num_shards()
        return self._steps

    def sample(
        self, batch_size: int, seed: int | None = None, current_version: int | None = None
    ) -> Batch:
        """A batch for the learner (see ReplaySampler.sample); ``seed`` makes it reproducible."""
        return self.sampler.sample(batch_size, np.random.default_rng(seed), current_version)

    def update_priorities(self, keys: Iterable[DecisionKey], priorities: Iterable[float]) -> int:
        """The learner's new priorities of the decisions it drew (ReplaySampler)."""
        return self.sampler.update_priorities(keys, priorities)

    def num_decisions(self, current_version: int | None = None) -> int:
        """Decisions a draw at ``current_version`` could return (the learner waits on this)."""
        return self.sampler.num_eligible(current_version)

    def stats(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        return {
            "episodes": self._episodes,
            "steps": self._steps,
            "shards": self._shards,
            "episodes_per_s": self._added_episodes / elapsed,
            "decisions_in_window": len(self.sampler),
            "window": self.sampler.window,
        }


def check_replay_keys(priority_beta: float, compact_fanout: int) -> None:
    """A UserError naming the config key (``learner.priority_beta``,
    ``learner.replay_compact_fanout``) for a value the replay actor would refuse."""
    from selfplay.errors import UserError

    for key, value, check in (("priority_beta", priority_beta, check_priority_beta),
                              ("replay_compact_fanout", compact_fanout, check_fanout)):
        try:
            check(value)
        except ValueError as err:
            raise UserError(f"learner.{key}={value}: {err}") from None


def remote_replay_actor(
    root_dir: str | os.PathLike[str],
    window: int = 20000,
    max_staleness: int = 0,
    prioritized: bool = False,
    *,
    keep: str = "searched",
    resume: bool = True,
    name: str | None = None,
    num_cpus: float = 0,
    priority_beta: float = 1.0,
    compact_fanout: int = DEFAULT_FANOUT,
    extra_options: dict[str, Any] | None = None,
    augment_env: Any = None,
):
    """Start a ReplayActor as a Ray actor (Ray must be initialised); returns its handle.

    ``keep`` chooses the decisions the learner sees (ReplaySampler: "searched", "sampled",
    "best_of_group"); it is checked here, so a wrong value fails in the caller, not in the actor
    (as are ``priority_beta``, the correction of prioritised draws, and ``compact_fanout``, how
    many small shards merge into one; 0 never merges).

    ``augment_env`` (the game env's ``EnvConfig``) turns on symmetry augmentation of the draws
    (``learner.augment_symmetries``; selfplay/replay/augment.py).

    ``num_cpus=0`` by default: the actor mostly waits on disk, and on a 2-core laptop a whole
    core reserved for it would starve the rollout actors. ``extra_options`` go to
    ``.options()`` as they are (the driver pins the actor to its own node).
    """
    import ray  # here, not at module top: the plain path must not pay for importing Ray

    check_keep(keep)
    check_fanout(compact_fanout)
    check_priority_beta(priority_beta)
    options: dict[str, Any] = {"num_cpus": num_cpus}
    if name is not None:
        options["name"] = name
    options.update(extra_options or {})
    return (
        ray.remote(ReplayActor)
        .options(**options)
        .remote(
            str(root_dir),
            window,
            max_staleness,
            prioritized,
            keep=keep,
            resume=resume,
            priority_beta=priority_beta,
            compact_fanout=compact_fanout,
            augment_env=augment_env,
        )
    )
