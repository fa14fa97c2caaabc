"""The episodes of a store in finishing order, read lazily: the newest (or oldest) k of millions
without reading the rest.

Every Parquet footer holds the min and max of each column per row group (pyarrow writes them, in
shards of every age). A row group whose newest ``finished_at`` is older than the k-th newest
episode found so far cannot change the answer, so the row groups are visited newest first and the
visit stops there; ``policy_version`` statistics skip the row groups a version filter excludes.
Only three small columns are read to rank the candidates, and only the chosen episodes are read
whole (``read_episodes``). Ties in ``finished_at`` keep the store's order (oldest append first).

Reads run against a snapshot of the live shards; when compaction deletes one before it is read,
the whole query runs again on a fresh snapshot (``retrying``).
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pyarrow.compute as pc
import pyarrow.parquet as pq

from selfplay.replay.schema import table_to_episodes
from selfplay.replay.store import EpisodeStore, parse_shard_name
from selfplay.types import Episode

_RANK_COLUMNS = ["episode_id", "finished_at", "policy_version", "step_index", "num_steps"]
_RETRIES = 5
T = TypeVar("T")


@dataclass(frozen=True)
class EpisodeRef:
    """Where one episode's rows are: its shard and first row (its rows are contiguous)."""

    episode_id: str
    finished_at: float
    path: Path
    row: int
    num_steps: int
    order: tuple[int, int]  # (shard's first append, row): the store's order, for ties


@dataclass(frozen=True)
class _RowGroup:
    path: Path
    index: int
    start: int  # its first row in the shard
    order: int  # the shard's first append number
    finished: tuple[float, float]  # (min, max) finished_at; (-inf, inf) when not recorded
    versions: tuple[float, float]  # (min, max) policy_version


def retrying(query: Callable[[], T]) -> T:
    """``query()``, run again on a fresh listing if compaction deleted a shard it had listed."""
    for attempt in range(_RETRIES):
        try:
            return query()
        except FileNotFoundError:
            if attempt == _RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _stats(meta: pq.FileMetaData, group: int, column: int) -> tuple[float, float]:
    stats = meta.row_group(group).column(column).statistics
    if stats is None or not stats.has_min_max:
        return -math.inf, math.inf
    return float(stats.min), float(stats.max)


def _row_groups(store: EpisodeStore) -> list[_RowGroup]:
    out = []
    for path in store.shard_paths():
        meta = pq.read_metadata(path)
        names = [meta.schema.column(i).path for i in range(meta.num_columns)]  # leaf columns
        finished, version = names.index("finished_at"), names.index("policy_version")
        first = (parse_shard_name(path.name) or (-1, -1))[0]
        start = 0
        for g in range(meta.num_row_groups):
            out.append(_RowGroup(path, g, start, first, _stats(meta, g, finished),
                                 _stats(meta, g, version)))
            start += meta.row_group(g).num_rows
    return out


def _may_hold(group: _RowGroup, version: int | None) -> bool:
    return version is None or group.versions[0] <= version <= group.versions[1]


def _episode_starts(group: _RowGroup, version: int | None):
    """The rows (a table of _RANK_COLUMNS plus the row numbers) that start an episode."""
    table = pq.ParquetFile(group.path).read_row_group(group.index, columns=_RANK_COLUMNS)
    keep = pc.equal(table["step_index"], 0)
    if version is not None:
        keep = pc.and_(keep, pc.equal(table["policy_version"], version))
    rows = pc.indices_nonzero(keep)
    return table.take(rows), rows


def count_episodes(store: EpisodeStore, version: int | None = None) -> int:
    """Episodes in the store (of ``version`` only, when given): footers only, without a version."""
    if version is None:
        return store.num_episodes()

    def query() -> int:
        return sum(len(_episode_starts(g, version)[1]) for g in _row_groups(store)
                   if _may_hold(g, version))

    return retrying(query)


def extreme_episodes(
    store: EpisodeStore, k: int, *, newest: bool = True, version: int | None = None
) -> list[EpisodeRef]:
    """The ``k`` episodes that finished last (``newest``) or first, in finishing order (oldest
    first), of ``version`` only when given."""
    if k <= 0:
        return []

    def query() -> list[EpisodeRef]:
        sign = 1.0 if newest else -1.0
        groups = [g for g in _row_groups(store) if _may_hold(g, version)]
        # The bound of a row group: the best its episodes could rank (newest: its max finish).
        groups.sort(key=lambda g: -sign * (g.finished[1] if newest else g.finished[0]))
        best: list[tuple[float, tuple[int, int], EpisodeRef]] = []  # a k-heap, worst on top
        for g in groups:
            bound = sign * (g.finished[1] if newest else g.finished[0])
            if len(best) >= k and bound < best[0][0]:
                break  # neither this row group nor any after it can displace the k-th
            table, rows = _episode_starts(g, version)
            for r, ep_id, fin, n in zip(rows.to_pylist(), table["episode_id"].to_pylist(),
                                        table["finished_at"].to_pylist(),
                                        table["num_steps"].to_pylist()):
                order = (g.order, g.start + r)
                ref = EpisodeRef(ep_id, fin, g.path, g.start + r, n, order)
                rank = (sign * fin, order if newest else (-order[0], -order[1]))
                item = (rank[0], rank[1], ref)
                if len(best) < k:
                    heapq.heappush(best, item)
                elif item[:2] > best[0][:2]:
                    heapq.heapreplace(best, item)
        return sorted((ref for *_, ref in best), key=lambda ref: (ref.finished_at, ref.order))

    return retrying(query)


def find_by_prefix(store: EpisodeStore, prefix: str, version: int | None = None) -> list[EpisodeRef]:
    """The episodes whose id starts with ``prefix`` (reads the id column of the store)."""

    def query() -> list[EpisodeRef]:
        found = []
        for g in _row_groups(store):
            if not _may_hold(g, version):
                continue
            table, rows = _episode_starts(g, version)
            hits = pc.indices_nonzero(pc.starts_with(table["episode_id"], prefix))
            for h in hits.to_pylist():
                r = rows[h].as_py()
                found.append(EpisodeRef(table["episode_id"][h].as_py(),
                                        table["finished_at"][h].as_py(), g.path, g.start + r,
                                        table["num_steps"][h].as_py(), (g.order, g.start + r)))
        return found

    return retrying(query)


def read_episodes(store: EpisodeStore, refs: Sequence[EpisodeRef]) -> list[Episode]:
    """The whole episodes ``refs`` point at, in the order given (only their rows are read)."""
    by_path: dict[Path, list[int]] = defaultdict(list)
    for i, ref in enumerate(refs):
        by_path[ref.path].append(i)
    out: list[Episode | None] = [None] * len(refs)
    for path, indices in by_path.items():
        ranges = [(refs[i].row, refs[i].row + refs[i].num_steps) for i in indices]
        for i, table in zip(indices, store.read_rows(path, ranges)):
            out[i] = table_to_episodes(table)[0]
    return out  # type: ignore[return-value]
