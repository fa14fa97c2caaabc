"""Which episode shards to merge: size-tiered compaction, as a pure plan over shard names and sizes.

Every ``append`` writes one small shard (one play call), which at a demo's rate is more than a
million files a week. The store merges them in tiers, as an LSM tree does: a shard's *level* is
how many times ``fanout`` divides the number of appends it covers (an append's own shard is level
0; ``fanout`` level-0 shards merge into one of level 1, ``fanout`` of those into one of level 2,
...). Each episode is rewritten once per level (log_fanout of the appends), and the directory
holds at most ``fanout - 1`` shards per level plus the few that are too big to merge: a run of
shards whose files add up to more than ``max_bytes`` is left as it is, so no merged file grows
past ``max_bytes``.

Only *adjacent* shards merge, so a merged shard covers one contiguous range of append numbers and
its name can say which (``shard-<first>-<last>-<id>.parquet``); readers skip any shard inside a
range that a merged shard covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

DEFAULT_FANOUT = 16
DEFAULT_MAX_BYTES = 256 * 2**20  # 256 MiB: a merged shard stays quick to open and to rewrite


@dataclass(frozen=True)
class ShardSpan:
    """What the plan needs of one live shard: the appends it covers and its file's size."""

    first: int  # the append number of its oldest episodes
    last: int  # the append number of its newest (== first for an append's own shard)
    size: int  # bytes on disk


def check_fanout(fanout: int) -> int:
    """``fanout`` itself when it is 0 (never merge) or at least 2; a ValueError otherwise."""
    if fanout != 0 and fanout < 2:
        raise ValueError(
            f"replay compaction fanout must be 0 (never merge) or at least 2, got {fanout}"
        )
    return fanout


def level(span: ShardSpan, fanout: int) -> int:
    """How many times ``fanout`` divides the number of appends ``span`` covers (rounded down)."""
    appends, out = span.last - span.first + 1, 0
    while appends >= fanout:
        appends //= fanout
        out += 1
    return out


def next_merge(
    shards: Sequence[ShardSpan], fanout: int = DEFAULT_FANOUT, max_bytes: int = DEFAULT_MAX_BYTES
) -> slice | None:
    """The oldest run of ``fanout`` adjacent shards of one level that fit ``max_bytes`` together.

    ``shards`` are the live shards, oldest first. Returns the run as a slice of ``shards``, or
    None when there is nothing to merge (or ``fanout`` is 0). Oldest first, so a store written
    before compaction existed (one shard per append, thousands of them) is digested from its start
    a few merges per call, while new appends keep merging at the end.
    """
    if check_fanout(fanout) == 0 or len(shards) < fanout:
        return None
    levels = [level(s, fanout) for s in shards]
    for start in range(len(shards) - fanout + 1):
        run = shards[start : start + fanout]
        if len(set(levels[start : start + fanout])) != 1:
            continue
        if any(b.first != a.last + 1 for a, b in pairwise(run)):
            continue  # a gap in the numbering (a shard removed by hand): not one range
        if sum(s.size for s in run) > max_bytes:
            continue
        return slice(start, start + fanout)
    return None
