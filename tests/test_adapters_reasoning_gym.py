"""reasoning-gym tasks through selfplay.adapters.reasoning_gym: the contracts, the task's own
scorer as the reward, the held-out split, the scorer's time limit, and `selfplay eval`."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

reasoning_gym = pytest.importorskip("reasoning_gym")

from gymnasium.utils.env_checker import check_env

import selfplay
from envs.checker import check_text_env
from envs.registration import selfplay_env_ids


@pytest.fixture(scope="module", autouse=True)
def adapter():
    """The adapter, imported (so its ids registered) when these tests run, not when pytest
    collects: tests/test_env_contract.py sweeps the registry as it stands at collection."""
    from selfplay.adapters import reasoning_gym

    return reasoning_gym


REPO = Path(__file__).resolve().parent.parent
TASKS = ["basic_arithmetic", "chain_sum"]


def make(task: str, **kwargs):
    return selfplay.make_env(f"reasoning_gym/{task}-v0", **kwargs)


def test_one_import_registers_every_task(adapter):
    assert len(adapter.REGISTERED_IDS) == len(reasoning_gym.factory.DATASETS)
    assert {f"reasoning_gym/{t}-v0" for t in TASKS} <= set(selfplay_env_ids())


@pytest.mark.parametrize("task", TASKS)
def test_gymnasium_check_env_and_the_text_contract(task: str):
    env = make(task)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Text-space advice is not a contract failure
        check_env(env.unwrapped, skip_render_check=True)
    for seed in (0, 1):
        check_text_env(env, seed=seed)  # references included: they score 1.0


def test_the_reward_is_the_tasks_own_score():
    env = make("spell_backward", split="all")
    dataset = reasoning_gym.create_dataset("spell_backward", seed=0, size=10_000)
    for seed in range(4):
        env.reset(seed=seed)
        entry = dataset[env.unwrapped.index]
        assert env.unwrapped.entry["question"] == entry["question"]
        word = entry["answer"]
        for action, said in [(f"Answer: {word}", word), (f"<answer>{word}</answer>", word),
                             (f"thinking...\n<answer>{word[:-1]}</answer>", word[:-1]),
                             (word + "x", word + "x")]:
            env.reset(seed=seed)
            _, reward, done, _, info = env.step(action)
            assert done and info["predicted"] == said
            assert reward == min(1.0, dataset.score_answer(said, entry))  # (it can give 1 + 1e-16)
            assert info["correct"] == (reward == 1.0)


def test_train_and_test_questions_are_disjoint():
    train, test = make("chain_sum"), make("chain_sum", split="test")
    questions = {split: {env.reset(seed=s)[0] for s in range(40)}
                 for split, env in (("train", train), ("test", test))}
    assert len(questions["test"]) > 30 and not questions["train"] & questions["test"]


def test_bad_kwargs_are_one_clear_error():
    for kwargs, message in [({"config": {"seed": 3}}, "dataset_seed"),
                            ({"config": {"bogus": 1}}, "bogus"),
                            ({"config": {"min_terms": 5, "max_terms": 2}}, "max_terms"),
                            ({"split": "dev"}, "split='dev'")]:
        with pytest.raises(ValueError, match=message):
            make("chain_sum", **kwargs)


def test_a_scorer_that_runs_too_long_is_stopped():
    """simple_integration parses the answer with sympy: a tower of powers would run for hours."""
    env = make("simple_integration", scorer_timeout_s=1.0)
    env.reset(seed=0)
    env.unwrapped.score("0")  # the scorer process is up (its start is not timed)
    env.reset(seed=0)
    _, reward, _, _, info = env.step("Answer: 9**9**9**9")
    assert reward == 0.0 and info["scorer_error"] == "timeout"
    env.unwrapped.scorer_timeout_s = 60.0  # sympy's own check of a right answer, on a busy host
    env.reset(seed=0)
    _, reward, _, _, info = env.step(env.unwrapped.reference_actions()[0])
    assert reward == 1.0 and info["scorer_error"] == ""  # a new scorer process took over


@pytest.mark.slow
def test_selfplay_eval_on_a_reasoning_gym_task_through_the_cli():
    cmd = [sys.executable, "-m", "selfplay.cli", "eval", "env=reasoning_gym",
           "env.id=reasoning_gym/chain_sum-v0", "games=3", "sampling.k=2", "run.progress=false",
           "policy.hidden_size=32", "policy.num_layers=1", "policy.num_heads=2",
           "policy.num_kv_heads=1", "policy.intermediate_size=64", "policy.max_seq_len=160"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                            check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["env"] == "reasoning_gym/chain_sum-v0" and line["split"] == "test"
    assert line["problems"] == 3 and line["k"] == 2 and 0.0 <= line["pass@2"] <= 1.0
