"""The durable episode store: an append-only directory of Parquet shards, merged in tiers.

Layout::

    <root_dir>/episodes/shard-00000000-00000255-5e6f7a8b.parquet  # appends 0..255, merged
    <root_dir>/episodes/shard-00000256-00000271-0c1d2e3f.parquet  # appends 256..271, merged
    <root_dir>/episodes/shard-00000272-1f2e3d4c.parquet           # one append() = one shard
    <root_dir>/episodes/.tmp-shard-00000273-....parquet           # a write in flight (or a crash's)

Crash safety: a shard is written to a ``.tmp-`` file in the same directory, flushed and fsynced,
then renamed into place, and the directory is fsynced. A rename within one directory is atomic, so
a ``shard-*.parquet`` file is always complete; a kill -9 at any moment loses at most the append in
flight. Episodes never span appends, so every episode a reader sees is whole.

Compaction (``compact``, run by the replay actor after each append; compaction.py says which
shards) merges adjacent shards into one whose name records the range of appends it covers: the
merged file is written and renamed into place exactly like an append, and only then are its
sources deleted. Until they are (a kill -9 in between leaves them), a source is *covered*: every
reader here skips a shard inside a merged shard's range, so no episode is ever seen twice or lost,
and the next writable open deletes it. A reader that listed a source just before it was deleted
lists again and reads the merged shard instead.

Each shard's footer records the appends it holds (their numbers, rows and episodes, under
``META_KEY``), so counting the store reads footers, never columns; a merged shard's rows are its
appends' rows in order, in row groups of ``ROW_GROUP_ROWS``, so the newest decisions of a run are
read without reading the rest (``iter_appends``).

Reading it from outside (the Parquet files carry SCHEMA; one row per step)::

    pd.read_parquet("<root_dir>/episodes")              # pandas (pyarrow skips '.'-prefixed files)
    ray.data.read_parquet("<root_dir>/episodes")         # Ray Data (also skips '.' and '_' files)
    ray.data.read_parquet(EpisodeStore(root, read_only=True).shard_paths())   # an exact snapshot

A whole-directory read can see covered sources twice in the moment between a merge and their
deletion (or after a crash in that moment, until the writer reopens); ``shard_paths()`` never does.

Shards written by an older version of the code lack the columns added since (``ADDED_COLUMNS`` in
schema.py) and the footer record; ``read_table`` / ``to_pandas`` / ``episodes`` give the columns
their defaults, an old shard counts as one append, and merging it writes it out in today's schema.
An outside reader of a mixed store should pass the schema (``pd.read_parquet(dir,
schema=SCHEMA)``), or Arrow takes the columns of whichever file it opens first.

One writer per store: a writable open deletes leftover ``.tmp-`` files and covered sources, which
would break another live writer. Any number of read-only opens may run beside the writer.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from selfplay.atomic import fsync_dir
from selfplay.replay.compaction import (
    DEFAULT_FANOUT,
    DEFAULT_MAX_BYTES,
    ShardSpan,
    check_fanout,
    next_merge,
)
from selfplay.replay.schema import SCHEMA, episodes_to_table, table_to_episodes, upgrade
from selfplay.types import Episode

EPISODES_DIR = "episodes"
TMP_PREFIX = ".tmp-"
META_KEY = b"selfplay.appends"  # footer key: JSON [[append number, rows, episodes], ...]
ROW_GROUP_ROWS = 16384  # rows per row group of a merged shard (an append's shard is one group)
# shard-<first>[-<last>]-<random id>.parquet; at least 8 digits, so numbering never runs out.
_SHARD_RE = re.compile(r"^shard-(\d{8,})(?:-(\d{8,}))?-([0-9a-f]{8})\.parquet$")
_RETRIES = 5  # re-listings a read tries when compaction removed a file it had listed


@dataclass(frozen=True)
class AppendInfo:
    """One ``append`` call's rows inside a shard (a merged shard holds many, in order)."""

    seq: int
    rows: int
    episodes: int


@dataclass(frozen=True)
class ShardInfo:
    """Counts of one shard, read from its Parquet footer (shards are immutable, so cached)."""

    path: Path
    first: int  # the append numbers it covers, first..last
    last: int
    num_steps: int
    num_episodes: int
    appends: tuple[AppendInfo, ...]

    @property
    def seq(self) -> int:
        return self.first


def parse_shard_name(name: str) -> tuple[int, int] | None:
    """(first, last) append numbers a shard file covers; None for anything else (temps too)."""
    m = _SHARD_RE.match(name)
    if not m:
        return None
    first = int(m.group(1))
    return first, int(m.group(2)) if m.group(2) is not None else first


def live_and_covered(
    names: Sequence[tuple[int, int, Path]],
) -> tuple[list[tuple[int, int, Path]], list[Path]]:
    """Split (first, last, path) shards into the live ones (oldest first) and those a merged shard
    covers (a merge's sources not yet deleted): the widest shard starting at a number wins."""
    live, covered, reach = [], [], -1
    for first, last, path in sorted(names, key=lambda n: (n[0], -n[1])):
        if first <= reach:
            covered.append(path)
        else:
            live.append((first, last, path))
            reach = last
    return live, covered


def _appends_of(meta: pq.FileMetaData) -> tuple[AppendInfo, ...] | None:
    kv = meta.metadata or {}
    raw = kv.get(META_KEY)
    if raw is None:
        return None
    return tuple(AppendInfo(int(s), int(r), int(e)) for s, r, e in json.loads(raw))


def _conform(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    """``table`` (from any shard, old or new) as ``columns`` of SCHEMA, with their defaults."""
    return upgrade(table).select(list(columns))


class _RowReader:
    """Rows ``start .. stop`` of one shard, reading only the row groups that hold them."""

    def __init__(self, path: Path):
        self.file = pq.ParquetFile(path)
        meta = self.file.metadata
        self.starts = [0]
        for i in range(meta.num_row_groups):
            self.starts.append(self.starts[-1] + meta.row_group(i).num_rows)
        self.present = set(self.file.schema_arrow.names)

    def read(self, start: int, stop: int, columns: Sequence[str]) -> pa.Table:
        groups = [i for i in range(len(self.starts) - 1)
                  if self.starts[i] < stop and self.starts[i + 1] > start]
        if not groups:
            return SCHEMA.empty_table().select(list(columns))
        # A column the shard lacks (older code) is left to ``_conform``; read one it has, so
        # the row count survives even when every column asked for is a new one.
        present = [c for c in columns if c in self.present] or ["step_index"]
        table = self.file.read_row_groups(groups, columns=present)
        offset = start - self.starts[groups[0]]
        return _conform(table.slice(offset, stop - start), columns)


class EpisodeStore:
    """Append-only, crash-safe episode store under ``root_dir/episodes``."""

    def __init__(self, root_dir: str | os.PathLike[str], *, read_only: bool = False):
        self.root_dir = Path(root_dir)
        self.dir = self.root_dir / EPISODES_DIR
        self.read_only = read_only
        self._info: dict[Path, ShardInfo] = {}  # footer counts per completed shard
        self._sizes: dict[Path, int] = {}  # file sizes (for the compaction plan)
        if read_only:
            if not self.dir.is_dir():
                raise FileNotFoundError(f"no episode store at {self.dir} (expected a directory)")
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._remove_temp_files()
        names = self._list_names()
        if not read_only:
            self._remove(live_and_covered(names)[1])  # finish a merge a crash interrupted
        # Resume numbering after the highest completed shard (a crashed temp's number is reused:
        # its file was never a shard, and was just removed).
        self._next_seq = max((last for _, last, _ in names), default=-1) + 1

    # ---- writing

    def append(self, episodes: Sequence[Episode]) -> Path:
        """Write ``episodes`` as one new shard, atomically; returns the shard's path."""
        if self.read_only:
            raise PermissionError(f"episode store {self.dir} was opened read-only")
        if not episodes:
            raise ValueError("EpisodeStore.append needs at least one episode")
        table = episodes_to_table(episodes)
        seq = self._next_seq
        appends = (AppendInfo(seq, table.num_rows, len(episodes)),)
        table = table.replace_schema_metadata(_footer_record(appends))
        final = self._write_atomically(
            f"shard-{seq:08d}-{uuid.uuid4().hex[:8]}.parquet",
            lambda f: pq.write_table(table, f, compression="zstd"),
        )
        self._next_seq = seq + 1
        self._info[final] = ShardInfo(final, seq, seq, table.num_rows, len(episodes), appends)
        return final

    def _write_atomically(self, name: str, write: Callable[[BinaryIO], None]) -> Path:
        final = self.dir / name
        tmp = self.dir / f"{TMP_PREFIX}{name}"
        try:
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, final)
        except BaseException:
            # Leave no half-written temp behind when we can help it (a kill -9 cannot be helped;
            # the next writable open removes those).
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.dir)  # makes the rename itself durable, not only the file's bytes
        return final

    # ---- compaction

    def compact(
        self,
        fanout: int = DEFAULT_FANOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_merges: int | None = None,
    ) -> list[Path]:
        """Merge shards in tiers (compaction.py) until nothing is left to merge, or ``max_merges``
        merges are done; returns the merged shards written."""
        if self.read_only:
            raise PermissionError(f"episode store {self.dir} was opened read-only")
        check_fanout(fanout)
        merged: list[Path] = []
        while max_merges is None or len(merged) < max_merges:
            live = self._live()
            spans = [ShardSpan(first, last, self._size(path)) for first, last, path in live]
            run = next_merge(spans, fanout, max_bytes)
            if run is None:
                break
            sources = [self.shard_info(path) for _, _, path in live[run]]
            merged.append(self._merge(sources))
            self._remove([s.path for s in sources])
        return merged

    def _merge(self, sources: Sequence[ShardInfo]) -> Path:
        """Write ``sources`` (adjacent, oldest first) as one shard covering their range; they are
        left in place (covered), for the caller to delete once this has returned."""
        first, last = sources[0].first, sources[-1].last
        appends = tuple(a for s in sources for a in s.appends)
        schema = SCHEMA.with_metadata(_footer_record(appends))

        def write(f: BinaryIO) -> None:
            # Streamed source by source, so memory holds about one row group, whatever the size.
            with pq.ParquetWriter(f, schema, compression="zstd") as writer:
                pending: list[pa.Table] = []
                rows = 0
                for source in sources:
                    file = pq.ParquetFile(source.path)
                    for i in range(file.num_row_groups):
                        part = _conform(file.read_row_group(i), SCHEMA.names).cast(SCHEMA)
                        pending.append(part)
                        rows += part.num_rows
                        if rows >= ROW_GROUP_ROWS:
                            whole = pa.concat_tables(pending)
                            cut = rows - rows % ROW_GROUP_ROWS
                            writer.write_table(whole.slice(0, cut), row_group_size=ROW_GROUP_ROWS)
                            pending, rows = [whole.slice(cut)], rows - cut
                if rows:
                    writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)

        final = self._write_atomically(
            f"shard-{first:08d}-{last:08d}-{uuid.uuid4().hex[:8]}.parquet", write
        )
        self._info[final] = ShardInfo(
            final, first, last, sum(a.rows for a in appends), sum(a.episodes for a in appends),
            appends,
        )
        return final

    def _remove(self, paths: Sequence[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)
            self._info.pop(path, None)
            self._sizes.pop(path, None)
        if paths:
            fsync_dir(self.dir)

    # ---- listing

    def _remove_temp_files(self) -> None:
        for p in self.dir.iterdir():
            if p.name.startswith(TMP_PREFIX):
                p.unlink(missing_ok=True)

    def _list_names(self) -> list[tuple[int, int, Path]]:
        out = []
        for p in self.dir.iterdir():
            span = parse_shard_name(p.name)
            if span is not None:  # '.tmp-' files and anything foreign are not shards
                out.append((span[0], span[1], p))
        return out

    def _live(self) -> list[tuple[int, int, Path]]:
        return live_and_covered(self._list_names())[0]

    def _size(self, path: Path) -> int:
        size = self._sizes.get(path)
        if size is None:
            size = self._sizes[path] = path.stat().st_size
        return size

    def shard_paths(self) -> list[Path]:
        """Live shards, oldest first (a consistent snapshot of what is committed now): every
        episode is in exactly one of them."""
        return [p for _, _, p in self._live()]

    def latest_shards(self, n: int) -> list[Path]:
        """The ``n`` newest live shards, oldest first."""
        if n <= 0:
            return []
        return self.shard_paths()[-n:]

    def shard_info(self, path: Path) -> ShardInfo:
        """Step, episode and append counts of one shard (from its footer; cached)."""
        info = self._info.get(path)
        if info is None:
            meta = pq.read_metadata(path)
            span = parse_shard_name(path.name) or (-1, -1)
            appends = _appends_of(meta)
            if appends is None:
                # A shard from before the footer record: one append. Each episode has exactly one
                # row with step_index 0; count them with a one-column read (once per shard).
                first = pq.read_table(path, columns=["step_index"]).column(0)
                n_eps = int(pc.sum(pc.equal(first, 0)).as_py() or 0)
                appends = (AppendInfo(span[0], meta.num_rows, n_eps),)
            info = ShardInfo(path, span[0], span[1], meta.num_rows,
                             sum(a.episodes for a in appends), appends)
            self._info[path] = info
        return info

    def num_shards(self) -> int:
        return len(self._live())

    def num_steps(self) -> int:
        return self._retrying(lambda: sum(self.shard_info(p).num_steps for p in self.shard_paths()))

    def num_episodes(self) -> int:
        return self._retrying(
            lambda: sum(self.shard_info(p).num_episodes for p in self.shard_paths()))

    def _retrying(self, read: Callable[[], object]):
        """``read()`` over a fresh listing, again if compaction removed a file it had listed."""
        for attempt in range(_RETRIES):
            try:
                return read()
            except FileNotFoundError:
                if attempt == _RETRIES - 1:
                    raise

    # ---- reading

    def read_table(
        self,
        columns: Sequence[str] | None = None,
        min_version: int | None = None,
        shards: Sequence[Path] | None = None,
        version: int | None = None,
    ) -> pa.Table:
        """Rows of the live shards (or of ``shards``), oldest first, as one table.

        ``min_version`` keeps the episodes played by ``policy_version >= min_version``, and
        ``version`` those played by exactly that version (both pushed into the scan).
        """
        cols = list(columns) if columns is not None else list(SCHEMA.names)
        unknown = [c for c in cols if c not in SCHEMA.names]
        if unknown:
            raise ValueError(f"unknown episode-store columns {unknown}; known: {SCHEMA.names}")
        flt = None
        if min_version is not None:
            flt = pads.field("policy_version") >= min_version
        if version is not None:
            exact = pads.field("policy_version") == version
            flt = exact if flt is None else flt & exact

        def read(paths: Sequence[Path]) -> pa.Table:
            if not paths:
                return SCHEMA.empty_table().select(cols)
            dataset = pads.dataset([str(p) for p in paths], schema=SCHEMA, format="parquet")
            # A dataset built from a list of files returns rows in that order from to_table
            # (Arrow's dataset docs), so episodes stay contiguous and shards oldest first. A shard
            # written before a column existed gives it as nulls; ``upgrade`` gives the default.
            return upgrade(dataset.to_table(columns=cols, filter=flt)).select(cols)

        if shards is not None:
            return read(list(shards))
        return self._retrying(lambda: read(self.shard_paths()))

    def to_pandas(self, columns: Sequence[str] | None = None, min_version: int | None = None):
        """The store as a pandas DataFrame (one row per step)."""
        return self.read_table(columns, min_version).to_pandas()

    def iter_appends(
        self, columns: Sequence[str] | None = None, newest_first: bool = False
    ) -> Iterator[tuple[AppendInfo, pa.Table]]:
        """Each append's rows as one table (``columns`` of SCHEMA, default all), in append order
        or newest first, reading a shard's row groups only as the iteration reaches them.

        A snapshot of the live shards when the iteration starts; should compaction delete one
        before it is opened, the iteration goes on from the shard that now covers its appends.
        """
        cols = list(columns) if columns is not None else list(SCHEMA.names)
        done: set[int] = set()  # appends already yielded
        for attempt in range(_RETRIES):
            live = self._live()
            if newest_first:
                live = live[::-1]
            try:
                for _, _, path in live:
                    info = self.shard_info(path)
                    pending = [a for a in info.appends if a.seq not in done]
                    if not pending:
                        continue
                    reader = _RowReader(path)  # open now: a deleted file stays readable once open
                    yield from self._appends_of_shard(reader, info, cols, done, newest_first)
                return
            except FileNotFoundError:
                if attempt == _RETRIES - 1:
                    raise

    @staticmethod
    def _appends_of_shard(
        reader: _RowReader, info: ShardInfo, cols: list[str], done: set[int], newest_first: bool
    ) -> Iterator[tuple[AppendInfo, pa.Table]]:
        starts, row = [], 0
        for a in info.appends:
            starts.append(row)
            row += a.rows
        order = list(range(len(info.appends)))
        if newest_first:
            order.reverse()
        # Read blocks of about ROW_GROUP_ROWS rows, then cut them into appends, so a row group is
        # decoded about once however small its appends.
        block: list[int] = []
        block_rows = 0
        for i in order + [None]:  # None flushes the last block
            if i is not None:
                if info.appends[i].seq in done:
                    continue
                block.append(i)
                block_rows += info.appends[i].rows
                if block_rows < ROW_GROUP_ROWS:
                    continue
            if not block:
                continue
            lo, hi = min(block), max(block)
            table = reader.read(starts[lo], starts[hi] + info.appends[hi].rows, cols)
            for j in block:
                a = info.appends[j]
                done.add(a.seq)
                yield a, table.slice(starts[j] - starts[lo], a.rows)
            block, block_rows = [], 0

    def read_rows(
        self, path: Path, ranges: Sequence[tuple[int, int]], columns: Sequence[str] | None = None
    ) -> list[pa.Table]:
        """Rows ``start .. stop`` of shard ``path`` for each range (``columns`` of SCHEMA, default
        all), reading only the row groups that hold them; ranges close together share a read."""
        cols = list(columns) if columns is not None else list(SCHEMA.names)
        reader = _RowReader(path)
        out: list[pa.Table | None] = [None] * len(ranges)
        order = sorted(range(len(ranges)), key=lambda i: ranges[i])
        i = 0
        while i < len(order):
            j, lo, hi = i, ranges[order[i]][0], ranges[order[i]][1]
            while j + 1 < len(order) and ranges[order[j + 1]][0] - hi < ROW_GROUP_ROWS:
                j += 1
                hi = max(hi, ranges[order[j]][1])
            table = reader.read(lo, hi, cols)
            for k in order[i : j + 1]:
                start, stop = ranges[k]
                out[k] = table.slice(start - lo, stop - start)
            i = j + 1
        return out  # type: ignore[return-value]

    def episodes(
        self, min_version: int | None = None, shards: Sequence[Path] | None = None
    ) -> Iterator[Episode]:
        """Yield whole episodes, oldest first, reading about one row group at a time."""
        if shards is not None:
            for path in shards:
                yield from table_to_episodes(self.read_table(min_version=min_version, shards=[path]))
            return
        for _, table in self.iter_appends():
            if min_version is not None:
                table = table.filter(pc.greater_equal(table["policy_version"], min_version))
            yield from table_to_episodes(table)

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.root_dir)!r}, shards={self.num_shards()})"


def _footer_record(appends: Sequence[AppendInfo]) -> dict[bytes, bytes]:
    return {META_KEY: json.dumps([[a.seq, a.rows, a.episodes] for a in appends]).encode()}
