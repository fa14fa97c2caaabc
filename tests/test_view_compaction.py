"""`selfplay view` over a store that compacts: a merged shard's episodes are not read again, a read
whose shard a merge just deleted finds the merged one, and a view open while the store merges
keeps answering with the right counts."""

from __future__ import annotations

import threading

from test_view_support import get, get_json, serve

from selfplay.replay.store import EpisodeStore, parse_shard_name
from selfplay.view.episodes import EpisodeIndex, EpisodeQuery
from selfplay.view.synthetic import template_episodes


def _batch(seed: int, games: int = 3):
    episodes = template_episodes(games=games, problems=0, seed=seed)
    for i, e in enumerate(episodes):
        e.episode_id = f"s{seed:04d}g{i:02d}"
        e.finished_at = float(seed * 10 + i)
    return episodes


def test_a_merged_shard_is_not_read_again(tmp_path):
    store = EpisodeStore(tmp_path)
    for seed in range(4):
        store.append(_batch(seed))
    index = EpisodeIndex(tmp_path, refresh_s=0)
    assert index.table().num_rows == 12 and len(index.shard_paths()) == 4
    read = index.rows_read
    (merged,) = store.compact(fanout=4)
    assert parse_shard_name(merged.name) == (0, 3)
    assert index.table().num_rows == 12 and index.shard_paths() == [merged]
    assert index.rows_read == read  # the merged shard's appends were all indexed already
    assert index.episode("s0002g01").episode_id == "s0002g01"  # read from the merged shard
    store.append(_batch(4))
    assert index.table().num_rows == 15
    assert index.rows_read - read == sum(e.length for e in _batch(4))  # only the new append
    page = index.page(EpisodeQuery(sort="finished", order="asc"), limit=15, facets=False)
    assert [r["episode_id"] for r in page.rows][:3] == ["s0000g00", "s0000g01", "s0000g02"]


def test_a_read_after_a_merge_finds_the_merged_shard(tmp_path):
    store = EpisodeStore(tmp_path)
    for seed in range(4):
        store.append(_batch(seed))
    index = EpisodeIndex(tmp_path, refresh_s=3600)  # it will not list the store again by itself
    assert index.table().num_rows == 12
    store.compact(fanout=2)  # every source the index knows is deleted
    assert index.episode("s0003g02").episode_id == "s0003g02"
    assert [e.episode_id for e in index.episodes(["s0000g00", "s0003g01"])] == [
        "s0000g00", "s0003g01"]
    assert index.shared_positions(0, 0).num_rows > 0 and index.table().num_rows == 12


def test_the_view_answers_while_the_store_compacts(tmp_path):
    store = EpisodeStore(tmp_path)
    store.append(_batch(0))
    appends, per_append = 24, 3
    done = threading.Event()
    errors: list[str] = []

    def write():
        try:
            for seed in range(1, appends):
                store.append(_batch(seed))
                store.compact(fanout=2)  # merges after every other append, cascading
        except Exception as err:  # noqa: BLE001 - any failure of the writer is reported below
            errors.append(repr(err))
        finally:
            done.set()

    totals: list[int] = []
    with serve(tmp_path, refresh_s=0.0) as base:
        writer = threading.Thread(target=write)
        writer.start()
        while not done.is_set() or len(totals) < 3:
            listing = get_json(base + "/episodes.json?size=2&sort=finished&order=desc")
            totals.append(listing["total"])
            assert listing["total"] % per_append == 0 and listing["total"] == listing["matching"]
            newest = listing["rows"][0]["episode_id"]
            episode = get_json(base + f"/episodes/{newest}.json")  # its shard may be merging
            assert episode["episode"]["episode_id"] == newest
            status, _, _ = get(base + "/")
            assert status == 200
        writer.join()
        final = get_json(base + "/run.json")["counts"]
    assert not errors, errors
    assert totals == sorted(totals) and len(set(totals)) > 1, totals  # it followed, never back
    assert final["episodes"] == appends * per_append == EpisodeStore(tmp_path, read_only=True).num_episodes()
    assert final["shards"] == EpisodeStore(tmp_path, read_only=True).num_shards() < appends
