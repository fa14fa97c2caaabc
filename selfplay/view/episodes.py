"""The episodes of a run, for the viewer: an index with one row per episode, the queries over it,
and whole episodes read on demand.

The store can hold millions of rows, and the viewer never loads them. It keeps an index of the
episode-level fields (the step-0 row of each episode, plus whether it is a game's), built one
append at a time: the live shards (``EpisodeStore.shard_paths``) and the appends each one holds
(its footer, ``shard_info``) say where every append's rows are, so a refresh reads only the
appends that appeared since. When the store's compaction merges shards, the merged shard covers
the appends of its sources: their index rows stay as they are and only point at the merged file.
A writer's ``.tmp-`` file is not a shard and is never read, so a half-written append is invisible
until it is whole. Filtering, sorting and paging run on that index in Arrow (milliseconds for
200,000 episodes); one episode is read from its own rows (``listing.read_episodes``), and a read
that finds its shard deleted by a merge lists the store again and reads the merged one.

Nothing here writes: the store is opened read-only, and a run directory with no ``episodes/``
yet (a run that has just started) reads as empty until the first shard lands.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from selfplay.replay.listing import EpisodeRef, read_episodes, retrying
from selfplay.replay.schema import SCHEMA, upgrade
from selfplay.replay.store import EPISODES_DIR, AppendInfo, EpisodeStore, parse_shard_name
from selfplay.types import Episode

# The episode-level columns the index keeps (the step-level ones are read per episode).
INDEX_FIELDS = ("episode_id", "env_id", "seed", "policy_version", "outcome", "started_at",
                "finished_at", "actor", "group_id", "num_steps", "info")
# What the index reads of each new append (its step-0 rows are kept).
_READ_COLUMNS = [*INDEX_FIELDS, "step_index", "legal_actions"]
READ_RETRIES = 5  # fresh listings an episode read tries when compaction moved it
# What a listing may be sorted by: query name -> index column.
SORTS = {"finished": "finished_at", "started": "started_at", "outcome": "outcome",
         "length": "num_steps", "version": "policy_version"}
MAX_PAGE_SIZE = 500
# What the comparison page reads of each decision at a position.
POSITION_COLUMNS = ("episode_id", "env_id", "policy_version", "outcome", "step_index", "num_steps",
                    "observation", "action", "player", "legal_actions", "search_actions",
                    "search_visits", "search_priors", "search_q", "root_value", "simulations",
                    "group_id", "token_ids", "token_logprobs", "token_version", "info")
FACET_LIMIT = 30


class QueryError(ValueError):
    """A query parameter that cannot be read; the message names the parameter."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param = param


class EpisodeNotFound(LookupError):
    pass


# ---------------------------------------------------------------------------------------------
# The query: what the episodes page filters on, read from (and written back to) its URL


def parse_time(text: str) -> float:
    """Unix seconds from a number or an ISO date/time (a naive one is local time, as a browser's
    ``datetime-local`` field gives it)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"{text!r} is neither unix seconds nor an ISO date/time "
                         "(e.g. 2026-11-01T14:30)") from None


@dataclass(frozen=True)
class EpisodeQuery:
    """Filters over the episode index (None: no filter on that field) and the listing order."""

    env: str | None = None  # env_id, exactly
    version_min: int | None = None  # policy_version range, inclusive
    version_max: int | None = None
    outcome_min: float | None = None  # games: player 0's outcome; tasks: the reward
    outcome_max: float | None = None
    length_min: int | None = None  # steps, inclusive
    length_max: int | None = None
    actor: str | None = None  # the rollout actor that played it, exactly
    group: str | None = None  # group_id (the k samples of one problem), exactly
    since: float | None = None  # finished at or after (unix seconds)
    until: float | None = None  # finished at or before
    sort: str = "finished"  # a key of SORTS
    order: str = "desc"  # asc | desc

    _INTS = ("version_min", "version_max", "length_min", "length_max")
    _FLOATS = ("outcome_min", "outcome_max")
    _TIMES = ("since", "until")
    _TEXTS = ("env", "actor", "group")

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> EpisodeQuery:
        """Read a query string's parameters (an empty field is no filter; ``version=V`` is
        ``version_min=version_max=V``); raises QueryError naming a bad parameter."""
        values: dict[str, Any] = {}

        def get(name: str) -> str | None:
            value = params.get(name)
            return value.strip() if value is not None and value.strip() != "" else None

        for name in cls._TEXTS:
            if (v := get(name)) is not None:
                values[name] = v
        for name in cls._INTS:
            if (v := get(name)) is not None:
                try:
                    values[name] = int(v)
                except ValueError:
                    raise QueryError(name, f"{v!r} is not a whole number") from None
        if (v := get("version")) is not None:
            try:
                values["version_min"] = values["version_max"] = int(v)
            except ValueError:
                raise QueryError("version", f"{v!r} is not a whole number") from None
        for name in cls._FLOATS:
            if (v := get(name)) is not None:
                try:
                    values[name] = float(v)
                except ValueError:
                    raise QueryError(name, f"{v!r} is not a number") from None
                if math.isnan(values[name]):
                    raise QueryError(name, "NaN is not a bound")
        for name in cls._TIMES:
            if (v := get(name)) is not None:
                try:
                    values[name] = parse_time(v)
                except ValueError as err:
                    raise QueryError(name, str(err)) from None
        if (v := get("sort")) is not None:
            if v not in SORTS:
                raise QueryError("sort", f"{v!r}; expected one of {', '.join(SORTS)}")
            values["sort"] = v
        if (v := get("order")) is not None:
            if v not in ("asc", "desc"):
                raise QueryError("order", f"{v!r}; expected asc or desc")
            values["order"] = v
        return cls(**values)

    def to_params(self) -> dict[str, str]:
        """The query string that reads back as this query (defaults left out)."""
        out: dict[str, str] = {}
        default = EpisodeQuery()
        for f in fields(self):
            value = getattr(self, f.name)
            if value == getattr(default, f.name):
                continue
            out[f.name] = repr(value) if isinstance(value, float) else str(value)
        return out

    def without(self, *names: str) -> EpisodeQuery:
        return replace(self, **{n: getattr(EpisodeQuery(), n) for n in names})

    def mask(self, table: pa.Table) -> pa.ChunkedArray | None:
        """Which rows of the index the filters keep (None: all of them)."""
        parts = []
        for name, column in (("env", "env_id"), ("actor", "actor"), ("group", "group_id")):
            if getattr(self, name) is not None:
                parts.append(pc.equal(table[column], getattr(self, name)))
        bounds = (("version", "policy_version"), ("outcome", "outcome"), ("length", "num_steps"),
                  ("time", "finished_at"))
        for name, column in bounds:
            low, high = ((self.since, self.until) if name == "time" else
                         (getattr(self, f"{name}_min"), getattr(self, f"{name}_max")))
            if low is not None:
                parts.append(pc.greater_equal(table[column], low))
            if high is not None:
                parts.append(pc.less_equal(table[column], high))
        if not parts:
            return None
        mask = parts[0]
        for part in parts[1:]:
            mask = pc.and_(mask, part)
        return mask


# ---------------------------------------------------------------------------------------------
# The index


def _info_fields(info: str) -> dict[str, str]:
    try:
        value = json.loads(info)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def index_row(row: dict[str, Any]) -> dict[str, Any]:
    """One index row as the listing shows it (and its JSON twin gives it)."""
    info = _info_fields(row.pop("info", "{}"))
    row.pop("append", None)
    row.pop("row", None)
    row["kind"] = "game" if row.pop("game") else "text"
    row["termination"] = str(info.get("termination", ""))
    if "correct" in info:
        row["correct"] = str(info["correct"])
    return row


@dataclass
class EpisodePage:
    """One page of a filtered, sorted listing."""

    query: EpisodeQuery
    total: int  # episodes in the run
    matching: int  # episodes the filters keep
    offset: int
    limit: int
    rows: list[dict[str, Any]]
    facets: dict[str, list[tuple[Any, int]]] = field(default_factory=dict)


class EpisodeIndex:
    """One row per episode of a run's store, kept up to date append by append (thread-safe)."""

    def __init__(self, run_dir: str | Path, *, refresh_s: float = 1.0):
        self.run_dir = Path(run_dir)
        self.refresh_s = refresh_s  # at most one listing of the store's directory per period
        self._store: EpisodeStore | None = None
        # Where each append indexed so far lives now: append number -> (live shard, first row).
        self._where: dict[int, tuple[Path, int]] = {}
        self._table: pa.Table | None = None
        self._listed: list[Path] = []  # the live shards at the last update
        self._listed_at = -math.inf
        self._lock = threading.RLock()
        self.rows_read = 0  # store rows read into the index so far (a merge adds none)

    # -- keeping it current --------------------------------------------------------------------

    def table(self, fresh: bool = False) -> pa.Table:
        """The index now: every episode of every live shard (``append`` and ``row`` say where its
        rows are). Lists the store at most once per ``refresh_s`` (``fresh``: now)."""
        with self._lock:
            now = time.monotonic()
            if fresh or self._table is None or now - self._listed_at >= self.refresh_s:
                self._listed_at = now
                self._update()
            return self._table

    def shard_paths(self) -> list[Path]:
        with self._lock:
            self.table()
            return sorted({path for path, _ in self._where.values()},
                          key=lambda p: parse_shard_name(p.name) or (-1, -1))

    def _update(self) -> None:
        if self._table is None:
            self._table = _empty_index()
        if self._store is None:
            if not (self.run_dir / EPISODES_DIR).is_dir():
                return  # a run that has not written its first episode yet
            self._store = EpisodeStore(self.run_dir, read_only=True)
        retrying(self._update_once)  # compaction may delete a shard between listing and reading

    def _update_once(self) -> None:
        """Read the appends not indexed yet; a merged shard's appends that were indexed from its
        sources are not read again, only found in their new place. Changes nothing on error."""
        store = self._store
        listed = store.shard_paths()
        if listed == self._listed:
            return  # shards are immutable: the same names hold the same rows
        where: dict[int, tuple[Path, int]] = {}
        shards = []
        for path in listed:
            info = store.shard_info(path)  # from the footer; raises if the file just vanished
            row = 0
            for a in info.appends:
                where[a.seq] = (path, row)
                row += a.rows
            shards.append((path, info))
        known, table = self._where, self._table
        if self._replaced(where):
            known, table = {}, _empty_index()  # a new run in the same place: start over
        parts = []
        for path, info in shards:
            todo = [(a, where[a.seq][1]) for a in info.appends if a.seq not in known]
            if todo:
                parts.append(self._read_appends(store, path, todo))
        self._where, self._listed = where, listed
        if parts or table is not self._table:
            self._table = pa.concat_tables([table, *parts]).combine_chunks()

    def _replaced(self, where: dict[int, tuple[Path, int]]) -> bool:
        """Whether the store was replaced since the last update: an indexed append is gone, or a
        shard that vanished was not merged into a wider one (only a merge removes a shard)."""
        if any(seq not in where for seq in self._where):
            return True
        live = {path for path, _ in where.values()}
        for old in {path for path, _ in self._where.values()} - live:
            was = parse_shard_name(old.name) or (-1, -1)
            now = parse_shard_name(where[was[0]][0].name) or (-1, -1)
            if not (now[0] <= was[0] and now[1] >= was[1] and now[1] - now[0] > was[1] - was[0]):
                return True
        return False

    def _read_appends(self, store: EpisodeStore, path: Path,
                      todo: list[tuple[AppendInfo, int]]) -> pa.Table:
        """The index rows of the appends ``todo`` ((append, first row) of shard ``path``), in
        one read of the rows they span."""
        lo = min(start for _, start in todo)
        hi = max(start + a.rows for a, start in todo)
        rows = store.read_rows(path, [(lo, hi)], columns=_READ_COLUMNS)[0]
        self.rows_read += rows.num_rows
        seq = np.full(hi - lo, -1, np.int64)
        offset = np.zeros(hi - lo, np.int32)
        for a, start in todo:
            seq[start - lo:start - lo + a.rows] = a.seq
            offset[start - lo:start - lo + a.rows] = np.arange(a.rows, dtype=np.int32)
        keep = pc.and_(pa.array(seq >= 0), pc.equal(rows["step_index"], 0))
        picked = pc.indices_nonzero(keep)
        t = rows.take(picked)
        t = t.append_column("game", pc.is_valid(t["legal_actions"]))
        t = t.append_column("append", pa.array(seq).take(picked))
        t = t.append_column("row", pa.array(offset).take(picked))
        return t.select(_empty_index().schema.names).cast(_empty_index().schema)

    # -- listing -------------------------------------------------------------------------------

    def versions(self) -> list[int]:
        return sorted(pc.unique(self.table()["policy_version"]).to_pylist())

    def envs(self) -> list[str]:
        return sorted(pc.unique(self.table()["env_id"]).to_pylist())

    def _matching(self, query: EpisodeQuery) -> tuple[pa.Table, pa.Array | None]:
        """The index and the positions of the rows the query keeps (None: every row). Only
        positions move around until a page is taken: the index's columns are never copied."""
        table = self.table()
        mask = query.mask(table)
        if mask is None:
            return table, None
        return table, pc.indices_nonzero(mask)

    @staticmethod
    def _ordered(table: pa.Table, positions: pa.Array | None, query: EpisodeQuery) -> pa.Array:
        """``positions`` (or every row) in the listing's order."""
        order = "descending" if query.order == "desc" else "ascending"
        columns = [SORTS[query.sort]] + (["finished_at"] if query.sort != "finished" else [])
        keys = table.select(columns)
        if positions is not None:
            keys = keys.take(positions)
        # Stable: equal keys keep the store's order (oldest shard first).
        order_idx = pc.sort_indices(keys, sort_keys=[(c, order) for c in columns])
        return order_idx if positions is None else positions.take(order_idx)

    @staticmethod
    def _count(table: pa.Table, positions: pa.Array | None) -> int:
        return table.num_rows if positions is None else len(positions)

    def page(self, query: EpisodeQuery, offset: int = 0, limit: int = 50,
             facets: bool = True) -> EpisodePage:
        """Rows ``offset .. offset+limit`` of the listing that ``query`` filters and sorts."""
        if limit < 1 or limit > MAX_PAGE_SIZE:
            raise QueryError("size", f"{limit}; expected 1 .. {MAX_PAGE_SIZE}")
        if offset < 0:
            raise QueryError("page", "must be 1 or more")
        table, positions = self._matching(query)
        shown = self._ordered(table, positions, query)[offset:offset + limit]
        rows = [index_row(r) for r in table.take(shown).to_pylist()]
        page = EpisodePage(query, table.num_rows, self._count(table, positions), offset, limit,
                           rows)
        if facets:
            page.facets = self.facets(query)
        return page

    def facets(self, query: EpisodeQuery) -> dict[str, list[tuple[Any, int]]]:
        """Per facet (env, version, actor), its values and counts among the episodes that the
        query's *other* filters keep, as datasette does: choosing one value shows the others."""
        out: dict[str, list[tuple[Any, int]]] = {}
        for name, column, clear in (("env", "env_id", ("env",)),
                                    ("version", "policy_version", ("version_min", "version_max")),
                                    ("actor", "actor", ("actor",))):
            table, positions = self._matching(query.without(*clear))
            values = table[column] if positions is None else table[column].take(positions)
            counts = pc.value_counts(values).to_pylist()
            pairs = [(c["values"], int(c["counts"])) for c in counts]
            if name == "version":
                pairs.sort(key=lambda p: p[0])
            else:
                pairs.sort(key=lambda p: (-p[1], str(p[0])))
            out[name] = pairs[:FACET_LIMIT]
        return out

    def neighbours(self, query: EpisodeQuery, episode_id: str) -> dict[str, Any]:
        """The episode's place in the listing: its position, and the ids before and after it."""
        table, positions = self._matching(query)
        ordered = self._ordered(table, positions, query)
        hit = pc.indices_nonzero(pc.equal(table["episode_id"], episode_id))
        matching = self._count(table, positions)
        where = pc.index(ordered, hit[0]).as_py() if len(hit) else -1
        if where < 0:
            return {"position": None, "matching": matching, "previous": None, "next": None}
        ids = table["episode_id"]
        prev_id = ids[ordered[where - 1].as_py()].as_py() if where > 0 else None
        next_id = ids[ordered[where + 1].as_py()].as_py() if where + 1 < len(ordered) else None
        return {"position": where, "matching": matching, "previous": prev_id, "next": next_id}

    # -- one episode ---------------------------------------------------------------------------

    def _hits(self, key: str) -> pa.Table:
        table = self.table()
        ids = table["episode_id"]
        hits = table.filter(pc.equal(ids, key))
        if hits.num_rows == 0 and len(key) >= 4:
            hits = table.filter(pc.starts_with(ids, key))
        if hits.num_rows == 0:
            raise EpisodeNotFound(f"no episode {key!r} in this run")
        if hits.num_rows > 1 and len(set(hits["episode_id"].to_pylist())) > 1:
            raise EpisodeNotFound(f"{hits.num_rows} episodes have the id prefix {key!r}")
        return hits.slice(0, 1)

    def locate(self, key: str) -> EpisodeRef:
        """Where the episode ``key`` names (its id, or a unique prefix of at least 4
        characters) is now: its shard and rows."""
        with self._lock:
            return self._refs(self._hits(key))[0]

    def _refs(self, hits: pa.Table) -> list[EpisodeRef]:
        out = []
        for r in hits.select(["episode_id", "finished_at", "append", "row",
                              "num_steps"]).to_pylist():
            path, start = self._where[r["append"]]
            out.append(EpisodeRef(r["episode_id"], r["finished_at"], path, start + r["row"],
                                  r["num_steps"], (r["append"], r["row"])))
        return out

    def _read(self, find: Callable[[], list[EpisodeRef]]) -> list[Episode]:
        """The episodes ``find`` locates, read; found again on a fresh listing when compaction
        deleted a shard they were in between the two."""
        for attempt in range(READ_RETRIES):
            refs = find()
            try:
                return read_episodes(self._store, refs) if refs else []
            except FileNotFoundError:
                if attempt == READ_RETRIES - 1:
                    raise
                self.table(fresh=True)
        raise AssertionError("unreachable")

    def episode(self, key: str) -> Episode:
        """The whole episode ``key`` names, read from its rows alone."""
        found = self._read(lambda: [self.locate(key)])
        return found[0]

    def episodes(self, ids: list[str]) -> list[Episode]:
        """Whole episodes by full id, in the order given (those not found are left out)."""
        if not ids:
            return []

        def find() -> list[EpisodeRef]:
            with self._lock:
                table = self.table()
                return self._refs(table.filter(pc.is_in(table["episode_id"],
                                                        value_set=pa.array(ids))))

        found = {e.episode_id: e for e in self._read(find)}
        return [found[i] for i in ids if i in found]

    def _scan(self, read: Callable[[list[Path]], pa.Table]) -> pa.Table:
        """``read(paths)`` over the live shards, again on a fresh listing when compaction
        deleted one of them before it was opened."""
        def query() -> pa.Table:
            self.table()
            return read(self._store.shard_paths() if self._store is not None else [])
        return retrying(query)

    # -- two versions on one position ------------------------------------------------------------

    def shared_positions(self, a: int, b: int, env: str | None = None) -> pa.Table:
        """The positions (games: every decision's observation) and prompts (text: the first
        step's) that versions ``a`` and ``b`` both met, with how often each met it, most
        shared first. Columns: env_id, observation, game, n_a, n_b."""
        return self._scan(lambda paths: self._shared_positions(paths, a, b, env))

    def _shared_positions(self, paths: list[Path], a: int, b: int, env: str | None) -> pa.Table:
        empty = pa.table({"env_id": pa.array([], pa.string()),
                          "observation": pa.array([], pa.string()),
                          "game": pa.array([], pa.bool_()),
                          "n_a": pa.array([], pa.int64()), "n_b": pa.array([], pa.int64())})
        if not paths:
            return empty
        f = pads.field
        flt = (pc.is_in(f("policy_version"), value_set=pa.array([a, b], pa.int64()))
               & ((f("step_index") == 0) | f("legal_actions").is_valid()))
        if env is not None:
            flt = flt & (f("env_id") == env)
        rows = _dataset(paths).to_table(
            columns={"env_id": f("env_id"), "observation": f("observation"),
                     "game": f("legal_actions").is_valid(), "version": f("policy_version")},
            filter=flt)
        if rows.num_rows == 0:
            return empty
        counts = rows.group_by(["env_id", "observation", "game", "version"]).aggregate(
            [([], "count_all")])
        keys = ["env_id", "observation", "game"]

        def side(version: int, name: str) -> pa.Table:
            t = counts.filter(pc.equal(counts["version"], version))
            return t.select([*keys, "count_all"]).rename_columns([*keys, name])

        if a == b:
            joined = side(a, "n_a")
            joined = joined.append_column("n_b", joined["n_a"])
        else:
            joined = side(a, "n_a").join(side(b, "n_b"), keys=keys, join_type="inner")
        if joined.num_rows == 0:
            return empty
        least = pc.min_element_wise(joined["n_a"], joined["n_b"])
        most = pc.add(joined["n_a"], joined["n_b"])
        joined = joined.append_column("least", least).append_column("most", most)
        order = pc.sort_indices(joined, sort_keys=[("least", "descending"), ("most", "descending"),
                                                   ("observation", "ascending")])
        return joined.take(order).select([*keys, "n_a", "n_b"])

    def at_position(self, versions: list[int], observation: str) -> pa.Table:
        """Every decision of ``versions`` whose observation is exactly ``observation``
        (the ``POSITION_COLUMNS`` of it)."""
        return self._scan(lambda paths: self._at_position(paths, versions, observation))

    def _at_position(self, paths: list[Path], versions: list[int], observation: str) -> pa.Table:
        if not paths:
            return SCHEMA.empty_table().select(list(POSITION_COLUMNS))
        f = pads.field
        flt = (pc.is_in(f("policy_version"), value_set=pa.array(versions, pa.int64()))
               & (f("observation") == observation))
        return upgrade(_dataset(paths).to_table(columns=list(POSITION_COLUMNS), filter=flt))


def _dataset(paths: list[Path]) -> pads.Dataset:
    # schema=SCHEMA: a shard written before a column existed reads it as nulls (``upgrade``
    # gives them their defaults), whichever shard the dataset happens to open first.
    return pads.dataset([str(p) for p in paths], schema=SCHEMA, format="parquet")


def _empty_index() -> pa.Table:
    schema = pa.schema([SCHEMA.field(n) for n in INDEX_FIELDS]
                       + [pa.field("game", pa.bool_()), pa.field("append", pa.int64()),
                          pa.field("row", pa.int32())])
    return schema.empty_table()


# ---------------------------------------------------------------------------------------------
# Aggregates for the comparison page


def decisions_summary(table: pa.Table) -> dict[str, Any]:
    """What one version did at one position, over all the times it met it: the moves it played
    and the mean search statistics (visit share, prior, Q) per candidate move."""
    rows = table.select(["episode_id", "step_index", "action", "player", "outcome",
                         "search_actions", "search_visits", "search_priors", "search_q",
                         "root_value", "simulations"]).to_pylist()
    played = Counter(r["action"] for r in rows)
    stats: dict[str, dict[str, float]] = defaultdict(lambda: {"n": 0, "share": 0.0, "prior": 0.0,
                                                             "q": 0.0})
    searched = 0
    root_values = []
    for r in rows:
        if r["search_actions"] is None:
            continue
        searched += 1
        root_values.append(r["root_value"])
        total = float(sum(r["search_visits"])) or 1.0
        for act, v, p, q in zip(r["search_actions"], r["search_visits"], r["search_priors"],
                                r["search_q"]):
            s = stats[act]
            s["n"] += 1
            s["share"] += v / total
            s["prior"] += p
            s["q"] += q
    children = []
    for act, s in stats.items():
        n = s["n"]
        children.append({"action": act, "share": s["share"] / n, "prior": s["prior"] / n,
                         "q": s["q"] / n, "played": played.get(act, 0)})
    children.sort(key=lambda c: (-c["share"], -c["prior"], c["action"]))
    return {
        "decisions": len(rows),
        "searched": searched,
        "root_value": (sum(root_values) / len(root_values)) if root_values else None,
        "played": sorted(played.items(), key=lambda p: (-p[1], p[0])),
        "children": children,
        "episodes": [{"episode_id": r["episode_id"], "step_index": r["step_index"],
                      "action": r["action"], "outcome": r["outcome"]} for r in rows[:50]],
    }
