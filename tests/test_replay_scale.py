"""The replay store and sampler at week-long scale: shard compaction (bounded files, nothing lost or
seen twice, kill -9 included), lazy reads on resume and in `selfplay replay`, and prioritized replay
that is unbiased (importance-sampling weights) and fed by the learner's value errors."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selfplay.errors import UserError
from selfplay.replay.actor import ReplayActor, check_replay_keys
from selfplay.replay.cli import replay_main
from selfplay.replay.compaction import ShardSpan, next_merge
from selfplay.replay.sampler import PRIORITY_EPS, Batch, ReplaySampler, importance_weights
from selfplay.replay.schema import ADDED_COLUMNS, episodes_to_table
from selfplay.replay.store import EpisodeStore
from selfplay.types import Episode, SampledTokens, SearchStats, Step

REPO = Path(__file__).resolve().parents[1]


def game(ep_id: str, n: int = 3, *, version: int = 0, outcome: float = 1.0,
         root_value: float = 0.0, finished: float = 1000.0, group: str = "") -> Episode:
    steps = [Step(observation=f"{ep_id} obs {i}", action="b", player=i % 2,
                  reward=outcome if i == n - 1 else 0.0,
                  search=SearchStats(["a", "b", "c"], [float(i), 2.0, 1.0], [0.5, 0.25, 0.25],
                                     [0.0, -0.5, 0.125], root_value, 3),
                  legal_actions=["a", "b", "c"],
                  tokens=SampledTokens([1, 2], [-0.5, -0.25], version) if group else None)
             for i in range(n)]
    return Episode(ep_id, "selfplay/TicTacToe-v0", 7, version, steps, outcome, finished - 1.0,
                   finished, "rollout-0", {"termination": "win"}, group)


def appends(store_or_actor, count: int, per: int = 2, start: int = 0) -> list[Episode]:
    """``count`` appends of ``per`` episodes each; returns them in append order."""
    out = []
    for k in range(start, start + count):
        eps = [game(f"e{k}-{j}", n=1 + (k + j) % 3, version=k, finished=1000.0 + k)
               for j in range(per)]
        (store_or_actor.add if isinstance(store_or_actor, ReplayActor)
         else store_or_actor.append)(eps)
        out += eps
    return out


def shard_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "episodes").iterdir() if p.name.startswith("shard-"))


# ---------------------------------------------------------------------------- compaction


def test_compaction_plan_is_size_tiered():
    spans = [ShardSpan(i, i, 10) for i in range(5)]
    assert next_merge(spans, fanout=4) == slice(0, 4)
    tiers = [ShardSpan(0, 3, 40), ShardSpan(4, 4, 10), ShardSpan(5, 5, 10)]
    assert next_merge(tiers, fanout=2) == slice(1, 3)  # the two level-0 shards, not 0..4
    assert next_merge(tiers[:2], fanout=2) is None  # different levels never merge
    assert next_merge(spans, fanout=4, max_bytes=39) is None  # too big together
    assert next_merge(spans, fanout=0) is None
    with pytest.raises(ValueError, match="fanout must be 0"):
        next_merge(spans, fanout=1)


def test_actor_compacts_and_every_episode_reads_once(tmp_path):
    actor = ReplayActor(tmp_path, window=1000, compact_fanout=4)
    written = appends(actor, 70)
    names = shard_files(tmp_path)
    # 70 appends in tiers of 4: 64 + 4 + 2 -> one level-3, one level-1, two single shards.
    assert len(names) == 4, names
    assert names[0].startswith("shard-00000000-00000063-")
    reader = EpisodeStore(tmp_path, read_only=True)
    assert list(reader.episodes()) == written  # all of them, once, in append order
    assert reader.num_episodes() == actor.stats()["episodes"] == 140
    assert reader.num_steps() == sum(e.length for e in written) == len(reader.read_table())
    frame = pd.read_parquet(tmp_path / "episodes")  # outside readers: no copies left behind
    assert len(frame) == reader.num_steps() and frame.episode_id.nunique() == 140
    assert actor.stats()["shards"] == 4


def test_a_merge_cut_short_before_its_sources_go_is_read_once_then_cleaned(tmp_path):
    store = EpisodeStore(tmp_path)
    written = appends(store, 5)
    sources = [store.shard_info(p) for p in store.shard_paths()[:4]]
    # What a kill -9 right after the merged shard's rename leaves: merged file and sources both.
    merged = store._merge(sources)
    assert len(shard_files(tmp_path)) == 6
    reader = EpisodeStore(tmp_path, read_only=True)
    assert reader.shard_paths() == [merged, store.shard_paths()[-1]]
    assert list(reader.episodes()) == written and reader.num_episodes() == 10
    assert reader.read_table().num_rows == sum(e.length for e in written)
    assert all(s.path.exists() for s in sources)  # a reader never deletes
    writer = EpisodeStore(tmp_path)  # the next writable open finishes the merge
    assert not any(s.path.exists() for s in sources) and len(shard_files(tmp_path)) == 2
    assert writer.append([game("next")]).name.startswith("shard-00000005-")


def test_old_shards_merge_into_todays_schema(tmp_path):
    store = EpisodeStore(tmp_path)
    old = [game("old0"), game("old1", n=2)]
    table = episodes_to_table(old)
    pq.write_table(table.select([c for c in table.column_names if c not in ADDED_COLUMNS]),
                   tmp_path / "episodes" / "shard-00000000-0badc0de.parquet")
    store = EpisodeStore(tmp_path)  # numbering continues after the old shard
    new = appends(store, 3, start=1)
    assert store.compact(fanout=4) and len(shard_files(tmp_path)) == 1
    merged = store.shard_paths()[0]
    assert "group_id" in pq.read_schema(merged).names
    assert list(EpisodeStore(tmp_path, read_only=True).episodes()) == old + new
    assert EpisodeStore(tmp_path, read_only=True).num_episodes() == 8


def test_resume_keeps_groups_per_append_inside_a_merged_shard(tmp_path):
    # The same group id in two appends is two groups (groups arrive whole in one add), and must
    # stay two after the appends were merged into one shard.
    live = ReplaySampler(window=100, keep="sampled")
    actor = ReplayActor(tmp_path, window=100, keep="sampled", compact_fanout=2)
    for rewards in ([1.0, 0.0], [0.5]):
        eps = [game(f"g{len(live)}-{i}", n=1, outcome=r, group="g") for i, r in enumerate(rewards)]
        actor.add(eps)
        live.add(eps)
    assert len(shard_files(tmp_path)) == 1
    resumed = ReplaySampler(window=100, keep="sampled")
    resumed.load_from_store(EpisodeStore(tmp_path, read_only=True))

    def groups(sampler):
        b = sampler.sample(100, rng=0)
        return {k[0]: tuple(r.tolist()) for k, r in zip(b.keys, b.group_rewards)}

    assert groups(resumed) == groups(live) == {"g0-0": (1.0, 0.0), "g0-1": (1.0, 0.0),
                                                "g2-0": (0.5,)}


# The writer runs in its own process so it can be killed with SIGKILL mid-merge.
WRITER = """
import sys
from selfplay.replay.store import EpisodeStore
sys.path.insert(0, sys.argv[3])  # tests/ itself: a 'tests' package installed by a dependency cannot shadow it
from test_replay_scale import game

root, run = sys.argv[1], sys.argv[2]
store = EpisodeStore(root)
print("ready", flush=True)
k = 0
while True:
    store.append([game(f"{run}-{k}-{j}", n=1 + j) for j in range(3)])
    print(f"{k}", flush=True)  # reported once committed; the merge after it may be cut short
    store.compact(fanout=2)
    k += 1
"""


def test_kill_9_during_compaction_loses_nothing_and_duplicates_nothing(tmp_path):
    rng = random.Random(7)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    committed: list[str] = []
    for run in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(run),
                                 str(REPO / "tests")],
                                cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
            time.sleep(rng.uniform(0.4, 1.2))
            alive = proc.poll() is None
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        lines = proc.stdout.read().split()
        errors = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        assert alive, f"the writer died before the kill: {errors[-2000:]}"
        committed += [f"{run}-{k}-{j}" for k in lines for j in range(3)]
        reader = EpisodeStore(tmp_path, read_only=True)
        seen = Counter(e.episode_id for e in reader.episodes())  # raises on a torn episode
        assert set(committed) <= set(seen), f"lost: {set(committed) - set(seen)}"
        assert max(seen.values()) == 1, "an episode seen twice"
        for e in reader.episodes():  # each as written
            assert e == game(e.episode_id, n=1 + int(e.episode_id.split("-")[2]))
        assert reader.num_episodes() == len(seen)
    assert len(committed) > 0
    assert len(shard_files(tmp_path)) < len(committed) / 3  # fewer files than appends: merged
    writer = EpisodeStore(tmp_path)  # cleans temps and covered sources, and writes on
    frame = pd.read_parquet(tmp_path / "episodes")
    assert frame.groupby("episode_id").size().max() == frame.num_steps.max()  # no copies
    assert frame.episode_id.nunique() == writer.num_episodes() >= len(set(committed))


# ---------------------------------------------------------------------------- lazy reads


def _spoil_oldest_row_group(path: Path) -> None:
    """Overwrite every data page of the shard's first row group (the footer stays whole): a
    reader that decodes them fails, one that only needs later rows never notices."""
    meta = pq.read_metadata(path)
    rg = meta.row_group(0)
    start = min(rg.column(i).data_page_offset for i in range(rg.num_columns))
    dictionary = [rg.column(i).dictionary_page_offset for i in range(rg.num_columns)]
    start = min([start] + [d for d in dictionary if d])
    end = max(rg.column(i).data_page_offset + rg.column(i).total_compressed_size
              for i in range(rg.num_columns))
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(b"\xff" * (end - start))


def test_resume_and_listing_read_only_the_newest_rows(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("selfplay.replay.store.ROW_GROUP_ROWS", 16)  # many row groups, quickly
    actor = ReplayActor(tmp_path, window=1000, compact_fanout=4)
    written = appends(actor, 32, per=4)
    shards = EpisodeStore(tmp_path, read_only=True).shard_paths()
    assert len(shards) == 2 and pq.read_metadata(shards[1]).num_row_groups > 4
    for path in shards:  # the older shard, and the older rows of the newest one
        _spoil_oldest_row_group(path)
    with pytest.raises((OSError, pa.ArrowException)):
        EpisodeStore(tmp_path, read_only=True).read_table()  # the damage is real

    resumed = ReplayActor(tmp_path, window=20, compact_fanout=4)  # counts come from footers
    assert resumed.stats()["episodes"] == 128 and len(resumed.sampler) == 20
    newest = [(e.episode_id, i) for e in written for i in range(e.length)][-20:]
    assert set(resumed.sample(400, seed=0).keys) == set(newest)

    assert replay_main([str(tmp_path), "--limit", "3"]) == 0
    out = capsys.readouterr().out
    # One finishing time per append here: ties keep the store's order, so the last three.
    assert "128 episodes (latest 3 shown)" in out
    assert all(f"e31-{j}" in out for j in (1, 2, 3)) and "e31-0" not in out


def test_listing_pages_in_finishing_order_across_merged_shards(tmp_path, capsys):
    store = EpisodeStore(tmp_path)
    # Finishing times out of append order: the first append holds the run's latest episode.
    finish = {0: [50.0, 3.0], 1: [1.0, 2.0], 2: [4.0, 6.0], 3: [5.0, 5.0], 4: [7.0, 0.5]}
    eps = {k: [game(f"id{k}{j}", finished=f, version=k % 2) for j, f in enumerate(fs)]
           for k, fs in finish.items()}
    for k in range(5):
        store.append(eps[k])
    store.compact(fanout=2)
    assert len(store.shard_paths()) < 5
    everything = sorted((e for k in range(5) for e in eps[k]),
                        key=lambda e: e.finished_at)  # stable: store order on ties
    ids = [e.episode_id for e in everything]

    def listed(*argv: str) -> list[tuple[int, str]]:
        """(#, episode id) of each row of the listing."""
        assert replay_main([str(tmp_path), *argv]) == 0
        rows = [line.split("│") for line in capsys.readouterr().out.splitlines()
                if line.startswith("│")]
        return [(int(cells[1]), cells[2].strip()) for cells in rows]

    assert listed("--limit", "3") == list(enumerate(ids))[-3:]
    assert listed("--limit", "3", "--offset", "3") == list(enumerate(ids))[-6:-3]
    assert listed("--limit", "4", "--offset", "8") == list(enumerate(ids))[:2]
    of_v1 = [e.episode_id for e in everything if e.policy_version == 1]
    assert listed("--limit", "2", "--version", "1") == list(enumerate(of_v1))[-2:]

    def shown(key: str) -> str:
        assert replay_main([str(tmp_path), "--show", key]) == 0
        return capsys.readouterr().out.split("episode ")[1].split()[0]

    assert shown("-1") == "id00" and shown("0") == "id41" and shown("3") == ids[3]
    assert shown("id31") == "id31"
    with pytest.raises(UserError, match="the run has 10 episodes"):
        replay_main([str(tmp_path), "--show", "10"])
    with pytest.raises(UserError, match="--offset"):
        replay_main([str(tmp_path), "--offset", "-1"])


# ---------------------------------------------------------------------------- priorities


def _ring(priorities: list[float], beta: float) -> tuple[ReplaySampler, list]:
    sampler = ReplaySampler(window=10, prioritized=True, priority_beta=beta)
    sampler.add([game(f"p{i}", n=1) for i in range(len(priorities))])
    keys = [(f"p{i}", 0) for i in range(len(priorities))]
    sampler.update_priorities(keys, priorities)
    return sampler, keys


@pytest.mark.parametrize("beta, expected", [
    # P = (4, 2, 1, 1) / 8, N = 4: N*P = (2, 1, 0.5, 0.5)
    (1.0, [0.25, 0.5, 1.0, 1.0]),  # 1 / (N*P), over its max 2
    (0.5, [0.5, 2 ** -0.5, 1.0, 1.0]),  # (N*P)^-1/2, over its max 2^1/2
])
def test_importance_weights_on_a_hand_computed_ring(beta, expected):
    sampler, keys = _ring([4.0, 2.0, 1.0, 1.0], beta)
    batch = sampler.sample(400, rng=0)
    got = {k: float(w) for k, w in zip(batch.keys, batch.weights)}
    assert set(got) == set(keys)
    assert [got[k] for k in keys] == pytest.approx(expected)
    assert batch.weights.dtype == np.float32
    np.testing.assert_allclose(importance_weights(np.array([0.5, 0.25, 0.125, 0.125]), beta),
                               expected)


def test_uniform_draws_weigh_one():
    sampler, _ = _ring([3.0, 3.0, 3.0], beta=1.0)
    assert sampler.sample(50, rng=1).weights.tolist() == [1.0] * 50
    uniform, _ = _ring([4.0, 1.0, 1.0], beta=1.0)
    uniform.prioritized = False
    assert uniform.sample(50, rng=1).weights.tolist() == [1.0] * 50
    assert Batch(["o"], [["a"]], [np.ones(1, np.float32)], np.zeros(1, np.float32), np.zeros(1),
                 ["a"], np.zeros(1, np.int32), np.zeros(1, np.float32), [("e", 0)],
                 np.ones(1)).weights.tolist() == [1.0]


def test_importance_weights_reach_the_loss_rows():
    from selfplay.learner.batches import merge_duplicates

    # Position "a" drawn twice with different weights, "b" once.
    batch = Batch(["a", "a", "b"], [["1", "2"]] * 3,
                  [np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.5, 0.5])],
                  np.array([1.0, -1.0, 0.0], np.float32), np.zeros(3, np.int64), ["1"] * 3,
                  np.zeros(3, np.int32), np.zeros(3, np.float32), [("e", i) for i in range(3)],
                  np.full(3, 1 / 3), weights=np.array([0.25, 0.75, 0.5], np.float32))
    rows = {g.observation: g for g in merge_duplicates(batch)}
    assert rows["a"].weight == pytest.approx(1.0) and rows["b"].weight == pytest.approx(0.5)
    assert rows["a"].target.tolist() == pytest.approx([0.25, 0.75])
    assert rows["a"].value_target == pytest.approx(0.25 * 1.0 + 0.75 * -1.0)


def test_bad_replay_keys_are_user_errors():
    with pytest.raises(UserError, match=r"learner.priority_beta=1.5: .*\[0, 1\]"):
        check_replay_keys(1.5, 16)
    with pytest.raises(UserError, match="learner.replay_compact_fanout=1"):
        check_replay_keys(1.0, 1)


def test_learner_steps_update_priorities_and_the_draws(tmp_path):
    from selfplay.config import EnvConfig
    from selfplay.learner.batches import priority_updates
    from selfplay.learner.config import LearnerConfig
    from selfplay.policy.config import PolicyConfig
    from selfplay.workers import LearnerWorker, LearnerWorkerConfig, WarmStartConfig

    replay = ReplayActor(tmp_path / "run", window=100, prioritized=True)
    # Search values that all miss by 1, so every initial priority is the same.
    replay.add([game(f"w{i}", n=2, outcome=1.0, root_value=0.0) for i in range(6)])
    before = replay.sample(64, seed=3)
    assert set(before.weights.tolist()) == {1.0}
    cfg = LearnerWorkerConfig(
        str(tmp_path / "run"), False, "alphazero",
        LearnerConfig(prioritized=True, batch_size=64, warmup_steps=1),
        PolicyConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                     intermediate_size=64),
        EnvConfig(), WarmStartConfig("none", 0, 0, 0.0))
    worker = LearnerWorker(cfg, replay)
    worker.train(1, seed=3)  # draws exactly ``before``
    keys, errors = priority_updates(worker.learner.model, worker.learner.tokenizer, before)
    np.testing.assert_allclose(replay.sampler.priorities_of(keys), errors + PRIORITY_EPS)
    after = replay.sample(64, seed=4)
    priority = dict(zip(keys, errors + PRIORITY_EPS))
    total = sum(priority.get(k, 1.0 + PRIORITY_EPS) for k in
                [(f"w{i}", s) for i in range(6) for s in range(2)])
    np.testing.assert_allclose(after.probs,
                               [priority.get(k, 1.0 + PRIORITY_EPS) / total for k in after.keys])
    assert not np.allclose(after.probs, before.probs[0])  # the draw is no longer uniform
