"""Replay: the durable episode store (Parquet shards) and the sampler the learner draws from."""

from selfplay.replay.actor import ReplayActor, remote_replay_actor
from selfplay.replay.groups import best_of_group, group_outcomes
from selfplay.replay.sampler import KEEP_MODES, Batch, Decision, ReplaySampler, value_target
from selfplay.replay.schema import SCHEMA, episodes_to_table, table_to_episodes
from selfplay.replay.store import EpisodeStore

__all__ = [
    "KEEP_MODES",
    "SCHEMA",
    "Batch",
    "Decision",
    "EpisodeStore",
    "ReplayActor",
    "ReplaySampler",
    "best_of_group",
    "episodes_to_table",
    "group_outcomes",
    "remote_replay_actor",
    "table_to_episodes",
    "value_target",
]
