"""env=code_steps (selfplay/CodeSteps-v0): a program one line per action, a blank line ending it,
and step search branching inside it with the env's own final-step rule."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from test_text_search import ScriptedEngine

from selfplay.build import build_env
from selfplay.config import EnvConfig
from selfplay.errors import UserError
from selfplay.rollout.config import RolloutConfig
from selfplay.rollout.step_search import StepSearchRollout
from selfplay.search.config import SearchConfig
from selfplay.search.text_adapter import continued_state, final_step_rule, has_final_answer_step
from selfplay.textgen.config import TextSamplingConfig
from selfplay.textgen.rollout import is_multi_step, step_limit

CODE_STEPS = EnvConfig(id="selfplay/CodeSteps-v0", kwargs={"level": 1})


def reference_path(seed: int) -> tuple[str, list[str]]:
    env = build_env(CODE_STEPS)
    obs, _ = env.reset(seed=seed)
    return str(obs), env.unwrapped.reference_actions()


def test_reference_lines_keep_their_indentation_and_pass_the_tests():
    env = build_env(CODE_STEPS)
    assert is_multi_step(env) and step_limit(env) == 16
    prompt, _ = env.reset(seed=5)
    lines = env.unwrapped.reference_actions()
    assert lines[-1] == "" and any(line.startswith("    ") for line in lines[:-1])
    obs = prompt
    for line in lines[:-1]:
        obs, reward, terminated, truncated, _ = env.step(line)
        assert reward == 0.0 and not terminated and not truncated
    assert obs == prompt + "\n" + "\n".join(lines[:-1])  # the prompt, then the program so far
    _, reward, terminated, truncated, info = env.step("")
    assert terminated and not truncated and reward == 1.0 and info["passed"] == info["total"] > 0


def test_wrong_unfinished_and_malformed_programs_score_zero():
    env = build_env(CODE_STEPS)
    env.reset(seed=5)
    lines = env.unwrapped.reference_actions()
    for line in lines[:-1]:
        env.step(line.strip())  # the body without its indentation: not Python
    _, reward, terminated, _, info = env.step("")
    assert terminated and reward == 0.0 and info["passed"] == 0

    short = build_env(EnvConfig(id="selfplay/CodeSteps-v0", kwargs={"level": 1, "max_steps": 2}))
    short.reset(seed=5)
    short.step(lines[0])
    _, reward, terminated, truncated, info = short.step(lines[1])  # no blank line: unfinished
    assert truncated and not terminated and reward == 0.0 and info["unfinished"]

    env.reset(seed=5)
    _, reward, terminated, _, info = env.step(None)
    assert terminated and reward == 0.0 and info["invalid_action"]
    with pytest.raises(UserError, match="max_steps"):
        build_env(EnvConfig(id="selfplay/CodeSteps-v0", kwargs={"max_steps": 1}))
    with pytest.raises(UserError, match="mode must be one of"):
        build_env(EnvConfig(id="selfplay/CodeSteps-v0", kwargs={"mode": "lines"}))


def test_each_env_brings_its_final_step_rule():
    code_rule = final_step_rule(build_env(CODE_STEPS))
    assert code_rule("") and code_rule("   ") and not code_rule("    return x")
    math = build_env(EnvConfig(id="selfplay/MathSteps-v0"))
    assert final_step_rule(math) is has_final_answer_step


@pytest.mark.parametrize("text, expected", [
    ("x = 1\n\nzzz", "Q\nx = 1\n"),  # cut after the blank line that ends the program
    ("\n", "Q\n"),  # the program ends at once
    ("    return x", "Q\n    return x"),  # cut by the token budget: no end, kept as it stands
])
def test_a_leaf_rollout_is_cut_where_the_code_env_ends(text, expected):
    assert continued_state("Q", text, lambda step: step.strip() == "") == expected


@pytest.mark.parametrize("text, expected", [
    ("3+4=7\nAnswer: 7\n", "Q\n3+4=7\nAnswer: 7"),
    ("3+4=7\n5", "Q\n3+4=7\n5"),
    ("\n", "Q"),
])
def test_a_leaf_rollout_on_math_is_cut_as_before(text, expected):
    assert continued_state("Q", text, has_final_answer_step) == expected


def test_step_search_writes_the_program_line_by_line_with_the_blank_line_rule():
    # Known best path: the reference program. At each state the policy leans to a wrong line (a module-level return: a SyntaxError wherever it stands); a
    # value head that knows the path (1 on it, 0 off it) lets the search find the right one.
    paths: dict[str, str] = {}  # state -> the reference's next line
    for seed in range(3):
        prompt, lines = reference_path(seed)
        state = prompt
        for line in lines:
            paths[state] = line
            state = state + "\n" + line

    def options(prompt: str):
        state = prompt.removesuffix("\n")
        if state not in paths:
            return [("\n", -0.1)]  # off the path: the program ends (and fails its tests)
        return [("return None\n", -0.5), (paths[state] + "\n", -1.0)]

    engine = ScriptedEngine(options, value=lambda p: 1.0 if p.removesuffix("\n") in paths else 0.0)
    cfg = SimpleNamespace(env=CODE_STEPS, rollout=RolloutConfig(problems=3),
                          search=SearchConfig(num_simulations=32, num_candidates=2,
                                              dirichlet_fraction=0.0, temperature=0.0),
                          sampling=TextSamplingConfig(step_max_tokens=48))
    episodes = StepSearchRollout(cfg, engine).play(3, seed=0, actor="a0")
    assert episodes
    for ep in episodes:
        prompt, lines = reference_path(ep.seed)
        assert [step.action for step in ep.steps] == lines  # indentation and the closing blank line
        assert ep.outcome == 1.0 and ep.env_id == "selfplay/CodeSteps-v0"
