"""Math task families, the JSONL loader and MathEnv: reference solutions verify, wrong answers do
not, both modes, the step limit, no answer leak before the end, untrusted actions, honest splits."""

from __future__ import annotations

import json
import os
import re

import pytest
import yaml

from envs.math.datasets import (
    GSM8K_SAMPLE,
    MATH_SAMPLE,
    DatasetFormatError,
    load_jsonl,
    load_problems,
)
from envs.math.env import MathEnv, check
from envs.math.tasks import FAMILIES, LEVELS, generate, split_of
from envs.registration import make_env

MATH_IDS = [
    "selfplay/MathArithmetic-v0",
    "selfplay/MathSteps-v0",
    "selfplay/MathLinear-v0",
    "selfplay/MathJSONL-v0",
]
CONF_DIR = os.path.join(os.path.dirname(__file__), "..", "conf", "env")


def _true_answer(question: str) -> int:
    """The answer computed independently of the generator's own solution."""
    m = re.fullmatch(r"What is (\d+) ([-+*]) (\d+)\?", question)
    if m:
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        return a + b if op == "+" else a - b if op == "-" else a * b
    m = re.fullmatch(r"Solve for x: (-?\d+)x(?: ([-+]) (\d+))? = (-?\d+)", question)
    assert m, question
    a, c = int(m.group(1)), int(m.group(4))
    b = int(m.group(3) or 0) * (-1 if m.group(2) == "-" else 1)
    assert (c - b) % a == 0
    return (c - b) // a


# -- task families --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("level", LEVELS)
def test_reference_solutions_pass_the_verifier(family, level):
    for seed in range(30):
        for split in ("train", "test"):
            p = generate(family, level, seed, split)
            assert p.family == family and p.level == level and p.source == "procedural"
            assert p.solution_steps[-1] == f"Answer: {p.answer}"
            assert int(p.answer) == _true_answer(p.question)
            assert check(p, "\n".join(p.solution_steps)) == 1.0
            assert check(p, p.answer) == 1.0
            assert check(p, f"Answer: {int(p.answer) + 1}") == 0.0
            assert check(p, "\n".join(p.solution_steps[:-1])) == 0.0  # no final answer given


def test_column_addition_writes_carries():
    steps = generate("addition", 3, 0).solution_steps
    assert steps[0].startswith("ones: ") and "carry" in steps[0]
    p = generate("multiplication", 2, 1)
    assert any("->" in s for s in p.solution_steps)


def test_generation_is_deterministic():
    for family in FAMILIES:
        assert generate(family, 2, 7) == generate(family, 2, 7)
    assert len({generate("addition", 3, s).question for s in range(50)}) > 45


def test_train_and_test_problems_are_disjoint():
    for family in FAMILIES:
        train = {generate(family, 1, s, "train").question for s in range(300)}
        test = {generate(family, 1, s, "test").question for s in range(300)}
        assert train.isdisjoint(test), family
        assert all(split_of(q) == "test" for q in test)


def test_bad_family_level_split_are_clear_errors():
    with pytest.raises(ValueError, match="unknown math task family"):
        generate("division", 1, 0)
    with pytest.raises(ValueError, match="level"):
        generate("addition", 9, 0)
    with pytest.raises(ValueError, match="split"):
        generate("addition", 1, 0, "dev")


# -- the JSONL loader ----------------------------------------------------------------------------


def test_loads_both_sample_formats():
    gsm = load_problems(GSM8K_SAMPLE)
    assert len(gsm) >= 5 and {p.family for p in gsm} == {"gsm8k"}
    assert all(p.answer.isdigit() and p.solution_steps[-1] == f"Answer: {p.answer}" for p in gsm)
    assert "<<" not in "".join(gsm[0].solution_steps)
    math = load_problems(MATH_SAMPLE)
    assert len(math) >= 5 and {p.family for p in math} == {"math"}
    assert math[0].answer == "\\frac{1}{2}" and math[0].level == 1
    for p in gsm + math:  # every shipped reference solution verifies
        assert check(p, "\n".join(p.solution_steps), timeout_s=10.0) == 1.0
    assert [p.source for p in gsm] == [f"gsm8k_sample.jsonl:{i}" for i in range(1, len(gsm) + 1)]


def test_mixed_formats_and_malformed_lines(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2"}),
        "",
        json.dumps({"problem": "Half of 1?", "solution": "It is $\\boxed{\\frac12}$."}),
        "{not json",
        json.dumps({"question": "x?", "answer": "no final marker"}),
        json.dumps(["a", "list"]),
        json.dumps({"prompt": "?", "completion": "!"}),
        json.dumps({"problem": "p", "solution": "no box"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError) as err:
        load_jsonl(str(path))
    assert f"{path}:4:" in str(err.value) and "not valid JSON" in str(err.value)
    result = load_jsonl(str(path), on_error="skip")
    assert [p.answer for p in result.problems] == ["2", "\\frac12"]
    assert result.skipped == 5
    assert [e.split(": ")[0].rsplit(":", 1)[1] for e in result.errors] == ["4", "5", "6", "7", "8"]
    assert any("neither GSM8K" in e for e in result.errors)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_jsonl(str(tmp_path / "missing.jsonl"))


# -- the environment ------------------------------------------------------------------------------


def test_single_turn_episode():
    env = MathEnv(families=["addition"], level=2)
    obs, info = env.reset(seed=3)
    assert obs == env.problem.question and env.observation_space.contains(obs)
    assert "answer" not in info and info["problem_family"] == "addition" and info["level"] == 2
    obs, reward, terminated, truncated, info = env.step("\n".join(env.problem.solution_steps))
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["answer"] == env.problem.answer and info["correct"] is True
    with pytest.raises(RuntimeError, match="reset"):
        env.step("1")
    env.reset(seed=4)
    _, reward, terminated, _, info = env.step(f"The answer is {int(env.problem.answer) + 1}.")
    assert (reward, terminated, info["correct"]) == (0.0, True, False)


def test_multi_step_episode_and_no_leak():
    env = MathEnv(families=["addition", "multiplication"], level=1, mode="multi_step")
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        question = obs
        steps = env.problem.solution_steps
        for k, step in enumerate(steps):
            obs, reward, terminated, truncated, info = env.step(step)
            assert obs == question + "\n" + "\n".join(steps[: k + 1])
            assert len(obs) <= 256  # a tiny LM's context at level 1
            if k < len(steps) - 1:
                assert not terminated and not truncated and reward == 0.0
                assert "answer" not in info and "correct" not in info
        assert (reward, terminated, info["answer"]) == (1.0, True, env.problem.answer)
        assert info["num_steps"] == len(steps)


def test_step_limit_ends_the_episode():
    env = MathEnv(mode="multi_step", max_steps=3)
    env.reset(seed=0)
    for _ in range(2):
        _, reward, terminated, truncated, info = env.step("thinking...")
        assert not (terminated or truncated) and "answer" not in info
    _, reward, terminated, truncated, info = env.step("still thinking")
    assert (reward, terminated, truncated) == (0.0, False, True)
    assert info["answer"] == env.problem.answer


def test_wrong_final_step_ends_with_zero():
    env = MathEnv(mode="multi_step", families=["linear"])
    env.reset(seed=1)
    _, reward, terminated, _, info = env.step(f"\\boxed{{{int(env.problem.answer) + 2}}}")
    assert (reward, terminated, info["correct"]) == (0.0, True, False)


@pytest.mark.parametrize("mode", ["single_turn", "multi_step"])
@pytest.mark.parametrize("bad", [None, 42, b"Answer: 1", ["Answer: 1"], "9" * 1_000_000])
def test_untrusted_actions_are_wrong_answers(mode, bad):
    env = MathEnv(mode=mode)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(bad)
    assert reward == 0.0 and terminated and not truncated
    assert info["invalid_action"] is True and info["answer"] == env.problem.answer


def test_reset_is_deterministic_and_splits_differ():
    a, b = MathEnv(level=[1, 2, 3]), MathEnv(level=[1, 2, 3])
    assert [a.reset(seed=s)[0] for s in range(20)] == [b.reset(seed=s)[0] for s in range(20)]
    train = {MathEnv(split="train").reset(seed=s)[0] for s in range(200)}
    test = {MathEnv(split="test").reset(seed=s)[0] for s in range(200)}
    assert train.isdisjoint(test)


def test_level_one_observations_fit_a_tiny_context():
    for family in FAMILIES:
        env = MathEnv(families=[family], level=1)
        assert all(len(env.reset(seed=s)[0]) <= 64 for s in range(50))


def test_bad_kwargs_are_clear_errors():
    with pytest.raises(ValueError, match="mode"):
        MathEnv(mode="chat")
    with pytest.raises(ValueError, match="families"):
        MathEnv(families=["division"])
    with pytest.raises(ValueError, match="level"):
        MathEnv(level=0)
    with pytest.raises(FileNotFoundError, match="neither 'procedural' nor"):
        MathEnv(source="no/such/file.jsonl")


def test_jsonl_env_with_math_sample():
    env = MathEnv(source=MATH_SAMPLE)
    seen = set()
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        assert env.observation_space.contains(obs) and "answer" not in info
        seen.add(env.problem.answer)
    assert len(seen) > 3
    env.reset(seed=0)
    _, reward, _, _, info = env.step("so the result is $\\boxed{" + env.problem.answer + "}$")
    assert reward == 1.0 and info["problem_family"] == "math"


# -- registration and configs ---------------------------------------------------------------------


@pytest.mark.parametrize("env_id", MATH_IDS)
def test_registered_envs(env_id):
    env = make_env(env_id)
    obs, info = env.reset(seed=5)
    assert env.observation_space.contains(obs)
    assert make_env(env_id).reset(seed=5)[0] == obs
    _, reward, terminated, _, info = env.step("Answer: " + env.unwrapped.problem.answer)
    assert reward == 1.0 and terminated and "answer" in info


@pytest.mark.parametrize(
    "name", ["math.yaml", "math_steps.yaml", "math_linear.yaml", "math_jsonl.yaml"]
)
def test_conf_files_make_their_envs(name):
    with open(os.path.join(CONF_DIR, name)) as f:
        cfg = yaml.safe_load(f)
    assert set(cfg) <= {"id", "module", "kwargs"} and cfg["id"] in MATH_IDS
    env = make_env(cfg["id"], **cfg.get("kwargs", {}))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
