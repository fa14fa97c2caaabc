"""Replay of text episodes: sampled tokens and group ids in the store, groups in the sampler
(GRPO's group rewards, expert iteration's best of group), old shards, and the replay CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selfplay.replay import (
    SCHEMA,
    EpisodeStore,
    ReplayActor,
    ReplaySampler,
    best_of_group,
    episodes_to_table,
    group_outcomes,
    table_to_episodes,
)
from selfplay.replay.cli import replay_main
from selfplay.replay.schema import ADDED_COLUMNS
from selfplay.types import Episode, SampledTokens, SearchStats, Step

REPO = Path(__file__).resolve().parent.parent


def text_episode(
    ep_id: str,
    reward: float,
    group: str = "",
    *,
    steps: int = 1,
    version: int = 3,
    tokens: bool = True,
    info: dict[str, str] | None = None,
) -> Episode:
    """A math-like episode: the question, ``steps`` reasoning steps, the last one rewarded."""
    question = f"What is 2 + {ep_id}?"
    out, seen = [], question
    for i in range(steps):
        action = f"{ep_id} step {i}" if i < steps - 1 else f"Answer: {ep_id}"
        # Log-probabilities that float32 cannot hold exactly (0.1), to test the documented loss.
        sampled = SampledTokens(
            ids=[10 + i, 20 + i, 30 + i], logprobs=[-0.1, -0.25, -1.5], version=version - i
        )
        out.append(
            Step(
                observation=seen,
                action=action,
                player=0,
                reward=reward if i == steps - 1 else 0.0,
                tokens=sampled if tokens else None,
            )
        )
        seen = seen + "\n" + action
    base = {"termination": "terminated", "answer": "4", "predicted": ep_id,
            "correct": str(reward > 0)}
    return Episode(
        episode_id=ep_id,
        env_id="selfplay/Math-v0",
        seed=11,
        policy_version=version,
        steps=out,
        outcome=reward,
        started_at=2000.0,
        finished_at=2001.0,
        actor="rollout-1",
        info=base if info is None else info,
        group_id=group,
    )


def group(gid: str, rewards: list[float], **kw) -> list[Episode]:
    return [text_episode(f"{gid}-{i}", r, gid, **kw) for i, r in enumerate(rewards)]


def _f32(values: list[float]) -> list[float]:
    return np.asarray(values, dtype=np.float32).astype(np.float64).tolist()


# ---------------------------------------------------------------------------- schema


def test_text_round_trip_keeps_tokens_and_group_ids():
    eps = group("g1", [0.0, 1.0], steps=2) + [text_episode("lone", 0.5, tokens=False)]
    eps[0].steps[1].tokens = SampledTokens(ids=[], logprobs=[], version=2)  # empty stays empty
    # logprobs are float32 in the store: use representable ones for the exact comparison
    for ep in eps:
        for st in ep.steps:
            if st.tokens is not None:
                st.tokens.logprobs = _f32(st.tokens.logprobs)
    table = episodes_to_table(eps)
    assert table.schema.equals(SCHEMA)
    back = table_to_episodes(table)
    assert back == eps
    assert [e.group_id for e in back] == ["g1", "g1", ""]
    assert back[0].steps[1].tokens == SampledTokens([], [], 2)
    assert back[2].steps[0].tokens is None
    # tokens None <=> all three token columns null; the group id is never null
    lone = table.filter(pa.compute.equal(table["episode_id"], "lone"))
    for col in ("token_ids", "token_logprobs", "token_version"):
        assert lone[col].null_count == 1
    assert table["group_id"].null_count == 0
    assert table["token_version"].to_pylist()[:2] == [3, 2]  # per step, not per episode


def test_logprobs_round_trip_to_float32_precision():
    ep = text_episode("p", 1.0)
    back = table_to_episodes(episodes_to_table([ep]))[0].steps[0].tokens
    assert back.logprobs != [-0.1, -0.25, -1.5]  # -0.1 is not a float32: stored rounded
    np.testing.assert_allclose(back.logprobs, [-0.1, -0.25, -1.5], rtol=1e-7)
    assert back.ids == [10, 20, 30] and back.version == 3


def test_misaligned_tokens_are_refused_naming_episode_and_step():
    bad = text_episode("bad", 1.0, steps=3)
    bad.steps[2].tokens.logprobs = [-0.5]
    with pytest.raises(ValueError, match=r"'bad' step 2: sampled tokens are misaligned.*ids 3.*1"):
        episodes_to_table([text_episode("ok", 0.0), bad])


def _old_table(eps: list[Episode]) -> pa.Table:
    """A shard written before tokens and groups existed: the table minus those columns."""
    table = episodes_to_table(eps)
    return table.select([c for c in table.column_names if c not in ADDED_COLUMNS])


def test_old_schema_shard_reads_through_the_store(tmp_path):
    old_eps = [text_episode("old0", 1.0, tokens=False), text_episode("old1", 0.0, tokens=False)]
    store = EpisodeStore(tmp_path)
    store.append([text_episode("seed", 0.0)])  # shard 0, written now
    # An old shard, numbered after it as the store names shards.
    old_path = tmp_path / "episodes" / "shard-00000001-0badc0de.parquet"
    pq.write_table(_old_table(old_eps), old_path)
    assert "group_id" not in pq.read_schema(old_path).names

    reader = EpisodeStore(tmp_path, read_only=True)
    got = list(reader.episodes(shards=[old_path]))
    assert got == old_eps  # tokens None, group "" (the defaults)
    assert all(e.group_id == "" for e in got)
    table = reader.read_table()
    assert table.num_rows == 3 and table["group_id"].null_count == 0
    assert table["group_id"].to_pylist() == ["", "", ""]
    assert table["token_ids"].to_pylist() == [[10, 20, 30], None, None]
    frame = reader.to_pandas(columns=["episode_id", "group_id"], min_version=0)
    assert list(frame.columns) == ["episode_id", "group_id"] and len(frame) == 3
    # table_to_episodes on the bare old table (read directly with pyarrow) also works
    assert table_to_episodes(pq.read_table(old_path)) == old_eps
    # and the sampler resumes from a store that holds both
    sampler = ReplaySampler(window=10, keep="sampled")
    assert sampler.load_from_store(reader) == 3


# ---------------------------------------------------------------------------- groups


@pytest.mark.parametrize(
    "rewards, best",
    [
        ([0, 1, 1, 0], [False, True, True, False]),
        ([0, 0], [False, False]),
        ([0.2, 0.5, 0.5], [False, True, True]),
        ([-1.0, -0.5], [False, False]),  # nothing above 0: nothing worth imitating
        ([0.3], [True]),
        ([float("nan"), 0.4, 0.1], [False, True, False]),
        ([], []),
    ],
)
def test_best_of_group_by_hand(rewards, best):
    got = best_of_group(np.array(rewards, dtype=np.float32))
    assert got.dtype == bool and got.tolist() == best


def test_group_outcomes_groups_by_id_in_order():
    eps = group("a", [0.0, 1.0, 0.5]) + [text_episode("x", 0.25)] + group("b", [1.0, 0.0])
    # a member of "a" arriving after others still joins its group, in the order given
    eps.append(text_episode("a-late", 0.75, "a"))
    out = group_outcomes(eps)
    rewards, index = out["a-1"]
    assert rewards.dtype == np.float32 and rewards.tolist() == [0.0, 1.0, 0.5, 0.75]
    assert index == 1 and out["a-late"][1] == 3
    assert out["x"][0].tolist() == [0.25] and out["x"][1] == 0
    assert out["b-0"][0].tolist() == [1.0, 0.0] and out["b-1"][1] == 1
    with pytest.raises(ValueError):
        rewards[0] = 9.0  # shared by the group's members: read-only
    with pytest.raises(ValueError, match="'x' appears twice"):
        group_outcomes([text_episode("x", 0.0), text_episode("x", 1.0)])


# ---------------------------------------------------------------------------- sampler


def test_keep_must_be_a_known_mode(tmp_path):
    with pytest.raises(ValueError, match="keep='all'.*searched, sampled, best_of_group"):
        ReplaySampler(window=10, keep="all")
    with pytest.raises(ValueError, match="best_of_group"):
        ReplayActor(tmp_path / "run", keep="best")
    assert not (tmp_path / "run").exists()  # refused before the store made a directory


def test_keep_searched_drops_sampled_text_steps_and_sampled_keeps_them():
    eps = group("g", [0.0, 1.0])
    assert ReplaySampler(window=10).add(eps) == 0  # no search statistics
    assert ReplaySampler(window=10, keep="sampled").add(eps) == 2


def test_keep_best_of_group_samples_only_the_best_episodes():
    eps = group("g", [0.0, 1.0, 1.0, 0.0], steps=2) + group("h", [0.0, 0.0]) + group(
        "k", [0.2, 0.5, 0.5]
    )
    sampler = ReplaySampler(window=100, keep="best_of_group")
    assert sampler.add(eps) == 2 * 2 + 0 + 2 * 1  # every step of the best episodes, no others
    seen = {k[0] for k in sampler.sample(500, rng=0).keys}
    assert seen == {"g-1", "g-2", "k-1", "k-2"}
    # an ungrouped episode is its own group: kept when it scored above 0
    lone = ReplaySampler(window=10, keep="best_of_group")
    assert lone.add([text_episode("win", 1.0), text_episode("lose", 0.0)]) == 1


def test_batch_carries_tokens_and_group_of_each_decision():
    eps = group("g", [0.0, 1.0, 0.5], steps=2, version=7)
    sampler = ReplaySampler(window=100, keep="sampled")
    sampler.add(eps + [text_episode("solo", 0.25, version=4, tokens=False)])
    batch = sampler.sample(400, rng=1)
    assert len(batch.keys) == 400 and {k[0] for k in batch.keys} == {"g-0", "g-1", "g-2", "solo"}
    assert batch.sample_versions.dtype == np.int64 and batch.group_index.dtype == np.int64
    for i, (ep_id, step) in enumerate(batch.keys):
        if ep_id == "solo":
            assert batch.token_ids[i].size == 0 and batch.sample_logprobs[i].size == 0
            assert batch.sample_versions[i] == 4  # the episode's version without tokens
            assert batch.group_rewards[i].tolist() == [0.25] and batch.group_index[i] == 0
            continue
        assert batch.token_ids[i].dtype == np.int32
        assert batch.token_ids[i].tolist() == [10 + step, 20 + step, 30 + step]
        assert batch.sample_logprobs[i].dtype == np.float32
        np.testing.assert_allclose(batch.sample_logprobs[i], [-0.1, -0.25, -1.5], rtol=1e-6)
        assert batch.sample_versions[i] == 7 - step  # the tokens' version, per step
        assert batch.group_rewards[i].dtype == np.float32
        assert batch.group_rewards[i].tolist() == [0.0, 1.0, 0.5]
        assert batch.group_index[i] == int(ep_id[-1])
        assert batch.policy_versions[i] == 7


def test_groups_are_formed_per_add_call():
    sampler = ReplaySampler(window=100, keep="sampled")
    first, second = group("g", [1.0, 0.0]), [text_episode("g-2", 0.5, "g")]
    sampler.add(first)
    sampler.add(second)  # the same id in another call is another group (groups arrive whole)
    batch = sampler.sample(200, rng=0)
    by_key = {k[0]: (r.tolist(), int(j)) for k, r, j in
              zip(batch.keys, batch.group_rewards, batch.group_index)}
    assert by_key == {"g-0": ([1.0, 0.0], 0), "g-1": ([1.0, 0.0], 1), "g-2": ([0.5], 0)}


def test_resume_rebuilds_groups_as_the_live_sampler_had_them(tmp_path):
    store = EpisodeStore(tmp_path)
    live = ReplaySampler(window=100, keep="best_of_group")
    for i, rewards in enumerate([[0.0, 1.0, 0.0], [0.5, 0.5], [0.0, 0.0]]):
        eps = group(f"g{i}", rewards, steps=2)
        store.append(eps)
        live.add(eps)
    resumed = ReplaySampler(window=100, keep="best_of_group")
    assert resumed.load_from_store(EpisodeStore(tmp_path, read_only=True)) == len(live) == 6

    def view(sampler):
        b = sampler.sample(300, rng=2)
        return {(k, tuple(r.tolist()), int(j), tuple(t.tolist()))
                for k, r, j, t in zip(b.keys, b.group_rewards, b.group_index, b.token_ids)}

    got = view(resumed)
    assert got == view(live)
    assert {k[0] for k, *_ in got} == {"g0-1", "g1-0", "g1-1"}
    assert (("g0-1", 1), (0.0, 1.0, 0.0), 1, (11, 21, 31)) in got


def test_replay_actor_passes_keep_through(tmp_path):
    actor = ReplayActor(tmp_path, window=50, keep="best_of_group")
    actor.add(group("g", [0.0, 1.0]))
    assert actor.num_decisions() == 1 and set(actor.sample(8, seed=0).keys) == {("g-1", 0)}
    again = ReplayActor(tmp_path, window=50, keep="sampled")  # resume with another keep
    assert again.num_decisions() == 2


def test_a_hand_built_batch_gets_game_defaults():
    from selfplay.replay.sampler import Batch

    b = Batch(["o"], [["a"]], [np.ones(1, np.float32)], np.zeros(1, np.float32),
              np.array([5]), ["a"], np.zeros(1, np.int32), np.zeros(1, np.float32),
              [("e", 0)], np.ones(1))
    assert b.token_ids[0].size == 0 and b.sample_versions.tolist() == [5]
    assert b.group_rewards[0].size == 0 and b.group_index.tolist() == [-1]


# ---------------------------------------------------------------------------- CLI


def _code_episode() -> Episode:
    ep = text_episode("code1", 0.75, "cg", info={
        "termination": "terminated", "passed": "2", "total": "3",
        "tests": json.dumps(["pass", "pass", "expected 6, got 5"]), "sandbox_status": "ok",
        "env_reward": "0.5", "feedback": json.dumps({"Judge": 1.0}), "task_id": "sum-7"})
    ep.env_id = "selfplay/Code-v0"
    ep.finished_at = 3000.0  # the latest: the listing is in finishing order
    ep.steps[0].action = "def f(x):\n    return [x]  # <script>alert('pwn')</script> [bold]x[/bold]"
    return ep


@pytest.fixture
def text_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    store = EpisodeStore(run)
    store.append(group("grp12345xyz", [0.0, 1.0], steps=2))
    store.append([_code_episode()])
    return run


def _cli(capsys, *argv: str) -> str:
    assert replay_main(list(argv)) == 0
    return capsys.readouterr().out


def test_cli_lists_text_episodes(text_run, capsys):
    out = _cli(capsys, str(text_run))
    assert "3 episodes" in out
    for column in ("steps", "reward", "termination", "group"):
        assert column in out
    assert "grp12345" in out and "grp12345xyz" not in out  # the group's short form
    assert "terminated" in out and "selfplay/Math-v0" in out and "+0.75" in out


def test_cli_shows_a_math_episode(text_run, capsys):
    out = _cli(capsys, str(text_run), "--show", "grp12345xyz-1")
    assert "prompt" in out and "What is 2 + grp12345xyz-1?" in out
    assert "step 1" in out and "step 2" in out and "Answer: grp12345xyz-1" in out
    assert "3 tokens, mean logprob -0.617" in out  # mean(-0.1, -0.25, -1.5)
    assert "(sampled by v2)" in out  # the second step's tokens
    assert "predicted: grp12345xyz-1" in out and "answer: 4" in out and "correct: True" in out
    assert "reward: +1" in out


def test_cli_shows_code_tests_and_rewards_per_source(text_run, capsys):
    out = _cli(capsys, str(text_run), "--show", "-1")
    assert "tests passed: 2/3" in out and "test 3: expected 6, got 5" in out
    assert "env reward: 0.5" in out and "feedback Judge: 1.0" in out and "reward: +0.75" in out
    # untrusted text printed as written: no Rich markup applied, nothing swallowed
    assert "[bold]x[/bold]" in out and "<script>" in out
    assert "task_id" in out  # the rest of info


def test_cli_html_escapes_what_the_policy_wrote(text_run, tmp_path, capsys):
    page = tmp_path / "page.html"
    _cli(capsys, str(text_run), "--html", str(page))
    text = page.read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;alert(&#x27;pwn&#x27;)" in text
    assert "Answer: grp12345xyz-1" in text and "tests passed" in text and "feedback Judge" in text


def test_cli_html_escapes_a_game_action(tmp_path, capsys):
    ep = text_episode("game", 1.0, tokens=False)
    ep.steps[0].legal_actions = ["<script>x</script>", "b"]
    ep.steps[0].action = "<script>x</script>"
    ep.steps[0].search = SearchStats(["<script>x</script>", "b"], [3.0, 1.0], [0.5, 0.5],
                                     [0.0, 0.0], 0.0, 4)
    EpisodeStore(tmp_path / "g").append([ep])
    page = tmp_path / "g.html"
    _cli(capsys, str(tmp_path / "g"), "--html", str(page))
    text = page.read_text(encoding="utf-8")
    assert "<script>" not in text and text.count("&lt;script&gt;x&lt;/script&gt;") >= 2


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_cli_exports_the_new_columns(text_run, tmp_path, capsys, suffix):
    out = tmp_path / f"steps{suffix}"
    _cli(capsys, str(text_run), "--export", str(out))
    if suffix == ".parquet":
        frame = pd.read_parquet(out)
        ids = [list(v) for v in frame["token_ids"]]
    elif suffix == ".csv":
        frame = pd.read_csv(out, keep_default_na=False)
        ids = [json.loads(v) for v in frame["token_ids"]]
    else:
        frame = pd.read_json(out, lines=True)
        ids = [list(v) for v in frame["token_ids"]]
    assert len(frame) == 5  # 2 episodes x 2 steps + 1
    for column in ("token_ids", "token_logprobs", "token_version", "group_id"):
        assert column in frame.columns
    assert ids == [[10, 20, 30], [11, 21, 31]] * 2 + [[10, 20, 30]]
    assert list(frame["group_id"]) == ["grp12345xyz"] * 4 + ["cg"]


def test_cli_csv_keeps_long_token_lists_whole(tmp_path, capsys):
    ep = text_episode("long", 1.0)
    ep.steps[0].tokens = SampledTokens(list(range(3000)), [-1.0] * 3000, 3)
    EpisodeStore(tmp_path / "r").append([ep])
    out = tmp_path / "s.csv"
    _cli(capsys, str(tmp_path / "r"), "--export", str(out))
    assert json.loads(pd.read_csv(out)["token_ids"][0]) == list(range(3000))


def test_selfplay_replay_command_on_a_text_run(text_run):
    # The real entry point, as a researcher runs it.
    command = [sys.executable, "-m", "selfplay.cli", "replay", str(text_run), "--show", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "prompt" in result.stdout and "Answer: grp12345xyz-0" in result.stdout
