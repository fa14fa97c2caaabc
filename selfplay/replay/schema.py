"""The Arrow schema of the episode store, and the Episode <-> table conversion.

One row per Step, with the Episode's fields repeated on every row. A flat table is what pandas,
Ray Data and DuckDB read best (``df[df.policy_version == 7]`` needs no unnesting), and the repeated
episode fields compress to almost nothing in Parquet (dictionary + run-length encoding).

Rules the conversion keeps, so that ``table_to_episodes(episodes_to_table(eps)) == eps``:

- ``search`` None <=> every ``search_*`` column, ``root_value`` and ``simulations`` are null;
- ``legal_actions`` None <=> the column is null (an empty list stays an empty list);
- ``info`` is a JSON object string (key order kept);
- visits, priors and q-values are float32 (they are what the learner trains on, in float32 anyway):
  counts and float32-representable values round-trip exactly, others to float32 precision;
- ``tokens`` None <=> ``token_ids``, ``token_logprobs`` and ``token_version`` are all null (an
  empty sample stays two empty lists); token ids are int32 (every vocabulary fits), and the
  sampling log-probabilities are float32, so they round-trip to float32 precision like visits
  (a policy-gradient ratio is computed in float32 anyway);
- ``search.nodes`` None <=> ``search_tree`` is null; its floats are float32 like the visits;
- ``group_id`` is a string, never null ("" for an episode in no group, e.g. a game);
- an Episode must have at least one step (a step-less episode has no row to carry it, and nothing
  to learn from), and its rows stay together and in step order.

The store is durable across versions of this code: a shard written before a column in
``ADDED_COLUMNS`` existed reads as that column's default (``upgrade``): null tokens, group "",
no recorded tree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from selfplay.types import Episode, SampledTokens, SearchNodes, SearchStats, Step

_STR_LIST = pa.list_(pa.string())
_F32_LIST = pa.list_(pa.float32())
# One recorded node of a decision's search tree (selfplay.types.SearchNodes, one struct per node).
TREE_NODE = pa.struct([
    pa.field("parent", pa.int32()),  # position of its parent in the list; -1 at the root
    pa.field("action", pa.string()),  # the move or candidate step from the parent; "" at the root
    pa.field("visits", pa.float32()),
    pa.field("prior", pa.float32()),
    pa.field("q", pa.float32()),  # chooser's view
    pa.field("value", pa.float32()),  # chooser's view
    pa.field("terminal", pa.bool_()),
])
_TREE_FIELDS = [f.name for f in TREE_NODE]

SCHEMA = pa.schema(
    [
        # --- the episode, repeated on each of its rows
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("env_id", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("policy_version", pa.int64(), nullable=False),
        pa.field("outcome", pa.float64(), nullable=False),  # games: player 0's; tasks: reward
        pa.field("started_at", pa.float64(), nullable=False),  # unix seconds
        pa.field("finished_at", pa.float64(), nullable=False),
        pa.field("actor", pa.string(), nullable=False),
        pa.field("group_id", pa.string(), nullable=False),  # the k samples of a problem; "" none
        # --- the step
        pa.field("step_index", pa.int32(), nullable=False),  # 0 .. num_steps-1
        pa.field("num_steps", pa.int32(), nullable=False),  # a reader checks episodes whole
        pa.field("observation", pa.string(), nullable=False),
        pa.field("action", pa.string(), nullable=False),
        pa.field("player", pa.int32(), nullable=False),
        pa.field("reward", pa.float64(), nullable=False),
        pa.field("legal_actions", _STR_LIST),  # null: the env exposes none (not a game)
        # --- the search behind the decision; all null when the action was sampled without search
        pa.field("search_actions", _STR_LIST),
        pa.field("search_visits", _F32_LIST),
        pa.field("search_priors", _F32_LIST),
        pa.field("search_q", _F32_LIST),
        pa.field("search_policy", _F32_LIST),  # the search's own target (Gumbel); null: the visits
        pa.field("root_value", pa.float64()),
        pa.field("simulations", pa.int32()),
        # the root and its most-visited descendants (search.record_nodes); null: not recorded
        pa.field("search_tree", pa.list_(TREE_NODE)),
        # --- the tokens the policy sampled for the action; all null when not recorded (games)
        pa.field("token_ids", pa.list_(pa.int32())),
        pa.field("token_logprobs", _F32_LIST),
        pa.field("token_version", pa.int64()),
        # --- free-form episode info, as a JSON object
        pa.field("info", pa.string(), nullable=False),
    ]
)

COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)

# Columns added after the store's first shards were written, and what an older shard reads as
# (None: null). Every other column is in every shard ever written.
ADDED_COLUMNS: dict[str, str | None] = {
    "group_id": "",
    "token_ids": None,
    "token_logprobs": None,
    "token_version": None,
    "search_tree": None,
    "search_policy": None,
}


def upgrade(table: pa.Table) -> pa.Table:
    """``table`` with every column of ``ADDED_COLUMNS`` present, its nulls replaced by the default.

    Reading a shard through a dataset with ``schema=SCHEMA`` gives a missing column as nulls (even
    where SCHEMA says not null); this turns those into what the column means for an old shard.
    """
    for name, default in ADDED_COLUMNS.items():
        field = SCHEMA.field(name)
        if name not in table.column_names:
            column = pa.nulls(table.num_rows, field.type)
            table = table.append_column(field, column)
        if default is not None and table[name].null_count:
            index = table.column_names.index(name)
            table = table.set_column(index, field, pc.fill_null(table[name], default))
    return table


def _episode_columns(ep: Episode) -> dict[str, list]:
    """The columns of one episode's rows, as Python lists in SCHEMA order."""
    if not ep.steps:
        raise ValueError(
            f"episode {ep.episode_id!r} (env {ep.env_id!r}) has no steps; "
            "the episode store keeps one row per step, so it cannot hold it"
        )
    n = len(ep.steps)
    searches = [step.search for step in ep.steps]
    tokens = [step.tokens for step in ep.steps]
    for i, t in enumerate(tokens):
        # A logprob paired with the wrong token would skew every ratio after it; refuse it here.
        if t is not None and len(t.ids) != len(t.logprobs):
            raise ValueError(
                f"episode {ep.episode_id!r} step {i}: sampled tokens are misaligned "
                f"(ids {len(t.ids)}, logprobs {len(t.logprobs)})"
            )
    for i, s in enumerate(searches):
        # Misaligned statistics would silently train on the wrong targets; refuse them here.
        if s is not None and not (
            len(s.actions) == len(s.visits) == len(s.priors) == len(s.q_values)
        ):
            raise ValueError(
                f"episode {ep.episode_id!r} step {i}: search statistics are misaligned "
                f"(actions {len(s.actions)}, visits {len(s.visits)}, priors {len(s.priors)}, "
                f"q_values {len(s.q_values)})"
            )
        if s is not None and s.policy_target is not None and len(s.policy_target) != len(s.actions):
            raise ValueError(f"episode {ep.episode_id!r} step {i}: the search's policy target has "
                             f"{len(s.policy_target)} entries for {len(s.actions)} actions")
        if s is not None and s.nodes is not None:
            lengths = {name: len(getattr(s.nodes, name)) for name in _TREE_FIELDS}
            if len(set(lengths.values())) != 1:
                raise ValueError(f"episode {ep.episode_id!r} step {i}: search tree nodes are "
                                 f"misaligned ({lengths})")
    return {
        "episode_id": [ep.episode_id] * n,
        "env_id": [ep.env_id] * n,
        "seed": [ep.seed] * n,
        "policy_version": [ep.policy_version] * n,
        "outcome": [ep.outcome] * n,
        "started_at": [ep.started_at] * n,
        "finished_at": [ep.finished_at] * n,
        "actor": [ep.actor] * n,
        "group_id": [ep.group_id] * n,
        "step_index": list(range(n)),
        "num_steps": [n] * n,
        "observation": [st.observation for st in ep.steps],
        "action": [st.action for st in ep.steps],
        "player": [st.player for st in ep.steps],
        "reward": [st.reward for st in ep.steps],
        "legal_actions": [st.legal_actions for st in ep.steps],
        "search_actions": [None if s is None else s.actions for s in searches],
        "search_visits": [None if s is None else s.visits for s in searches],
        "search_priors": [None if s is None else s.priors for s in searches],
        "search_q": [None if s is None else s.q_values for s in searches],
        "search_policy": [None if s is None else s.policy_target for s in searches],
        "root_value": [None if s is None else s.root_value for s in searches],
        "simulations": [None if s is None else s.simulations for s in searches],
        "search_tree": [None if s is None else _tree_rows(s.nodes) for s in searches],
        "token_ids": [None if t is None else t.ids for t in tokens],
        "token_logprobs": [None if t is None else t.logprobs for t in tokens],
        "token_version": [None if t is None else t.version for t in tokens],
        "info": [json.dumps(ep.info, ensure_ascii=False)] * n,
    }


def _tree_rows(nodes: SearchNodes | None) -> list[dict] | None:
    if nodes is None:
        return None
    columns = [getattr(nodes, name) for name in _TREE_FIELDS]
    return [dict(zip(_TREE_FIELDS, row)) for row in zip(*columns)]


def _tree_nodes(rows: list[dict] | None) -> SearchNodes | None:
    if rows is None:
        return None
    return SearchNodes(**{name: [r[name] for r in rows] for name in _TREE_FIELDS})


def episodes_to_table(episodes: Sequence[Episode]) -> pa.Table:
    """Flatten episodes into one table of SCHEMA (one row per step, episodes in the given order)."""
    cols: dict[str, list] = {name: [] for name in COLUMNS}
    for ep in episodes:
        for name, values in _episode_columns(ep).items():
            cols[name].extend(values)
    try:
        return pa.Table.from_pydict(cols, schema=SCHEMA)
    except (pa.ArrowException, TypeError, ValueError) as err:
        # Arrow's message names neither the episode nor the field; find the culprit and say so.
        for ep in episodes:
            try:
                pa.Table.from_pydict(_episode_columns(ep), schema=SCHEMA)
            except (pa.ArrowException, TypeError, ValueError) as inner:
                raise ValueError(
                    f"episode {ep.episode_id!r} (env {ep.env_id!r}) does not fit the episode "
                    f"schema: {inner}"
                ) from err
        raise


def table_to_episodes(table: pa.Table) -> list[Episode]:
    """Rebuild the episodes of a table of SCHEMA (all columns), in row order.

    A table without the ``ADDED_COLUMNS`` (an older shard read directly) reads as their defaults.
    Raises ValueError when an episode's rows are incomplete (fewer rows than ``num_steps``, or
    step indices out of order): a reader must never hand out a truncated episode.
    """
    missing = [c for c in COLUMNS if c not in table.column_names and c not in ADDED_COLUMNS]
    if missing:
        raise ValueError(f"table_to_episodes needs every column of the schema; missing {missing}")
    table = upgrade(table)
    d = table.select(list(COLUMNS)).to_pydict()
    episodes: list[Episode] = []
    n_rows = table.num_rows
    i = 0
    while i < n_rows:
        ep_id, n = d["episode_id"][i], d["num_steps"][i]
        end = i + n
        ok = (
            end <= n_rows
            and d["episode_id"][end - 1] == ep_id
            and d["step_index"][i:end] == list(range(n))
        )
        if not ok:
            raise ValueError(
                f"episode {ep_id!r} is incomplete or out of order in the table: num_steps={n}, "
                f"found step indices {d['step_index'][i:end]}"
            )
        steps = []
        for r in range(i, end):
            search = None
            if d["search_actions"][r] is not None:
                search = SearchStats(
                    actions=d["search_actions"][r],
                    visits=d["search_visits"][r],
                    priors=d["search_priors"][r],
                    q_values=d["search_q"][r],
                    root_value=d["root_value"][r],
                    simulations=d["simulations"][r],
                    nodes=_tree_nodes(d["search_tree"][r]),
                    policy_target=d["search_policy"][r],
                )
            tokens = None
            if d["token_ids"][r] is not None:
                tokens = SampledTokens(
                    ids=d["token_ids"][r],
                    logprobs=d["token_logprobs"][r],
                    version=d["token_version"][r],
                )
            steps.append(
                Step(
                    observation=d["observation"][r],
                    action=d["action"][r],
                    player=d["player"][r],
                    reward=d["reward"][r],
                    search=search,
                    legal_actions=d["legal_actions"][r],
                    tokens=tokens,
                )
            )
        episodes.append(
            Episode(
                episode_id=ep_id,
                env_id=d["env_id"][i],
                seed=d["seed"][i],
                policy_version=d["policy_version"][i],
                steps=steps,
                outcome=d["outcome"][i],
                started_at=d["started_at"][i],
                finished_at=d["finished_at"][i],
                actor=d["actor"][i],
                info=json.loads(d["info"][i]),
                group_id=d["group_id"][i],
            )
        )
        i = end
    return episodes
