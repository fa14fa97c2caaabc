"""`selfplay train` end to end through real local Ray, then resume and replay (kill -9 and resume:
tests/test_soak.py, which checks every committed episode and checkpoint across the kills)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent

TINY = [
    "env=tictactoe",
    "policy.hidden_size=32", "policy.num_layers=1", "policy.num_heads=2",
    "policy.num_kv_heads=1", "policy.intermediate_size=64",
    "search.num_simulations=8",
    "learner.batch_size=32", "learner.min_replay_steps=32", "learner.publish_every=4steps",
    "run.games_per_actor=8", "run.num_actors=1", "run.progress=false",
    "run.eval_every=1000steps", "arena.gate_games=4", "arena.eval_games=4",
    "arena.search_simulations=4", "ray.num_cpus=2",
]


def selfplay_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "selfplay.cli", *args]


def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    result = subprocess.run(selfplay_cmd(*args), capture_output=True, text=True,
                            timeout=timeout, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def versions(run_dir: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("version-*"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run") / "ttt"
    run("train", *TINY, f"run.dir={run_dir}", "run.budget_steps=8", "run.budget_minutes=3")
    return run_dir


def test_smoke_run_produces_checkpoints_episodes_and_metrics(trained_run: Path):
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["learner_steps"] >= 8 and summary["stop_reason"] == "budget_steps"
    assert versions(trained_run)[0] == 0 and len(versions(trained_run)) >= 2
    # HF format: transformers can load the checkpoint as it is
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(trained_run / "checkpoints" / "version-000001")
    steps = pd.read_parquet(trained_run / "episodes")
    assert len(steps) >= 32 and set(steps["env_id"]) == {"selfplay/TicTacToe-v0"}
    assert steps["search_visits"].map(len).gt(0).all()
    assert (trained_run / "elo.json").exists()
    assert list((trained_run / "tensorboard").glob("events.out.tfevents.*"))
    assert summary["final_evaluation"], "the final evaluation against the references ran"


def test_refuses_to_overwrite_an_existing_run(trained_run: Path):
    result = subprocess.run(selfplay_cmd("train", *TINY, f"run.dir={trained_run}"),
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2 and "run.resume=true" in result.stderr


def test_replay_lists_shows_and_exports(trained_run: Path, tmp_path: Path):
    listed = run("replay", str(trained_run))
    assert "episodes" in listed.stdout and "TicTacToe" in listed.stdout
    shown = run("replay", str(trained_run), "--show", "-1")
    assert "visits" in shown.stdout and "root value" in shown.stdout and "move 1" in shown.stdout
    out = tmp_path / "steps.csv"
    run("replay", str(trained_run), "--export", str(out))
    assert len(pd.read_csv(out)) == len(pd.read_parquet(trained_run / "episodes"))
    page = tmp_path / "page.html"
    run("replay", str(trained_run), "--html", str(page), "--limit", "2")
    assert "<table>" in page.read_text()


def test_eval_refuses_a_checkpoint_on_another_env_than_its_run_trained_on(trained_run: Path):
    args = ("eval", "env=tictactoe", f"checkpoint={trained_run}", "player=random", "games=2",
            "search.num_simulations=2")
    asked = subprocess.run(selfplay_cmd(*args, "+env.kwargs.view=mover"), capture_output=True,
                           text=True, timeout=120, cwd=REPO)
    assert asked.returncode == 2 and "was trained on env.id=selfplay/TicTacToe-v0" in asked.stderr
    assert "Traceback" not in asked.stderr
    run(*args)  # the run's own env plays


def test_resume_continues_version_numbering(trained_run: Path):
    before = versions(trained_run)
    episodes_before = pd.read_parquet(trained_run / "episodes")["episode_id"].nunique()
    run("train", *TINY, f"run.dir={trained_run}", "run.resume=true", "run.budget_steps=16",
        "run.budget_minutes=3")
    after = versions(trained_run)
    assert after[: len(before)] == before and after[-1] > before[-1]
    assert pd.read_parquet(trained_run / "episodes")["episode_id"].nunique() > episodes_before
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["learner_steps"] >= 16  # counted from the checkpoint, not from zero


def test_wrong_loss_or_unknown_env_is_one_clear_error_before_ray(tmp_path: Path, capsys):
    # In this process (the CLI's own main), so Ray not being started is observable.
    import ray

    from selfplay.cli import main

    for args, message in [(["env=math", "learner=alphazero"], "trains on search statistics"),
                          (["env=tictactoe", "learner=grpo"], "is a game"),
                          (["env=math", "run.warm_start=rl"], "run.warm_start"),
                          (["env.id=selfplay/Nope-v0"], "unknown env id 'selfplay/Nope-v0'")]:
        assert main(["train", *args, f"run.dir={tmp_path / 'r'}"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith("selfplay train: "), err[-2000:]
        assert "Traceback" not in err and not ray.is_initialized()


def test_the_knobs_for_harder_games_run_together_through_ray(tmp_path: Path):
    run_dir = tmp_path / "knobs"
    run("train", *TINY, f"run.dir={run_dir}", "run.budget_steps=8", "run.budget_minutes=3",
        "learner.augment_symmetries=true", "search.root=gumbel", "search.max_considered=4",
        "search.full_search_prob=0.5", "search.fast_simulations=2",
        "learner.value_target_mix=0.5", "learner.lr_schedule=cosine", "learner.lr_decay_steps=8",
        "arena.gate_test=sprt", "arena.gate_batch=4", "arena.gate_max_games=8", "learner=dpo")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["learner_steps"] >= 8 and "loss: dpo" in (run_dir / "config.yaml").read_text()
    # DPO over sibling moves by their Q, against the start version, through the learner actor
    from selfplay.view.scalars import ScalarReader

    scalars = ScalarReader(run_dir / "tensorboard").refresh()
    assert "loss/dpo" in scalars and "loss/dpo_pair_fraction" in scalars
    steps = pd.read_parquet(run_dir / "episodes")
    searched = steps[steps["search_visits"].notna()]
    assert 0 < len(searched) < len(steps)  # fast moves are stored without statistics
    assert searched["search_policy"].notna().all()  # the Gumbel root's improved policy
    assert set(searched["simulations"]) == {8}  # every target is a full search's
