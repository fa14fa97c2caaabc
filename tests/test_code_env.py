"""CodeEnv, the procedural tasks, the JSONL loader and the test verifier."""

from __future__ import annotations

import json

import pytest

from envs.code.datasets import DatasetError, load_jsonl
from envs.code.env import CodeEnv, strip_fences
from envs.code.sandbox import SandboxPool
from envs.code.tasks import FAMILIES, LEVELS, generate, split_of
from envs.code.verify import compile_test, run_tests, score
from envs.registration import make_env


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(2) as p:
        yield p


def _family_task(name: str, split: str = "train"):
    level = next(f.level for f in FAMILIES if f.name == name)
    for seed in range(500):
        for sp in ("train", "test"):
            task = generate(seed, level, sp)
            if task.meta["family"] == name:
                return task
    raise AssertionError(name)


def test_every_family_reference_solution_gets_reward_1(pool):
    tasks = [_family_task(f.name) for f in FAMILIES]
    reports = [run_tests(t, t.reference_solution, pool=pool) for t in tasks]
    for task, rep in zip(tasks, reports):
        assert rep.all_passed, (task.source, rep.details, rep.run.stderr)
        assert rep.opaque == 0 and score(rep, "all") == 1.0


def test_tasks_are_deterministic_and_splits_disjoint():
    assert generate(5, 2).prompt == generate(5, 2).prompt
    assert generate(5, 2, "train").prompt != generate(5, 2, "test").prompt
    train = {(generate(s, None, "train").meta["family"], repr(sorted(generate(s, None, "train")
             .meta["constants"].items()))) for s in range(150)}
    test = {(generate(s, None, "test").meta["family"], repr(sorted(generate(s, None, "test")
            .meta["constants"].items()))) for s in range(150)}
    assert train and test and not train & test
    for lv in LEVELS:
        for sp in ("train", "test"):
            t = generate(0, lv, sp)
            assert t.level == lv and split_of(t.meta["family"], t.meta["constants"]) == sp
    with pytest.raises(ValueError, match="level"):
        generate(0, 7)


@pytest.mark.parametrize("level", LEVELS)
def test_env_rewards_reference_1_and_wrong_less(level, pool):
    env = CodeEnv(level=level, pool=pool)
    obs, info = env.reset(seed=11)
    task = env.task
    assert obs.startswith("Write a Python function") and info["level"] == level
    _, r, term, trunc, info = env.step(f"Here you go:\n```python\n{task.reference_solution}```\n")
    assert (r, term, trunc) == (1.0, True, False) and info["passed"] == info["total"]
    env.reset(seed=11)
    wrong = f"def {task.entry_point}(*args):\n    return None\n"
    _, r, _, _, info = env.step(wrong)
    assert r < 1.0 and info["passed"] < info["total"]


def test_fraction_vs_all(pool):
    # right for non-negative x only: some tests pass, some fail
    for seed in range(50):
        env_f = CodeEnv(level=1, reward="fraction", pool=pool)
        env_a = CodeEnv(level=1, reward="all", pool=pool)
        env_f.reset(seed=seed)
        env_a.reset(seed=seed)
        if env_f.task.meta["family"] != "add_const":
            continue
        prog = (f"def {env_f.task.entry_point}(x):\n"
                f"    return x + {env_f.task.meta['constants']['k']} if x >= 0 else 0\n")
        rf = env_f.step(prog)[1]
        ra = env_a.step(prog)[1]
        if 0 < rf < 1:
            assert ra == 0.0
            return
    pytest.fail("no add_const task with mixed-sign inputs among 50 seeds")


def test_fake_pass_markers_get_no_credit(pool):
    task = _family_task("gcd")
    # Reads its own harness to learn the tag, prints a "result" for every test, then exits early.
    forger = (
        "import re, sys, os\n"
        "src = open('main.py').read()\n"
        "tag = re.search(r\"_TAG, _EXPRS.*? = '([0-9a-f]+)'\", src).group(1)\n"
        "for i in range(50):\n"
        "    for v in ('0', '1', 'True', '6'):\n"
        "        print('@@' + tag + ' ' + str(i) + ' ' + '[\"val\", \"' + v + '\", true]')\n"
        "sys.stdout.flush()\n"
        "os._exit(0)\n"
    )
    rep = run_tests(task, forger, pool=pool)
    assert rep.run.stdout.count("@@") >= 200  # the forger did find the tag and print its lines
    assert not any(rep.passed)
    # ...and without repeating lines: one guess per test, the tests still fail (values unknown)
    forger1 = forger.replace("('0', '1', 'True', '6')", "('1',)")
    rep = run_tests(task, forger1, pool=pool)
    assert sum(rep.passed) < len(rep.passed)
    env = CodeEnv(level=3, reward="all", pool=pool)
    env.reset(seed=0)
    assert env.step(forger)[1] == 0.0


def test_non_str_and_hostile_actions_are_wrong_programs(pool):
    env = CodeEnv(level=1, pool=pool, timeout_s=1.5)
    for action in (None, 42, b"def f(): pass", ["x"], "x" * 100_000):
        env.reset(seed=1)
        _, r, term, _, info = env.step(action)
        assert r == 0.0 and term and info["invalid_action"]
    env.reset(seed=1)
    _, r, _, _, info = env.step("while True:\n    pass\n")
    assert r == 0.0 and info["sandbox_status"] == "timeout"
    env.reset(seed=1)
    assert env.step("def (:")[1] == 0.0


def test_strip_fences():
    assert strip_fences("```python\nx = 1\n```") == "x = 1\n"
    assert strip_fences("text\n```\ny = 2\n```\nmore") == "y = 2\n"
    assert strip_fences("```text\nno\n```\n```py\nz = 3\n```") == "z = 3\n"
    assert strip_fences("plain = 1") == "plain = 1"


def test_compile_test_keeps_expected_values_out_of_the_sandbox():
    c = compile_test("assert f([1, 2]) == [3]")
    assert (c.kind, c.expr, c.expected) == ("compare", "f([1, 2])", "[3]")
    assert compile_test("assert 3 == f(1)").expr == "f(1)"
    assert (compile_test("assert not f(1)").kind, compile_test("assert f(1)").kind) == (
        "falsy", "truthy")
    assert compile_test("check(f)").kind == "opaque_stmt"


def test_jsonl_loader_both_formats(pool, tmp_path):
    mbpp = load_jsonl("mbpp_sample.jsonl")
    he = load_jsonl("humaneval_sample.jsonl")
    assert len(mbpp) >= 5 and len(he) >= 3
    assert mbpp[0].entry_point == "sum_of_squares" and "should pass" in mbpp[0].prompt
    assert he[0].entry_point == "count_upper" and he[0].tests[0].startswith("assert candidate")
    for task in mbpp + he:
        assert run_tests(task, task.reference_solution, pool=pool).all_passed, task.task_id
    bad = f"def {he[0].entry_point}(s):\n    return 0\n"
    rep = run_tests(he[0], bad, pool=pool)
    assert 0 < rep.fraction < 1


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "invalid JSON"),
        ('{"text": "t", "code": "def f(): pass"}', "neither an MBPP line"),
        ('{"text": "t", "code": "def f(): pass", "test_list": []}', "test_list"),
        ('{"text": "t", "code": "def f(:", "test_list": ["assert f() == 1"]}', "not valid Python"),
        ('{"prompt": "def f():\\n", "canonical_solution": "    return 1\\n", "test": "x", '
         '"entry_point": "f g"}', "entry_point"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_jsonl_malformed_line_names_file_and_line(tmp_path, line, message):
    good = json.dumps({"text": "t", "code": "def f():\n    return 1",
                       "test_list": ["assert f() == 1"]})
    path = tmp_path / "tasks.jsonl"
    path.write_text(good + "\n\n" + line + "\n")
    with pytest.raises(DatasetError, match=message) as err:
        load_jsonl(str(path))
    assert str(err.value).startswith(f"{path}:3:")


def test_registered_envs_make_and_run(pool):
    env = make_env("selfplay/CodeSynth-v0", level=2, pool=pool)
    obs, _ = env.reset(seed=0)
    assert isinstance(obs, str) and env.observation_space.contains(obs)
    _, r, *_ = env.step(env.unwrapped.task.reference_solution)
    assert r == 1.0
    env = make_env("selfplay/CodeJSONL-v0", pool=pool)
    env.reset(seed=0)
    assert env.step(env.unwrapped.task.reference_solution)[1] == 1.0
    with pytest.raises(ValueError, match="reward"):
        CodeEnv(reward="most")
    with pytest.raises(FileNotFoundError):
        CodeEnv(source="no_such_file.jsonl")


def test_cli_prints_valid_json(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    prog = tmp_path / "p.py"
    prog.write_text("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(2)\n")
    out = subprocess.run(
        [sys.executable, "-m", "envs.code.sandbox", str(prog), "--mode", "exec", "--memory-mb", "256"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=60,
    )
    data = json.loads(out.stdout)
    assert data["status"] == "error" and data["returncode"] == 2 and out.returncode == 1
    assert (data["stdout"], data["stderr"]) == ("out\n", "err\n") and data["duration_s"] >= 0
