"""The durable episode store: an append-only directory of Parquet shards.

Layout::

    <root_dir>/episodes/shard-00000000-1f2e3d4c.parquet   # one append() = one shard
    <root_dir>/episodes/shard-00000001-9a8b7c6d.parquet
    <root_dir>/episodes/.tmp-shard-00000002-....parquet   # a write in flight (or a crash's leftover)

Crash safety: a shard is written to a ``.tmp-`` file in the same directory, flushed and fsynced,
then renamed into place, and the directory is fsynced. A rename within one directory is atomic, so
a ``shard-*.parquet`` file is always complete; a kill -9 at any moment loses at most the append in
flight. Episodes never span shards, so every episode a reader sees is whole.

Reading it from outside (the Parquet files carry SCHEMA; one row per step)::

    pd.read_parquet("<root_dir>/episodes")              # pandas (pyarrow skips '.'-prefixed files)
    ray.data.read_parquet("<root_dir>/episodes")         # Ray Data (also skips '.' and '_' files)
    ray.data.read_parquet(EpisodeStore(root, read_only=True).shard_paths())   # an exact snapshot

Shards written by an older version of the code lack the columns added since (``ADDED_COLUMNS`` in
schema.py); ``read_table`` / ``to_pandas`` / ``episodes`` give them their defaults. An outside
reader of a mixed store should pass the schema (``pd.read_parquet(dir, schema=SCHEMA)``), or
Arrow takes the columns of whichever file it opens first.

One writer per store: a writable open deletes leftover ``.tmp-`` files, which would break another
live writer's append. Any number of read-only opens may run beside the writer.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from selfplay.atomic import fsync_dir
from selfplay.replay.schema import SCHEMA, episodes_to_table, table_to_episodes, upgrade
from selfplay.types import Episode

EPISODES_DIR = "episodes"
TMP_PREFIX = ".tmp-"
_SHARD_RE = re.compile(r"^shard-(\d{8})-([0-9a-f]{8})\.parquet$")


@dataclass(frozen=True)
class ShardInfo:
    """Counts of one shard, read from its Parquet footer (shards are immutable, so cached)."""

    path: Path
    seq: int
    num_steps: int
    num_episodes: int


class EpisodeStore:
    """Append-only, crash-safe episode store under ``root_dir/episodes``."""

    def __init__(self, root_dir: str | os.PathLike[str], *, read_only: bool = False):
        self.root_dir = Path(root_dir)
        self.dir = self.root_dir / EPISODES_DIR
        self.read_only = read_only
        self._info: dict[Path, ShardInfo] = {}  # footer counts per completed shard
        if read_only:
            if not self.dir.is_dir():
                raise FileNotFoundError(f"no episode store at {self.dir} (expected a directory)")
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._remove_temp_files()
        # Resume numbering after the highest completed shard (a crashed temp's number is reused:
        # its file was never a shard, and was just removed).
        shards = self._list_shards()
        self._next_seq = (shards[-1][0] + 1) if shards else 0

    # ---- writing

    def append(self, episodes: Sequence[Episode]) -> Path:
        """Write ``episodes`` as one new shard, atomically; returns the shard's path."""
        if self.read_only:
            raise PermissionError(f"episode store {self.dir} was opened read-only")
        if not episodes:
            raise ValueError("EpisodeStore.append needs at least one episode")
        table = episodes_to_table(episodes)
        seq = self._next_seq
        name = f"shard-{seq:08d}-{uuid.uuid4().hex[:8]}.parquet"
        final = self.dir / name
        tmp = self.dir / f"{TMP_PREFIX}{name}"
        try:
            with open(tmp, "wb") as f:
                pq.write_table(table, f, compression="zstd")
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, final)
        except BaseException:
            # Leave no half-written temp behind when we can help it (a kill -9 cannot be helped;
            # the next writable open removes those).
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.dir)  # makes the rename itself durable, not only the file's bytes
        self._next_seq = seq + 1
        n_eps = len(episodes)
        self._info[final] = ShardInfo(final, seq, table.num_rows, n_eps)
        return final

    # ---- listing

    def _remove_temp_files(self) -> None:
        for p in self.dir.iterdir():
            if p.name.startswith(TMP_PREFIX):
                p.unlink(missing_ok=True)

    def _list_shards(self) -> list[tuple[int, Path]]:
        out = []
        for p in self.dir.iterdir():
            m = _SHARD_RE.match(p.name)
            if m:  # '.tmp-' files and anything foreign are not shards
                out.append((int(m.group(1)), p))
        out.sort()
        return out

    def shard_paths(self) -> list[Path]:
        """Completed shards, oldest first (a consistent snapshot of what is committed now)."""
        return [p for _, p in self._list_shards()]

    def latest_shards(self, n: int) -> list[Path]:
        """The ``n`` newest completed shards, oldest first."""
        if n <= 0:
            return []
        return self.shard_paths()[-n:]

    def shard_info(self, path: Path) -> ShardInfo:
        """Step and episode counts of one shard (from its footer; cached)."""
        info = self._info.get(path)
        if info is None:
            meta = pq.read_metadata(path)
            m = _SHARD_RE.match(path.name)
            seq = int(m.group(1)) if m else -1
            # Each episode has exactly one row with step_index 0; count them from the footer's
            # row count and a one-column read (cheap, and done once per immutable shard).
            first = pq.read_table(path, columns=["step_index"]).column(0)
            n_eps = int(pc.sum(pc.equal(first, 0)).as_py() or 0)
            info = ShardInfo(path, seq, meta.num_rows, n_eps)
            self._info[path] = info
        return info

    def num_shards(self) -> int:
        return len(self._list_shards())

    def num_steps(self) -> int:
        return sum(self.shard_info(p).num_steps for p in self.shard_paths())

    def num_episodes(self) -> int:
        return sum(self.shard_info(p).num_episodes for p in self.shard_paths())

    # ---- reading

    def read_table(
        self,
        columns: Sequence[str] | None = None,
        min_version: int | None = None,
        shards: Sequence[Path] | None = None,
    ) -> pa.Table:
        """Rows of the completed shards (or of ``shards``), oldest first, as one table.

        ``min_version`` keeps the episodes played by ``policy_version >= min_version``.
        """
        paths = list(self.shard_paths() if shards is None else shards)
        cols = list(columns) if columns is not None else list(SCHEMA.names)
        unknown = [c for c in cols if c not in SCHEMA.names]
        if unknown:
            raise ValueError(f"unknown episode-store columns {unknown}; known: {SCHEMA.names}")
        if not paths:
            return SCHEMA.empty_table().select(cols)
        dataset = pads.dataset([str(p) for p in paths], schema=SCHEMA, format="parquet")
        flt = None if min_version is None else (pads.field("policy_version") >= min_version)
        # A dataset built from a list of files returns rows in that order from to_table (Arrow's
        # dataset docs), so episodes stay contiguous and shards oldest first. A shard written
        # before a column existed gives it as nulls; ``upgrade`` turns those into its default.
        return upgrade(dataset.to_table(columns=cols, filter=flt)).select(cols)

    def to_pandas(self, columns: Sequence[str] | None = None, min_version: int | None = None):
        """The store as a pandas DataFrame (one row per step)."""
        return self.read_table(columns, min_version).to_pandas()

    def episodes(
        self, min_version: int | None = None, shards: Sequence[Path] | None = None
    ) -> Iterator[Episode]:
        """Yield whole episodes, oldest shard first, reading one shard at a time."""
        for path in self.shard_paths() if shards is None else shards:
            yield from table_to_episodes(self.read_table(min_version=min_version, shards=[path]))

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.root_dir)!r}, shards={self.num_shards()})"
