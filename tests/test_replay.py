"""Replay: schema round-trip, the Parquet store, the sampler's window/staleness/priorities, the actor."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from selfplay.replay import (
    SCHEMA,
    EpisodeStore,
    ReplayActor,
    ReplaySampler,
    episodes_to_table,
    table_to_episodes,
)
from selfplay.types import Episode, SearchStats, Step


def make_episode(
    ep_id: str,
    n_steps: int = 3,
    version: int = 0,
    outcome: float = 1.0,
    search: bool = True,
    root_value: float = 0.0,
    info: dict[str, str] | None = None,
) -> Episode:
    steps = []
    for i in range(n_steps):
        stats = None
        if search:
            # Values exactly representable in float32, so the round trip is exact.
            stats = SearchStats(
                actions=["a", "b", "c"],
                visits=[float(i), 2.0, 1.0],
                priors=[0.5, 0.25, 0.25],
                q_values=[0.0, -0.5, 0.125],
                root_value=root_value,
                simulations=3 + i,
            )
        steps.append(
            Step(
                observation=f"{ep_id} obs {i}",
                action="b",
                player=i % 2,
                reward=0.0 if i < n_steps - 1 else outcome,
                search=stats,
                legal_actions=["a", "b", "c"] if search else None,
            )
        )
    return Episode(
        episode_id=ep_id,
        env_id="selfplay/TicTacToe-v0",
        seed=7,
        policy_version=version,
        steps=steps,
        outcome=outcome,
        started_at=1000.0,
        finished_at=1001.5,
        actor="rollout-0",
        info=info if info is not None else {"termination": "win"},
    )


# ---------------------------------------------------------------------------- schema


def test_schema_round_trip_with_and_without_search():
    eps = [make_episode("e0"), make_episode("e1", search=False, n_steps=2), make_episode("e2", 1)]
    table = episodes_to_table(eps)
    assert table.schema.equals(SCHEMA)
    assert table.num_rows == 6
    assert table_to_episodes(table) == eps
    # No search => every search column is null (the documented contract).
    no_search = table.filter(pa.compute.equal(table["episode_id"], "e1"))
    for col in ("search_actions", "search_visits", "root_value", "simulations", "legal_actions"):
        assert no_search[col].null_count == 2


def test_schema_round_trip_unicode_empty_legal_mixed_steps():
    ep = make_episode("épisode-☃", n_steps=3, info={"opponent": "名人", "note": "ü"})
    ep.steps[0].observation = "盤面:\n X|O|\n 🙂 ∑ ∞"
    ep.steps[0].action = "→ c3"
    ep.steps[1].legal_actions = []  # empty, not None: must stay empty
    ep.steps[1].search = None  # a mix of searched and sampled steps in one episode
    ep.steps[2].search.actions = ["ä", "b", "ç"]
    back = table_to_episodes(episodes_to_table([ep]))
    assert back == [ep]
    assert back[0].steps[1].legal_actions == []
    assert back[0].steps[1].search is None
    assert back[0].steps[0].legal_actions == ["a", "b", "c"]


def test_schema_float32_stats_keep_float32_precision():
    ep = make_episode("f")
    ep.steps[0].search.priors = [0.1, 0.2, 0.7]
    back = table_to_episodes(episodes_to_table([ep]))[0]
    np.testing.assert_allclose(back.steps[0].search.priors, [0.1, 0.2, 0.7], rtol=1e-7)


def test_schema_rejects_bad_episodes_with_a_clear_error():
    with pytest.raises(ValueError, match="'empty'.*no steps"):
        episodes_to_table([make_episode("ok"), make_episode("empty", n_steps=0)])
    bad = make_episode("misaligned")
    bad.steps[1].search.visits = [1.0]
    with pytest.raises(ValueError, match="'misaligned' step 1.*misaligned"):
        episodes_to_table([bad])
    wrong_type = make_episode("wrongtype")
    wrong_type.steps[0].observation = 42
    with pytest.raises(ValueError, match="'wrongtype'"):
        episodes_to_table([make_episode("fine"), wrong_type])


def test_table_to_episodes_refuses_a_truncated_episode():
    table = episodes_to_table([make_episode("a", n_steps=4)])
    with pytest.raises(ValueError, match="'a' is incomplete"):
        table_to_episodes(table.slice(0, 3))


# ---------------------------------------------------------------------------- store


def test_store_append_reads_back_with_pandas(tmp_path):
    store = EpisodeStore(tmp_path)
    first = [make_episode("a"), make_episode("b", search=False, version=1)]
    second = [make_episode("c", n_steps=5, version=2)]
    p1 = store.append(first)
    p2 = store.append(second)
    assert p1.name.startswith("shard-00000000-") and p2.name.startswith("shard-00000001-")
    assert [p.name for p in store.shard_paths()] == [p1.name, p2.name]

    df = pd.read_parquet(tmp_path / "episodes")
    expected = episodes_to_table(first + second).to_pandas()
    key = ["episode_id", "step_index"]
    df = df.sort_values(key).reset_index(drop=True)
    expected = expected.sort_values(key).reset_index(drop=True)
    assert list(df.columns) == list(SCHEMA.names)
    # List cells come back as numpy arrays; compare as Python values.
    assert _records(df) == _records(expected)

    assert store.num_steps() == 3 + 3 + 5
    assert store.num_episodes() == 3
    assert list(store.episodes()) == first + second
    assert [e.episode_id for e in store.episodes(min_version=1)] == ["b", "c"]
    assert store.read_table(columns=["episode_id"], min_version=2).num_rows == 5
    assert store.to_pandas().shape == (11, len(SCHEMA))
    assert store.latest_shards(1) == [p2]


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: _plain(v) for k, v in row.items()} for row in df.to_dict("records")]


def _plain(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, float) and np.isnan(v):
        return None
    return v


def test_store_numbering_continues_after_reopen(tmp_path):
    store = EpisodeStore(tmp_path)
    for i in range(3):
        store.append([make_episode(f"e{i}")])
    reopened = EpisodeStore(tmp_path)
    path = reopened.append([make_episode("e3")])
    assert path.name.startswith("shard-00000003-")
    seqs = [int(p.name.split("-")[1]) for p in reopened.shard_paths()]
    assert seqs == [0, 1, 2, 3]
    assert reopened.num_episodes() == 4  # counts of shards written by another instance


def test_store_empty_and_read_only(tmp_path):
    store = EpisodeStore(tmp_path)
    assert store.num_steps() == 0 and store.read_table().num_rows == 0
    assert list(store.episodes()) == []
    reader = EpisodeStore(tmp_path, read_only=True)
    with pytest.raises(PermissionError):
        reader.append([make_episode("x")])
    with pytest.raises(FileNotFoundError, match="no episode store"):
        EpisodeStore(tmp_path / "missing", read_only=True)
    with pytest.raises(ValueError, match="unknown episode-store columns"):
        store.read_table(columns=["nope"])


def test_store_failed_append_leaves_no_temp_file(tmp_path):
    store = EpisodeStore(tmp_path)
    with pytest.raises(ValueError):
        store.append([make_episode("empty", n_steps=0)])
    assert os.listdir(tmp_path / "episodes") == []
    assert store.append([make_episode("ok")]).name.startswith("shard-00000000-")


# ---------------------------------------------------------------------------- sampler


def test_value_targets_flip_for_player_one():
    sampler = ReplaySampler(window=100)
    sampler.add(
        [make_episode("g", n_steps=4, outcome=1.0), make_episode("h", n_steps=2, outcome=-1.0)]
    )
    batch = sampler.sample(200, rng=0)
    for (ep_id, step_index), v, player in zip(batch.keys, batch.value_targets, batch.players):
        assert player == step_index % 2
        outcome = 1.0 if ep_id == "g" else -1.0
        assert v == (outcome if player == 0 else -outcome)
    # Single-agent task: player 0 throughout, the target is the final reward.
    task = ReplaySampler(window=10)
    ep = make_episode("task", n_steps=1, outcome=0.75)
    task.add([ep])
    assert task.sample(3, rng=1).value_targets.tolist() == [0.75] * 3


def test_sampler_batch_contents_and_search_only():
    sampler = ReplaySampler(window=100)
    added = sampler.add([make_episode("s", n_steps=2), make_episode("n", search=False)])
    assert added == 2 and len(sampler) == 2  # decisions without search are not sampleable
    batch = sampler.sample(8, rng=np.random.default_rng(3))
    assert len(batch) == 8 and {k[0] for k in batch.keys} == {"s"}
    i = batch.keys.index(("s", 1))
    assert batch.actions[i] == ["a", "b", "c"]
    np.testing.assert_allclose(batch.target_visits[i], [0.25, 0.5, 0.25])
    assert batch.target_visits[i].dtype == np.float32
    assert batch.observations[i] == "s obs 1" and batch.chosen[i] == "b"

    everything = ReplaySampler(window=100, keep="sampled")
    everything.add([make_episode("n", search=False)])
    b = everything.sample(4, rng=0)
    assert b.target_visits[0].size == 0 and np.isnan(b.root_values[0])


def test_sampler_window_keeps_only_recent_decisions():
    sampler = ReplaySampler(window=5)
    for i in range(6):
        sampler.add([make_episode(f"e{i}", n_steps=3)])  # 18 decisions, the last 5 remain
    assert len(sampler) == 5 and sampler.total_added == 18
    seen = set(sampler.sample(500, rng=0).keys)
    assert seen == {("e4", 1), ("e4", 2), ("e5", 0), ("e5", 1), ("e5", 2)}


def test_sampler_staleness_drops_old_versions():
    sampler = ReplaySampler(window=100, max_staleness=2)
    for v in range(6):
        sampler.add([make_episode(f"v{v}", version=v)])
    batch = sampler.sample(400, rng=0, current_version=5)
    assert set(batch.policy_versions.tolist()) == {3, 4, 5}
    assert sampler.num_eligible(5) == 9 and sampler.num_eligible(None) == 18
    with pytest.raises(ValueError, match="none within max_staleness=2 of policy version 50"):
        sampler.sample(1, rng=0, current_version=50)
    keep_all = ReplaySampler(window=100, max_staleness=0)
    keep_all.add([make_episode("old", version=0)])
    assert keep_all.sample(5, rng=0, current_version=1000).policy_versions.tolist() == [0] * 5
    with pytest.raises(ValueError, match="window is empty"):
        ReplaySampler(window=3).sample(1)


def test_sampler_priorities_are_proportional():
    sampler = ReplaySampler(window=100, prioritized=True)
    sampler.add([make_episode(f"p{i}", n_steps=1) for i in range(4)])
    keys = [(f"p{i}", 0) for i in range(4)]
    assert sampler.update_priorities(keys, [1.0, 0.0, 0.0, 0.0]) == 4
    assert set(sampler.sample(300, rng=0).keys) == {("p0", 0)}

    sampler.update_priorities(keys, [3.0, 1.0, 0.0, 0.0])
    batch = sampler.sample(4000, rng=1)
    share = sum(k == ("p0", 0) for k in batch.keys) / len(batch)
    assert abs(share - 0.75) < 0.03
    assert ("p2", 0) not in batch.keys
    np.testing.assert_allclose(sorted(set(batch.probs.tolist())), [0.25, 0.75])

    uniform = ReplaySampler(window=100, prioritized=False)
    uniform.add([make_episode(f"p{i}", n_steps=1) for i in range(4)])
    uniform.update_priorities(keys, [1.0, 0.0, 0.0, 0.0])  # ignored when not prioritized
    assert len(set(uniform.sample(300, rng=0).keys)) == 4


def test_sampler_default_priority_is_value_error():
    # |value_target - root_value|: the search that misjudged the result is drawn more often.
    sampler = ReplaySampler(window=100, prioritized=True, priority_eps=0.0)
    sampler.add([make_episode("right", n_steps=1, outcome=1.0, root_value=1.0)])
    sampler.add([make_episode("wrong", n_steps=1, outcome=1.0, root_value=-1.0)])
    assert {k[0] for k in sampler.sample(200, rng=0).keys} == {"wrong"}


def test_sampler_rebuilds_from_store(tmp_path):
    store = EpisodeStore(tmp_path)
    live = ReplaySampler(window=7)
    for i in range(5):
        eps = [make_episode(f"e{i}", n_steps=3, version=i)]
        store.append(eps)
        live.add(eps)
    resumed = ReplaySampler(window=7)
    assert resumed.load_from_store(EpisodeStore(tmp_path, read_only=True)) == 7
    assert set(resumed.sample(500, rng=0).keys) == set(live.sample(500, rng=0).keys)
    # The ring order is play order, so the next add overwrites the oldest survivor.
    resumed.add([make_episode("next", n_steps=1)])
    assert ("e2", 2) not in set(resumed.sample(500, rng=0).keys)


# ---------------------------------------------------------------------------- actor


def test_replay_actor_plain_and_resume(tmp_path):
    actor = ReplayActor(tmp_path, window=50)
    assert actor.add([make_episode("a"), make_episode("b", n_steps=2)]) == 5
    assert actor.add([]) == 5
    assert actor.add([make_episode("c", search=False)]) == 8
    s = actor.stats()
    assert (s["episodes"], s["steps"], s["shards"], s["decisions_in_window"]) == (3, 8, 2, 5)
    assert s["episodes_per_s"] > 0
    b1, b2 = actor.sample(16, seed=4), actor.sample(16, seed=4)
    assert b1.keys == b2.keys  # a seed makes a draw reproducible

    again = ReplayActor(tmp_path, window=50)
    assert again.stats()["steps"] == 8 and again.num_decisions() == 5


def test_replay_actor_through_local_ray(tmp_path):
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from selfplay.replay import remote_replay_actor

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        handle = remote_replay_actor(tmp_path, window=100, max_staleness=1)
        assert ray.get(handle.add.remote([make_episode("r0", version=0)])) == 3
        assert ray.get(handle.add.remote([make_episode("r1", version=2)])) == 6
        batch = ray.get(handle.sample.remote(32, seed=0, current_version=2))
        assert set(batch.policy_versions.tolist()) == {2}
        stats = ray.get(handle.stats.remote())
        assert stats["episodes"] == 2 and stats["shards"] == 2
    finally:
        ray.shutdown()
    # What the actor wrote is an ordinary store.
    assert EpisodeStore(tmp_path, read_only=True).num_episodes() == 2
