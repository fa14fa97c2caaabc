"""Synthetic episode stores, fast, for the viewer's tests and speed measurements.

``template_episodes`` plays a few games of tic-tac-toe (random moves, with made-up but
well-formed search statistics; the text is the real env's absolute view) and a few text attempts
(groups of k samples, tokens, a verdict in ``info``). ``write_store`` tiles them into as many
episodes as asked, vectorised in Arrow (200,000 episodes in a few seconds), each with its own id,
version, actor and times, in shards named and written as ``EpisodeStore`` writes them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from selfplay.replay.schema import SCHEMA, episodes_to_table
from selfplay.replay.store import EPISODES_DIR, TMP_PREFIX
from selfplay.types import Episode, SampledTokens, SearchStats, Step

GAME_ENV = "selfplay/TicTacToe-v0"
TEXT_ENV = "selfplay/MathArithmetic-v0"
_LINES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]


def _render(cells: list[str], to_move: int, status: str | None) -> str:
    header = status if status else f"{'XO'[to_move]} to move"
    rows = ["".join(cells[r * 3:r * 3 + 3]) for r in range(3)]
    return "\n".join([header, *rows]) + "\n"


def tictactoe_episode(rng: np.random.Generator, episode_id: str, version: int = 0,
                      simulations: int = 16) -> Episode:
    """A random game in the real env's text, with search statistics at every decision."""
    cells = ["."] * 9
    steps: list[Step] = []
    outcome = 0.0
    for ply in range(9):
        player = ply % 2
        legal = [i for i in range(9) if cells[i] == "."]
        priors = rng.dirichlet(np.ones(len(legal))).astype(np.float32)
        visits = rng.multinomial(simulations, priors).astype(np.float32)
        choice = legal[int(np.argmax(visits))]
        obs = _render(cells, player, None)
        cells[choice] = "XO"[player]
        won = any(all(cells[i] == "XO"[player] for i in line) for line in _LINES)
        done = won or all(c != "." for c in cells)
        reward = 1.0 if won else 0.0
        q = np.clip(rng.normal(0.0, 0.4, len(legal)), -1, 1).astype(np.float32)
        steps.append(Step(
            observation=obs, action=str(choice + 1), player=player, reward=reward,
            search=SearchStats(actions=[str(i + 1) for i in legal], visits=visits.tolist(),
                               priors=priors.tolist(), q_values=q.tolist(),
                               root_value=float(q[legal.index(choice)]),
                               simulations=simulations),
            legal_actions=[str(i + 1) for i in legal]))
        if done:
            outcome = (1.0 if player == 0 else -1.0) if won else 0.0
            break
    return Episode(episode_id=episode_id, env_id=GAME_ENV, seed=int(rng.integers(1 << 30)),
                   policy_version=version, steps=steps, outcome=outcome, started_at=0.0,
                   finished_at=1.0, actor="rollout-0", info={"termination": "rules"})


def text_episode(rng: np.random.Generator, episode_id: str, group_id: str, a: int, b: int,
                 version: int = 0) -> Episode:
    """One sampled attempt at "What is a + b?" in two reasoning steps, with its verdict."""
    answer = a + b
    guess = answer if rng.random() < 0.4 else answer + int(rng.integers(1, 9))
    prompt = f"What is {a} + {b}?"
    texts = [f"{a} plus {b}", f"The answer is {guess}."]
    steps = []
    obs = prompt
    for i, text in enumerate(texts):
        n = len(text)
        steps.append(Step(
            observation=obs, action=text, player=0,
            reward=float(guess == answer) if i == len(texts) - 1 else 0.0,
            tokens=SampledTokens(ids=[int(c) for c in text.encode()][:n],
                                 logprobs=rng.normal(-1.0, 0.3, n).astype(np.float32).tolist(),
                                 version=version)))
        obs = obs + "\n" + text
    correct = guess == answer
    return Episode(episode_id=episode_id, env_id=TEXT_ENV, seed=a * 1000 + b,
                   policy_version=version, steps=steps, outcome=float(correct), started_at=0.0,
                   finished_at=1.0, actor="rollout-0", group_id=group_id,
                   info={"answer": str(answer), "predicted": str(guess), "correct": str(correct),
                         "termination": "answered", "env_reward": str(float(correct))})


def template_episodes(games: int = 48, problems: int = 8, k: int = 4, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    out = [tictactoe_episode(rng, f"g{i:07d}") for i in range(games)]
    for p in range(problems):
        a, b = int(rng.integers(10, 99)), int(rng.integers(10, 99))
        group = uuid.UUID(bytes=rng.bytes(16)).hex
        out += [text_episode(rng, f"t{p:03d}{j:04d}", group, a, b) for j in range(k)]
    return out


def write_shard(run_dir: str | Path, seq: int, table: pa.Table) -> Path:
    """``table`` as shard ``seq`` of the store, written the way ``EpisodeStore.append`` writes
    one (temp file, fsync, rename)."""
    folder = Path(run_dir) / EPISODES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = f"shard-{seq:08d}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = folder / f"{TMP_PREFIX}{name}"
    with open(tmp, "wb") as f:
        pq.write_table(table, f, compression="zstd")
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, folder / name)
    return folder / name


def write_store(run_dir: str | Path, episodes: int, *, per_shard: int = 1000, versions: int = 10,
                actors: int = 4, start: float = 1.8e9, seconds_per_episode: float = 0.05,
                seed: int = 0, templates: list[Episode] | None = None) -> int:
    """Write ``episodes`` episodes (tiled from ``templates``) in shards of ``per_shard``;
    versions rise with time, as in a run. Returns the number of rows (steps) written."""
    rng = np.random.default_rng(seed)
    templates = templates or template_episodes(seed=seed)
    base = episodes_to_table(templates)
    lengths = np.array([e.length for e in templates])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rows_written = 0
    for seq, first in enumerate(range(0, episodes, per_shard)):
        n = min(per_shard, episodes - first)
        pick = rng.integers(0, len(templates), n)
        take = np.concatenate([np.arange(offsets[t], offsets[t] + lengths[t]) for t in pick])
        table = base.take(pa.array(take))
        per_row = np.repeat(np.arange(n), lengths[pick])  # the episode of each row
        number = first + np.arange(n)
        ids = np.array([uuid.UUID(bytes=rng.bytes(16)).hex for _ in range(n)])
        finished = start + number * seconds_per_episode
        version = (number * versions // max(episodes, 1)).astype(np.int64)
        actor = f"rollout-{seq % actors}"  # one append = one actor's batch, as in a run
        group = pc.if_else(pc.equal(table["group_id"], ""), "",
                           pa.array(np.char.add(np.array(table["group_id"].to_pylist(), dtype=str),
                                                f"-{seq}")))
        columns = {
            "episode_id": pa.array(ids[per_row]),
            "policy_version": pa.array(version[per_row]),
            "started_at": pa.array(finished[per_row] - 1.0),
            "finished_at": pa.array(finished[per_row]),
            "actor": pa.array([actor] * len(per_row)),
            "group_id": group,
        }
        for name, values in columns.items():
            table = table.set_column(table.column_names.index(name), SCHEMA.field(name), values)
        write_shard(run_dir, seq, table.cast(SCHEMA))
        rows_written += table.num_rows
    return rows_written
