"""`selfplay train` on text tasks through real local Ray: the same driver as games, with the SFT
warm start as version 0, GRPO / expert iteration, held-out pass@1 per version, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from test_train import REPO, run, selfplay_cmd, versions

POLICY = ["policy.hidden_size=32", "policy.num_layers=1", "policy.num_heads=2",
          "policy.num_kv_heads=1", "policy.intermediate_size=64"]
TEXT = [*POLICY, "learner.batch_size=16", "learner.min_replay_steps=16",
        "learner.publish_every=3steps", "learner.steps_per_call=1", "run.games_per_actor=4",
        "sampling.k=4", "sampling.max_tokens=24", "sampling.step_max_tokens=16",
        "run.eval_every=3steps", "arena.eval_games=4", "arena.gate_games=4", "arena.gate=false",
        "run.warm_start=sft", "run.warm_start_problems=8", "run.warm_start_steps=2",
        "run.progress=false", "ray.num_cpus=2"]


def evaluations(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "evaluations.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_math_steps_run_publishes_versions_with_pass_at_1(tmp_path: Path):
    run_dir = tmp_path / "steps"
    out = run("train", "env=math_steps", "learner=grpo", *TEXT, f"run.dir={run_dir}",
              "run.budget_steps=6", "run.budget_minutes=4", timeout=300)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["learner_steps"] >= 6 and len(versions(run_dir)) >= 3
    warm = json.loads((run_dir / "warm_start.json").read_text())
    assert warm["warm_start/problems"] + warm["warm_start/too_long"] == 8 and warm["warm_start/steps"] == 2
    evals = evaluations(run_dir)
    assert evals[0]["version"] == 0  # every curve starts at the warm start
    assert len({e["version"] for e in evals}) >= 2
    assert all(0.0 <= e["pass@1"] <= 1.0 and e["b"] == "held-out" for e in evals)
    assert "pass@1" in out.stdout  # the summary names the held-out figures
    steps = pd.read_parquet(run_dir / "episodes")
    assert steps["token_ids"].map(len).gt(0).all()
    assert (steps["token_ids"].map(len) == steps["token_logprobs"].map(len)).all()
    assert steps["group_id"].ne("").all() and steps["search_visits"].isna().all()
    # k samples per problem: every group holds sampling.k episodes
    assert steps.groupby("group_id")["episode_id"].nunique().eq(4).all()
    listed = run("replay", str(run_dir))
    assert "MathSteps" in listed.stdout


@pytest.mark.slow
def test_code_run_publishes_versions_with_pass_at_1(tmp_path: Path):
    run_dir = tmp_path / "code"
    # code prompts run to ~300 characters: a fresh policy needs a longer context than 256
    run("train", "env=code", "learner=grpo", *TEXT, f"run.dir={run_dir}", "run.budget_steps=3",
        "run.budget_minutes=4", "sampling.max_tokens=48", "policy.max_seq_len=512", timeout=300)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["learner_steps"] >= 3 and summary["episodes"] > 0
    assert versions(run_dir)[0] == 0 and len(versions(run_dir)) >= 2
    evals = evaluations(run_dir)
    assert evals[0]["version"] == 0 and len({e["version"] for e in evals}) >= 2
    assert all(0.0 <= e["pass@1"] <= 1.0 and e["b"] == "held-out" for e in evals)
    steps = pd.read_parquet(run_dir / "episodes")
    assert set(steps["env_id"]) == {"selfplay/CodeSynth-v0"}
    assert steps["reward"].between(0.0, 1.0).all()  # the sandboxed tests' verdict, 0 or 1
    assert (steps["token_ids"].map(len) == steps["token_logprobs"].map(len)).all()


@pytest.mark.slow
def test_text_run_survives_kill_minus_nine_and_resumes(tmp_path: Path):
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(selfplay_cmd("train", "env=math", "learner=grpo", *TEXT,
                                         f"run.dir={run_dir}", "run.budget_minutes=5"),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 150
        while time.time() < deadline and len(versions(run_dir) if (run_dir / "checkpoints").exists() else []) < 2:
            time.sleep(0.5)
        assert len(versions(run_dir)) >= 2, "no version published in time"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    before = versions(run_dir)
    steps = pd.read_parquet(run_dir / "episodes")
    lengths = steps.groupby("episode_id").size()
    assert (lengths == steps.groupby("episode_id")["num_steps"].first()).all()
    episodes_before = steps["episode_id"].nunique()
    warm_written = (run_dir / "warm_start.json").stat().st_mtime_ns
    run("train", "env=math", "learner=grpo", *TEXT, f"run.dir={run_dir}", "run.resume=true",
        "run.budget_steps=12", "run.budget_minutes=3", timeout=300)
    after = versions(run_dir)
    assert after[: len(before)] == before and after[-1] > before[-1]
    assert pd.read_parquet(run_dir / "episodes")["episode_id"].nunique() > episodes_before
    # a resumed run continues from its checkpoint: the warm start is not run again
    assert (run_dir / "warm_start.json").stat().st_mtime_ns == warm_written


@pytest.mark.slow
def test_step_search_run_trains_alphazero_over_sibling_steps(tmp_path: Path):
    run_dir = tmp_path / "step-search"
    run("train", "env=math_steps", "rollout.mode=step_search", *TEXT, f"run.dir={run_dir}",
        "search.num_simulations=4", "search.num_candidates=2", "sampling.step_max_tokens=8",
        "env.kwargs.max_steps=3", "learner.min_replay_steps=4", "learner.batch_size=8",
        "run.budget_steps=3", "run.budget_minutes=4", timeout=300)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["learner_steps"] >= 3 and len(versions(run_dir)) >= 2
    evals = evaluations(run_dir)
    assert evals[0]["version"] == 0 and all(e["b"] == "held-out" for e in evals)
    steps = pd.read_parquet(run_dir / "episodes")
    searched = steps[steps["search_visits"].notna()]
    assert len(searched) > 0 and searched["search_actions"].map(len).ge(1).all()
    # the chosen step's tokens, written (log-probability 0), for expert iteration on found paths
    assert steps["token_ids"].map(len).gt(0).all()
    assert steps["token_logprobs"].map(lambda lp: all(x == 0.0 for x in lp)).all()
    config = (run_dir / "config.yaml").read_text()
    assert "mode: step_search" in config and "loss: auto" in config
