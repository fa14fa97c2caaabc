"""The episode store after a crash mid-write: kill -9 a writer at random moments, then read.

A writer subprocess appends shards in a loop and reports each append once it has returned. After
each kill a reader must see only whole shards and whole episodes, every reported shard must be
there (nothing committed is lost), the temp files must be ignored, and a writable open must clean
them up and continue the numbering.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from selfplay.replay.schema import table_to_episodes
from selfplay.replay.store import EpisodeStore
from selfplay.types import Episode, SearchStats, Step

REPO = Path(__file__).resolve().parents[1]
EPISODES_PER_SHARD = 8


def expected_episode(episode_id: str) -> Episode:
    """The episode a writer produces for ``episode_id`` (deterministic, so a reader can check it)."""
    h = sum(map(ord, episode_id))
    n = 3 + h % 6
    steps = [
        Step(
            observation=f"{episode_id}/{i} " + "x" * (400 + 37 * i) + "☃",
            action=f"move-{i}",
            player=i % 2,
            reward=float(i == n - 1),
            search=SearchStats(["a", "b"], [float(i), 2.0], [0.5, 0.5], [0.0, 0.25], 0.5, 2)
            if i % 3
            else None,
            legal_actions=["a", "b"] if i % 2 else None,
        )
        for i in range(n)
    ]
    return Episode(episode_id, "selfplay/Crash-v0", h, h % 5, steps, 1.0, 1.0, 2.0, "w", {"h": "1"})


# The writer runs in its own process so it can be killed with SIGKILL mid-append.
WRITER = """
import sys
from selfplay.replay.store import EpisodeStore
sys.path.insert(0, sys.argv[3])  # tests/ itself: a 'tests' package installed by a dependency cannot shadow it
from test_replay_crash import EPISODES_PER_SHARD, expected_episode

root, run = sys.argv[1], sys.argv[2]
store = EpisodeStore(root)
print("ready", flush=True)
k = 0
while True:
    eps = [expected_episode(f"{run}-{k}-{j}") for j in range(EPISODES_PER_SHARD)]
    path = store.append(eps)
    print(f"{k} {path.name}", flush=True)
    k += 1
"""


def _run_and_kill(root: Path, run: int, delay: float) -> list[str]:
    """Start a writer, SIGKILL it ``delay`` seconds after it is ready; the shards it reported."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(run), str(REPO / "tests")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.strip() == "ready", proc.stderr.read()
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    reported = proc.stdout.read().splitlines()
    proc.stdout.close()
    proc.stderr.close()
    # A line cut by the kill has no shard name yet; that append was not reported as done.
    return [line.split()[1] for line in reported if len(line.split()) == 2]


def _check_store(root: Path, reported: list[str], runs: int) -> int:
    """Everything a reader sees is whole and as written; returns the number of shards."""
    reader = EpisodeStore(root, read_only=True)
    shards = reader.shard_paths()
    names = {p.name for p in shards}
    assert set(reported) <= names, f"committed shards lost: {set(reported) - names}"
    # Numbering continues across restarts with no gaps and no repeats.
    assert [int(p.name.split("-")[1]) for p in shards] == list(range(len(shards)))

    batches: dict[int, list[int]] = {r: [] for r in range(runs)}
    for path in shards:
        table = pq.read_table(path)  # every shard readable on its own
        episodes = table_to_episodes(table)  # raises on a truncated episode
        assert len(episodes) == EPISODES_PER_SHARD
        rows_per_episode = Counter(table.column("episode_id").to_pylist())
        for ep in episodes:
            assert ep == expected_episode(ep.episode_id)
            # table_to_episodes checked the rows against num_steps; check the count once more
            # from the raw column, independently of that code.
            assert rows_per_episode[ep.episode_id] == ep.length
        run, k, _ = episodes[0].episode_id.split("-")
        batches[int(run)].append(int(k))
    for r, ks in batches.items():  # each writer's appends landed in order, none skipped
        assert ks == list(range(len(ks))), f"run {r}: batches {ks}"

    # The outside readers agree, temp files or not.
    df = pd.read_parquet(root / "episodes")
    assert len(df) == reader.num_steps()
    assert df.groupby("episode_id").size().eq(df.groupby("episode_id")["num_steps"].first()).all()
    return len(shards)


def test_kill_9_mid_append_leaves_only_whole_shards(tmp_path):
    rng = random.Random(1234)
    runs = 5
    all_reported: list[str] = []
    temps_seen = 0
    for run in range(runs):
        all_reported += _run_and_kill(tmp_path, run, delay=rng.uniform(0.05, 0.3))
        temps_seen += len(list((tmp_path / "episodes").glob(".tmp-*")))
        n = _check_store(tmp_path, all_reported, runs)
        assert n >= len(all_reported)
    assert len(all_reported) > 0
    # The next writable open removes whatever the kills left in flight, and writes on.
    store = EpisodeStore(tmp_path)
    assert list((tmp_path / "episodes").glob(".tmp-*")) == []
    path = store.append([expected_episode("after-0-0")])
    assert int(path.name.split("-")[1]) == n
    print(f"{n} shards after {runs} kills; {temps_seen} temp files left by the kills")


def test_torn_temp_file_is_ignored_and_cleaned(tmp_path):
    store = EpisodeStore(tmp_path)
    good = store.append([expected_episode("torn-0-0"), expected_episode("torn-0-1")])
    # A crash halfway through writing the next shard: half a Parquet file under a temp name.
    data = good.read_bytes()
    torn = tmp_path / "episodes" / ".tmp-shard-00000001-deadbeef.parquet"
    torn.write_bytes(data[: len(data) // 2])

    reader = EpisodeStore(tmp_path, read_only=True)
    assert reader.shard_paths() == [good]
    assert [e.episode_id for e in reader.episodes()] == ["torn-0-0", "torn-0-1"]
    assert reader.read_table().num_rows == reader.num_steps()
    assert len(pd.read_parquet(tmp_path / "episodes")) == reader.num_steps()
    assert torn.exists()  # a read-only open never deletes (a live writer may own the temp)

    writer = EpisodeStore(tmp_path)
    assert not torn.exists()
    assert writer.append([expected_episode("torn-1-0")]).name.startswith("shard-00000001-")
    assert writer.num_episodes() == 3
