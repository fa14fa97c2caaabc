"""Reference solutions through the env API (``reference_actions``): stepped from ``reset`` they
solve every registered text env's problems (both splits) and every line of the shipped JSONL files;
their errors; bad dataset lines; untrusted actions (garbage, no answer, 1 MB, non-strings) and the
math verifier from a non-main thread."""

from __future__ import annotations

import glob
import json
import os
import threading
import time

import pytest

import envs  # noqa: F401  (registers the built-ins)
from envs.checker import TextEnvContractError, check_text_env
from envs.code.datasets import DATA_DIR as CODE_DATA_DIR
from envs.code.datasets import DatasetError
from envs.code.datasets import load_jsonl as load_code_jsonl
from envs.code.env import CodeEnv
from envs.math.answers import get_pool
from envs.math.datasets import DATA_DIR as MATH_DATA_DIR
from envs.math.datasets import DatasetFormatError
from envs.math.datasets import load_jsonl as load_math_jsonl
from envs.math.env import OBS_CHARSET, MathEnv
from envs.math.tasks import MathProblem
from envs.registration import BUILTIN_ENVS, make_env, selfplay_env_ids

MATH_FILES = sorted(glob.glob(os.path.join(MATH_DATA_DIR, "*.jsonl")))
CODE_FILES = sorted(glob.glob(os.path.join(CODE_DATA_DIR, "*.jsonl")))
TEXT_ENTRY_POINTS = ("envs.math.env:MathEnv", "envs.code.env:CodeEnv")
BUILTIN_TEXT_IDS = {line.id for line in BUILTIN_ENVS if line.entry_point in TEXT_ENTRY_POINTS}


def _is_code(env) -> bool:
    return isinstance(env.unwrapped, CodeEnv)


def _play_reference(env, seed: int) -> tuple[float, dict, list[str]]:
    """reset(seed), then step every reference action; checks the actions on the way."""
    env.reset(seed=seed)
    actions = env.get_wrapper_attr("reference_actions")()
    assert isinstance(actions, list) and actions and all(isinstance(a, str) for a in actions)
    env.reset(seed=seed)
    assert env.get_wrapper_attr("reference_actions")() == actions  # deterministic
    limit = env.unwrapped.max_action_chars
    for k, action in enumerate(actions):
        assert env.action_space.contains(action), (k, action[:80])
        assert len(action) <= limit and all(ch in OBS_CHARSET for ch in action)
        _, reward, terminated, truncated, info = env.step(action)
        last = k == len(actions) - 1
        assert (terminated or truncated) == last, (k, len(actions), actions)
    assert terminated and not truncated
    return reward, info, actions


def _assert_solved(env, reward: float, info: dict, actions: list[str]) -> None:
    where = (env.unwrapped.spec.id if env.unwrapped.spec else type(env.unwrapped).__name__,
             info.get("source"), actions)
    assert reward == 1.0, where
    if _is_code(env):
        assert info["passed"] == info["total"] > 0 and not info["invalid_action"], where
    else:
        assert info["correct"] is True and not info["invalid_action"], where


# -- every registered text env, both splits ---------------------------------------------------------


def _text_env_ids() -> list[str]:
    ids = []
    for env_id in selfplay_env_ids():
        env = make_env(env_id)
        _, info = env.reset(seed=0)
        if "legal_actions" not in info and hasattr(env.unwrapped, "reference_actions"):
            ids.append(env_id)
        env.close()
    return ids


TEXT_IDS = _text_env_ids()


def test_every_builtin_text_env_is_swept():
    assert BUILTIN_TEXT_IDS and BUILTIN_TEXT_IDS <= set(TEXT_IDS)


@pytest.mark.parametrize("env_id", TEXT_IDS)
def test_reference_actions_solve_registered_envs(env_id):
    made = 0
    for split in ("train", "test"):
        try:
            env = make_env(env_id, split=split)
        except ValueError as err:  # a small file may have no problem in one split
            assert "no problems" in str(err) or "no tasks" in str(err), err
            continue
        made += 1
        seeds = range(2) if _is_code(env) else range(8)  # the code sandbox is real: few episodes
        for seed in seeds:
            reward, info, actions = _play_reference(env, seed)
            _assert_solved(env, reward, info, actions)
            if getattr(env.unwrapped, "mode", None) == "multi_step":
                assert len(actions) <= env.unwrapped.max_steps
                assert all("\n" not in a for a in actions)  # a policy's step is one line
    assert made, f"{env_id}: neither split could be made"


# -- every line of the shipped JSONL files ----------------------------------------------------------


def _cover(env, sources: set[str], play) -> None:
    """Reset with seeds until every problem of the file has been played once."""
    seen: set[str] = set()
    for seed in range(2000):
        _, info = env.reset(seed=seed)
        if info["source"] in seen:
            continue
        seen.add(info["source"])
        play(seed)
        if seen == sources:
            return
    raise AssertionError(f"problems never drawn: {sorted(sources - seen)}")


@pytest.mark.parametrize("mode", ["single_turn", "multi_step"])
@pytest.mark.parametrize("path", MATH_FILES, ids=os.path.basename)
def test_shipped_math_files(path, mode):
    env = MathEnv(source=path, split="all", mode=mode, answer_timeout_s=10.0)
    sources = {p.source for p in load_math_jsonl(path).problems}

    def play(seed: int) -> None:
        reward, info, actions = _play_reference(env, seed)
        _assert_solved(env, reward, info, actions)
        if mode == "multi_step":
            assert all("\n" not in a for a in actions)

    _cover(env, sources, play)


@pytest.mark.parametrize("path", CODE_FILES, ids=os.path.basename)
def test_shipped_code_files(path):
    env = CodeEnv(source=path, split="all", reward="all")
    sources = {t.source for t in load_code_jsonl(path)}

    def play(seed: int) -> None:
        _assert_solved(env, *_play_reference(env, seed))

    _cover(env, sources, play)


def test_shipped_files_exist():
    assert len(MATH_FILES) >= 2 and len(CODE_FILES) >= 2


# -- the shape of the references --------------------------------------------------------------------


def test_single_turn_is_the_joined_steps_and_multi_step_one_per_action():
    single = MathEnv(families=["addition"], level=3)
    multi = MathEnv(families=["addition"], level=3, mode="multi_step")
    single.reset(seed=4)
    multi.reset(seed=4)
    steps = single.problem.solution_steps
    assert single.reference_actions() == ["\n".join(steps)]
    assert multi.reference_actions() == steps and steps[-1].startswith("Answer: ")


@pytest.mark.parametrize("max_steps", [1, 2, 3])
def test_more_steps_than_max_steps_are_joined(max_steps):
    env = MathEnv(families=["addition"], level=5, mode="multi_step", max_steps=max_steps)
    for seed in range(5):
        env.reset(seed=seed)
        assert len(env.problem.solution_steps) > max_steps
        reward, _, actions = _play_reference(env, seed)
        assert len(actions) == max_steps and reward == 1.0
        assert all("\n" not in a for a in actions)
        assert " ".join(actions) == " ".join(env.problem.solution_steps)


def test_only_the_last_multi_step_action_states_an_answer():
    env = MathEnv(mode="multi_step", max_steps=6)
    env.reset(seed=0)
    # a MATH solution boxes its answer before the "Answer:" line: the boxed line ends the episode
    boxed = MathProblem("Half?", "\\frac{1}{2}",
                        ["Halve it.", "So $\\boxed{\\frac{1}{2}}$.", "Answer: \\frac{1}{2}"])
    # an earlier line that "states" an answer, and a boxed answer spread over two lines
    early = MathProblem("Sum?", "7", ["The answer is not obvious.", "3 + 4 = 7", "Answer: 7"])
    spread = MathProblem("Sum?", "7", ["So", "$\\boxed{3", "+ 4}$ is", "$\\boxed{", "7}$."])
    expected = {
        "boxed": ["Halve it.", "So $\\boxed{\\frac{1}{2}}$."],
        "early": ["3 + 4 = 7", "Answer: 7"],
        "spread": ["So", "$\\boxed{3 + 4}$ is $\\boxed{ 7}$."],
    }
    for name, problem in [("boxed", boxed), ("early", early), ("spread", spread)]:
        env.set_state((problem, (), False))
        actions = env.reference_actions()
        assert actions == expected[name], name
        for k, action in enumerate(actions):
            _, reward, terminated, truncated, _ = env.step(action)
            assert terminated == (k == len(actions) - 1) and not truncated
        assert reward == 1.0, name


def test_typographic_characters_are_spelled_in_ascii():
    env = MathEnv(mode="single_turn")
    env.reset(seed=0)
    problem = MathProblem("Ann’s 3 × 5 apples?", "15",
                          ["Ann’s apples: 3 × 5 = 15 – “all” of them\tcafé", "Answer: 15"],
                          "gsm8k", 0, "x.jsonl:1")
    env.set_state((problem, (), False))
    (action,) = env.reference_actions()
    assert action == "Ann's apples: 3 * 5 = 15 - \"all\" of them cafe\nAnswer: 15"
    assert env.step(action)[1] == 1.0


def test_code_reference_in_the_charset_still_passes(tmp_path):
    lines = [
        {"text": "Return the word cafe with an accent.", "code": "def cafe():\n\treturn 'café'",
         "test_list": ["assert cafe() == 'café'"]},
        {"task_id": "T/1", "prompt": "def inc(x):\n    \"\"\"x + 1 → x plus one\"\"\"\n",
         "canonical_solution": "    return x + 1\r\n", "entry_point": "inc",
         "test": "def check(candidate):\n    assert candidate(1) == 2\n"},
    ]
    path = tmp_path / "unicode.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    env = CodeEnv(source=str(path), split="all", reward="all")
    _cover(env, {f"{path}:1", f"{path}:2"},
           lambda seed: _assert_solved(env, *_play_reference(env, seed)))


# -- reference errors -------------------------------------------------------------------------------


def test_before_reset_is_a_clear_error():
    with pytest.raises(ValueError, match="reset"):
        MathEnv().reference_actions()
    with pytest.raises(ValueError, match="reset"):
        CodeEnv().reference_actions()
    with pytest.raises(ValueError, match="reset"):
        make_env("selfplay/MathSteps-v0").get_wrapper_attr("reference_actions")()


def test_problem_without_reference_names_file_and_line(tmp_path):
    path = tmp_path / "gsm.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2"}) + "\n")
    env = MathEnv(source=str(path))
    env.reset(seed=0)
    env.problem.solution_steps = []
    with pytest.raises(ValueError, match=f"{path}:1 has no reference solution"):
        env.reference_actions()

    code_path = tmp_path / "mbpp.jsonl"
    code_path.write_text(json.dumps({"text": "one", "code": "def one():\n    return 1",
                                     "test_list": ["assert one() == 1"]}) + "\n")
    code = CodeEnv(source=str(code_path), split="all")
    code.reset(seed=0)
    code.task.reference_solution = ""
    with pytest.raises(ValueError, match=f"{code_path}:1.*has no reference solution"):
        code.reference_actions()


def test_reference_over_the_action_limit_is_a_clear_error():
    env = MathEnv(families=["multiplication"], level=3, max_action_chars=20)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="max_action_chars=20"):
        env.reference_actions()
    code = CodeEnv(level=3, max_action_chars=20)
    code.reset(seed=0)
    with pytest.raises(ValueError, match="max_action_chars=20"):
        code.reference_actions()


def test_unwritable_answer_and_fenced_program_are_clear_errors():
    env = MathEnv()
    env.reset(seed=0)
    env.set_state((MathProblem("q?", "π", ["so π", "Answer: π"], source="f.jsonl:7"), (), False))
    with pytest.raises(ValueError, match="outside the action charset"):
        env.reference_actions()
    code = CodeEnv(level=1)
    code.reset(seed=0)
    code.task.reference_solution = 'def f():\n    """```python\n    x\n    ```"""\n'
    with pytest.raises(ValueError, match="fence"):
        code.reference_actions()


# -- the contract check catches broken references ---------------------------------------------------


def test_checker_catches_a_wrong_reference():
    env = make_env("selfplay/MathArithmetic-v0")
    env.unwrapped.reference_actions = lambda: ["Answer: -1"]
    with pytest.raises(TextEnvContractError, match="reward 0.0"):
        check_text_env(env)
    env = make_env("selfplay/MathSteps-v0")
    env.unwrapped.reference_actions = lambda: ["Answer: -1", "more"]
    with pytest.raises(TextEnvContractError, match="ended the episode"):
        check_text_env(env)
    env = make_env("selfplay/MathSteps-v0")
    env.unwrapped.reference_actions = lambda: ["caf\u00e9"]
    with pytest.raises(TextEnvContractError, match="outside the action space"):
        check_text_env(env)


# -- bad dataset lines: errors at load time naming file and line ------------------------------------


@pytest.mark.parametrize(
    "obj, message",
    [
        ({"question": "How many?", "answer": "Some reasoning, no final answer."}, "no '####"),
        ({"question": "How many?", "answer": "It is 3.\n####   "}, "empty after '####'"),
        ({"question": "How many?", "answer": 3}, "must be strings"),
        ({"question": "   ", "answer": "#### 3"}, "question is empty"),
        ({"question": "Angle?", "answer": "#### 30\u00b0"}, "outside printable ASCII"),
        ({"problem": "Half?", "solution": "It is one half."}, "no \\\\boxed"),
        ({"problem": "Half?", "solution": "It is \\boxed{}."}, "empty or unbalanced"),
        ({"problem": "Half?", "solution": "It is \\boxed{\\frac{1}{2}."}, "empty or unbalanced"),
        ({"question": "How many?"}, "neither GSM8K"),
    ],
)
def test_math_line_without_usable_answer(tmp_path, obj, message):
    path = tmp_path / "math.jsonl"
    good = json.dumps({"question": "1+1?", "answer": "#### 2"})
    path.write_text(good + "\n" + json.dumps(obj) + "\n")
    with pytest.raises(DatasetFormatError, match=message) as err:
        load_math_jsonl(str(path))
    assert str(err.value).startswith(f"{path}:2:")
    with pytest.raises(DatasetFormatError, match=f"{path}:2:"):
        MathEnv(source=str(path))


@pytest.mark.parametrize(
    "obj, message",
    [
        ({"text": "t", "code": "def f():\n    return 1", "test_list": ["print(f())"]},
         "holds no assert"),
        ({"text": "t", "code": "def f():\n    return 1", "test_list": "assert f() == 1"},
         "test_list"),
        ({"text": "t", "test_list": ["assert f() == 1"]}, "neither an MBPP line"),
        ({"text": "t", "code": "   ", "test_list": ["assert f() == 1"]}, "'code' must be"),
        ({"prompt": "def f():\n", "canonical_solution": "    return 1\n", "entry_point": "f",
          "test": "assert f() == 1\n"}, "defines no check"),
        ({"prompt": "def f():\n", "canonical_solution": "    return 1\n", "entry_point": "f",
          "test": ""}, "'test' must be"),
    ],
)
def test_code_line_without_usable_tests(tmp_path, obj, message):
    path = tmp_path / "code.jsonl"
    good = json.dumps({"text": "t", "code": "def g():\n    return 1",
                       "test_list": ["assert g() == 1"]})
    path.write_text(good + "\n" + json.dumps(obj) + "\n")
    with pytest.raises(DatasetError, match=message) as err:
        load_code_jsonl(str(path))
    assert str(err.value).startswith(f"{path}:2:")
    with pytest.raises(DatasetError, match=f"{path}:2:"):
        CodeEnv(source=str(path), split="all")


# -- untrusted actions ------------------------------------------------------------------------------

ONE_MB = "9" * 1_000_000
NON_STRINGS = [None, 42, 4.2, b"Answer: 1", ["Answer: 1"], {"a": 1}]


@pytest.mark.parametrize("mode", ["single_turn", "multi_step"])
@pytest.mark.parametrize("bad", [ONE_MB, "Answer: " + ONE_MB] + NON_STRINGS,
                         ids=["1MB", "1MB answer"] + [type(b).__name__ for b in NON_STRINGS])
def test_math_invalid_actions(mode, bad):
    env = MathEnv(mode=mode)
    env.reset(seed=0)
    start = time.monotonic()
    _, reward, terminated, truncated, info = env.step(bad)
    assert reward == 0.0 and terminated and not truncated and info["invalid_action"] is True
    assert time.monotonic() - start < 1.0


def test_math_one_megabyte_answer_within_the_limit_is_judged_promptly():
    env = MathEnv(max_action_chars=2_000_000, answer_timeout_s=1.0)
    for action in ("Answer: " + ONE_MB, "\\boxed{" + ONE_MB + "}", "(" * 500_000 + ")" * 500_000):
        env.reset(seed=0)
        start = time.monotonic()
        _, reward, terminated, _, info = env.step(action)
        assert reward == 0.0 and terminated and info["correct"] is False
        assert time.monotonic() - start < 5.0


@pytest.mark.parametrize("mode", ["single_turn", "multi_step"])
def test_math_garbage_and_no_answer_get_zero(mode):
    env = MathEnv(mode=mode, max_steps=3)
    for action in ("garbage", "\x00\x01\xff" * 50, "I think about it\nand think more\n" * 20):
        env.reset(seed=1)
        for _ in range(3):
            _, reward, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        assert (terminated or truncated) and reward == 0.0 and info["correct"] is False


@pytest.mark.parametrize("bad", [ONE_MB] + NON_STRINGS,
                         ids=["1MB"] + [type(b).__name__ for b in NON_STRINGS])
def test_code_invalid_actions(bad):
    env = CodeEnv(level=1)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(bad)
    assert reward == 0.0 and terminated and not truncated and info["invalid_action"] is True


def test_code_garbage_and_a_one_megabyte_program_within_the_limit_get_zero():
    env = CodeEnv(level=1, max_action_chars=2_000_000, timeout_s=5.0)
    for action in ("garbage", "#" * 1_000_000):
        env.reset(seed=0)
        _, reward, terminated, _, info = env.step(action)
        assert reward == 0.0 and terminated and info["invalid_action"] is False


# -- from a non-main thread (Ray actors call from one) ----------------------------------------------


def _in_thread(fn, wait_s: float):
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(timeout=wait_s)
    assert out, "the call hung"
    return out[0], time.monotonic() - start


def test_math_check_from_a_non_main_thread_returns_promptly():
    assert get_pool().warm_up(), "math-verify workers did not start"
    env = MathEnv(mode="single_turn", answer_timeout_s=1.0)
    env.reset(seed=0)
    (_, reward, terminated, _, _), took = _in_thread(lambda: env.step("Answer: 9^{9^{9^{9}}}"), 30)
    assert reward == 0.0 and terminated and took < 1.0 + 3.0, f"{took:.2f}s"
    get_pool().warm_up()  # the killed worker's replacement
    env = MathEnv(source="math_sample.jsonl", answer_timeout_s=10.0)
    env.reset(seed=2)
    (action,) = env.reference_actions()
    (_, reward, *_), took = _in_thread(lambda: env.step(action), 30)
    assert reward == 1.0 and took < 10.0


def test_code_reference_from_a_non_main_thread():
    env = CodeEnv(level=2)
    env.reset(seed=3)
    (action,) = env.reference_actions()
    (_, reward, *_), _ = _in_thread(lambda: env.step(action), 30)
    assert reward == 1.0
