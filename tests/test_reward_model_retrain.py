"""Retraining the reward model on the newest policy's samples (``feedback.retrain_every``): the
pairs come from the env's own verdict, held-out prompts are never trained on, retraining on a
shifted policy's samples lifts the held-out accuracy that the first training left at chance, and
a run retrains, saves versions and scores its rollouts with them through Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from selfplay.feedback.retrain import held_out_prompt, retrain, verifier_samples
from selfplay.feedback.reward_model import (
    PreferencePair,
    build_reward_model,
    train_reward_model,
)
from selfplay.policy.config import PolicyConfig
from selfplay.types import Episode, Step

REPO = Path(__file__).resolve().parent.parent
TINY = PolicyConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                    intermediate_size=64, max_seq_len=64)


def episode(prompt: str, answer: str, env_reward: float, outcome: float, i: int) -> Episode:
    step = Step(observation=prompt, action=answer, player=0, reward=outcome)
    return Episode(episode_id=f"e{i}", env_id="t/T-v0", seed=0, policy_version=0, steps=[step],
                   outcome=outcome, started_at=0.0, finished_at=1.0,
                   info={"env_reward": str(env_reward)}, group_id=prompt)


def samples(rng: np.random.Generator, letters: str, good: str, prompts: int, k: int = 4):
    """``k`` answers per prompt, 8 letters from ``letters``; the verifier scores the count of
    ``good`` (the combined outcome is noise, to show the env's own verdict is what counts)."""
    out = []
    for p in range(prompts):
        prompt = f"n={p}:{letters}"
        for _ in range(k):
            answer = "".join(rng.choice(list(letters), size=8))
            out.append(episode(prompt, answer, answer.count(good) / 8, float(rng.normal()), len(out)))
    return out


def test_pairs_use_the_env_verdict_and_held_out_prompts_are_stable():
    eps = [episode("p", "aa", 1.0, -5.0, 0), episode("p", "ab", 0.0, 9.0, 1)]
    prompts, responses, rewards = verifier_samples(eps)
    assert rewards == [1.0, 0.0] and responses == ["aa", "ab"] and prompts == ["p", "p"]
    names = [f"prompt {i}" for i in range(2000)]
    side = [held_out_prompt(n, 0.2) for n in names]
    assert side == [held_out_prompt(n, 0.2) for n in names]  # the same prompt, the same side
    assert 0.15 < np.mean(side) < 0.25


def test_retraining_on_a_shifted_policys_samples_lifts_held_out_accuracy():
    rng = np.random.default_rng(0)
    model, tokenizer = build_reward_model(TINY)
    # First trained where the policy was: answers over "ac", more 'a' is better.
    first = [PreferencePair(f"n={i}:ac", "a" * 6 + "cc", "a" * 2 + "c" * 6, 0.5) for i in range(8)]
    first += [PreferencePair(f"n={i}:ac", c, r, 0.1) for i, (c, r) in enumerate(
        [("aaaaaaac", "acccccca"), ("caaaaaaa", "cccccaac"), ("aacaaaaa", "ccaccccc")])]
    train_reward_model(model, tokenizer, first, steps=20, batch_size=8, lr=5e-3, seed=0)
    # The policy moved: its answers are over "bd" now, and more 'b' is better.
    shifted = samples(rng, "bd", "b", prompts=160)
    result, trained = retrain(model, shifted, steps=60, batch_size=32, lr=5e-3, held_out=0.3,
                              seed=1)
    assert trained and result.train_pairs > 100 and result.held_out_pairs > 30
    assert result.accuracy_after > result.accuracy_before + 0.15, result
    assert result.accuracy_after > 0.75, result


def test_no_pairs_leaves_the_model_as_it_was():
    model, _ = build_reward_model(TINY)
    same = [episode(f"p{i}", "x" * (i % 3 + 1), 1.0, 0.0, i) for i in range(12)]
    before = model.rewards(["p0"], ["x"])
    result, trained = retrain(model, same, steps=5, batch_size=4, lr=1e-2, held_out=0.3, seed=0)
    assert not trained and result.train_pairs == 0 and result.version == -1
    assert np.allclose(model.rewards(["p0"], ["x"]), before)


@pytest.mark.slow
def test_a_run_retrains_its_reward_model_on_the_cadence(tmp_path: Path):
    rm_dir = tmp_path / "rm"
    model, _ = build_reward_model(PolicyConfig(hidden_size=64, num_layers=1, num_heads=2,
                                               num_kv_heads=1, intermediate_size=128,
                                               max_seq_len=128))
    model.save(rm_dir)
    run_dir = tmp_path / "run"
    args = ["train", "env.id=usertest/Parity-v0", "env.module=parity_task", "learner=grpo",
            "feedback=reward_model", f"feedback.sources.0.path={rm_dir}",
            "feedback.retrain_every=3steps", "feedback.retrain_steps=4",
            "feedback.retrain_episodes=64", "policy.hidden_size=64", "policy.num_layers=1",
            "policy.num_heads=2", "policy.num_kv_heads=1", "policy.intermediate_size=128",
            "sampling.k=4", "sampling.max_tokens=6", "run.games_per_actor=4",
            "learner.batch_size=16", "learner.min_replay_steps=16", "learner.steps_per_call=1",
            "learner.publish_every=3steps", "arena.gate=false", "run.eval_every=1000steps",
            "arena.eval_games=4", "run.budget_steps=9", "run.budget_minutes=4",
            "run.progress=false", "ray.num_cpus=2", f"run.dir={run_dir}"]
    result = subprocess.run([sys.executable, "-m", "selfplay.cli", *args], capture_output=True,
                            text=True, timeout=300, cwd=REPO / "tests" / "user_envs", check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["reward_model_version"] >= 1
    saved = sorted((run_dir / "reward_models").glob("version-*"))
    assert saved and (saved[0] / "reward_head.safetensors").exists()
    assert not any((rm_dir.parent).glob("rm/version-*"))  # the source's own dir is never written
    from selfplay.view.scalars import ScalarReader

    scalars = ScalarReader(run_dir / "tensorboard").refresh()
    assert "feedback/reward_model_accuracy_after" in scalars
    assert "reward model v1: held-out accuracy" in result.stdout + result.stderr
