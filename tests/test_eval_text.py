"""Text rollouts (selfplay.textgen) and `selfplay eval` on text tasks: pass@k, majority vote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from envs.math.env import MathEnv
from selfplay.evaluate_text import (
    ProblemResult,
    evaluate_text_policy,
    load_policy,
    pass_ks,
    text_eval_metrics,
)
from selfplay.feedback.wrapper import FeedbackRewardWrapper
from selfplay.policy.engine import Completion, Engine, SamplingParams
from selfplay.policy.tokenizer import build_char_tokenizer
from selfplay.textgen import TextSamplingConfig, rollout_text_env, sample_solutions

REPO = Path(__file__).resolve().parent.parent
SEEDS = [0, 1, 2]


class ScriptedEngine:
    """An Engine whose generate() returns fixed completions: ``script(prompt)`` is the list of
    texts for a prompt, handed out in order (the k-th completion of a request gets the k-th)."""

    policy_version = 7

    def __init__(self, script):
        self.script = script
        self.calls: list[tuple[list[str], SamplingParams]] = []

    def generate(self, prompts, sampling):
        self.calls.append((list(prompts), sampling))
        out = []
        for p in prompts:
            texts = self.script(p)
            out.append(
                [Completion(texts[j % len(texts)], [], [], "stop", self.policy_version)
                 for j in range(sampling.n)]
            )  # fmt: skip
        return out

    def score(self, prompts, continuations):  # pragma: no cover
        raise AssertionError("not used")

    def evaluate(self, states, actions):  # pragma: no cover
        raise AssertionError("not used")

    def load_weights(self, weights, version):  # pragma: no cover
        pass


def problems(seeds=SEEDS, **kwargs) -> dict[str, str]:
    """question -> reference answer of the test-split problems behind ``seeds``."""
    env = MathEnv(split="test", **kwargs)
    out = {}
    for s in seeds:
        env.reset(seed=s)
        out[env.problem.question] = env.problem.answer
    return out


def math_script() -> tuple[dict[str, list[str]], list[str]]:
    """Problem 0: 2 of 4 right, and the right answer is the majority.
    Problem 1: 1 of 4 right; three identical wrong answers win the vote.
    Problem 2: no sample states an answer (multi-line reasoning only)."""
    questions = list(problems())
    ref = problems()
    script = {}
    for i, q in enumerate(questions):
        right, wrong = int(ref[q]), int(ref[q]) + 1
        script[q] = [
            [
                f"Answer: {right}",
                f"Answer: {wrong}",
                f"so\nAnswer: {right}",
                f"Answer: {wrong + 1}",
            ],
            [f"Answer: {wrong}", f"Answer: {wrong}", f"Answer: {wrong}", f"\\boxed{{{right}}}"],
            ["let me think\nabout it"] * 4,
        ][i]
    return script, questions


def scripted_engine(script: dict[str, list[str]]) -> ScriptedEngine:
    return ScriptedEngine(lambda prompt: script[prompt.removesuffix("\n")])


# ---- rollouts ----------------------------------------------------------------------------------


def test_scripted_engine_is_an_engine():
    assert isinstance(ScriptedEngine(lambda p: ["x"]), Engine)


def test_sample_solutions_asks_for_n_per_prompt():
    engine = ScriptedEngine(lambda p: [p + "a", p + "b"])
    assert sample_solutions(engine, ["x", "y"], 3, SamplingParams(n=1)) == [
        ["xa", "xb", "xa"],
        ["ya", "yb", "ya"],
    ]
    assert engine.calls[0][1].n == 3


def test_single_turn_rollout_records_episodes():
    script, questions = math_script()
    engine = scripted_engine(script)
    episodes = rollout_text_env(
        lambda: MathEnv(split="test"), engine, SEEDS, 4, SamplingParams(seed=5)
    )
    assert len(episodes) == 12
    # one generate call: every problem once, with n = 4 (its samples share the prompt)
    assert len(engine.calls) == 1
    prompts, params = engine.calls[0]
    assert prompts == [q + "\n" for q in questions] and params.n == 4 and params.stop == ()
    for i, ep in enumerate(episodes):
        q = questions[i // 4]
        assert (ep.seed, ep.info["sample"]) == (SEEDS[i // 4], str(i % 4))
        assert ep.env_id == "MathEnv"  # made directly, not through the registry
        assert ep.policy_version == 7 and ep.length == 1
        (step,) = ep.steps
        assert step.search is None and step.player == 0
        assert step.observation == q and step.action == script[q][i % 4]
        assert ep.outcome == step.reward and ep.info["termination"] == "terminated"
    assert [ep.outcome for ep in episodes[:4]] == [1.0, 0.0, 1.0, 0.0]
    assert [ep.info["correct"] for ep in episodes[4:8]] == ["False", "False", "False", "True"]


def test_multi_step_rollout_one_line_per_action_until_an_answer():
    ref = problems(mode="multi_step")

    def script(prompt):
        question, *steps = prompt.rstrip("\n").split("\n")
        if len(steps) < 2:
            return [f"step {len(steps)}\n"]  # the stop string is kept in the text
        return [f"Answer: {ref[question]}\n"]

    engine = ScriptedEngine(script)
    env_factory = lambda: MathEnv(split="test", mode="multi_step", max_steps=5)
    episodes = rollout_text_env(env_factory, engine, SEEDS, 2, SamplingParams(max_tokens=9))
    assert all("\n" in params.stop for _, params in engine.calls)
    for ep in episodes:
        assert [s.action for s in ep.steps] == [
            "step 0",
            "step 1",
            f"Answer: {ref[ep.steps[0].observation]}",
        ]
        assert [s.reward for s in ep.steps] == [0.0, 0.0, 1.0] and ep.outcome == 1.0
        assert ep.steps[1].observation == ep.steps[0].observation + "\nstep 0"
    # 3 rounds; in each, the two samples of a problem share one prompt (n=2)
    assert len(engine.calls) == 3 and all(p.n == 2 for _, p in engine.calls)


def test_multi_step_stops_at_the_env_step_limit():
    engine = ScriptedEngine(lambda p: ["hmm\n"])
    env_factory = lambda: MathEnv(split="test", mode="multi_step", max_steps=3)
    (ep,) = rollout_text_env(env_factory, engine, [0], 1, SamplingParams())
    assert ep.length == 3 and ep.info["termination"] == "truncated" and ep.outcome == 0.0
    assert len(engine.calls) == 3


def test_multi_step_stops_when_the_context_is_full():
    engine = ScriptedEngine(lambda p: ["a long reasoning step\n"])
    engine.tokenizer, engine.max_len = build_char_tokenizer(), 60
    env_factory = lambda: MathEnv(split="test", mode="multi_step", max_steps=10)
    (ep,) = rollout_text_env(env_factory, engine, [0], 1, SamplingParams())
    assert ep.info["termination"] == "context" and ep.outcome == 0.0
    assert 1 <= ep.length < 10


def test_rollout_through_the_feedback_wrapper():
    script, _ = math_script()

    class Half:
        def score(self, prompts, responses):
            return np.full(len(prompts), 0.5)

    env_factory = lambda: FeedbackRewardWrapper(MathEnv(split="test"), [(Half(), 1.0)])
    episodes = rollout_text_env(
        env_factory, scripted_engine(script), SEEDS[:1], 4, SamplingParams()
    )
    assert [ep.outcome for ep in episodes] == [1.5, 0.5, 1.5, 0.5]
    assert [ep.info["env_reward"] for ep in episodes] == ["1.0", "0.0", "1.0", "0.0"]
    assert json.loads(episodes[0].info["feedback"]) == {"Half": 0.5}


# ---- metrics -----------------------------------------------------------------------------------


def test_pass_ks():
    assert pass_ks(1) == [1] and pass_ks(4) == [1, 2, 4] and pass_ks(6) == [1, 2, 4, 6]


def test_metrics_by_hand():
    results = [
        ProblemResult(0, [True, False, True, False], ["5", "6", "5", "7"], [1, 0, 1, 0]),
        ProblemResult(1, [False, False, False, True], ["9", "9", "9", "8"], [0, 0, 0, 1]),
        ProblemResult(2, [False] * 4, [None] * 4, [0] * 4),
    ]
    r = text_eval_metrics(results)
    # pass@1 = c/n; pass@2 = 1 - C(n-c, 2)/C(4, 2): 1 - 1/6 for c=2, 1 - 3/6 for c=1
    assert r.pass_at[1] == pytest.approx((0.5 + 0.25 + 0.0) / 3)
    assert r.pass_at[2] == pytest.approx((5 / 6 + 1 / 2 + 0.0) / 3)
    assert r.pass_at[4] == pytest.approx(2 / 3)
    assert r.majority == pytest.approx(1 / 3)
    assert r.mean_reward == pytest.approx(3 / 12)


def test_eval_on_a_scripted_engine_gives_the_hand_computed_numbers():
    script, _ = math_script()
    batches: list[int] = []
    r = evaluate_text_policy(
        lambda: MathEnv(split="test"), scripted_engine(script), SEEDS, 4, SamplingParams(),
        batch_problems=2, on_batch=batches.append,
    )  # fmt: skip
    assert batches == [2, 1]
    assert (r.problems, r.k) == (3, 4)
    assert r.pass_at[1] == pytest.approx(0.25)
    assert r.pass_at[2] == pytest.approx(4 / 9)
    assert r.pass_at[4] == pytest.approx(2 / 3)
    assert r.majority == pytest.approx(1 / 3)  # problem 0 only: 1's majority is wrong, 2 has none
    assert r.to_dict()["maj@4"] == r.majority


# ---- the command -------------------------------------------------------------------------------

TINY_POLICY = [
    "policy.hidden_size=32", "policy.num_layers=1", "policy.num_heads=2",
    "policy.num_kv_heads=1", "policy.intermediate_size=64",
    "policy.max_seq_len=96",  # a short context keeps the untrained samples (noise) short
]  # fmt: skip


def test_load_policy_from_a_run_dir_records_its_version(tmp_path):
    from selfplay.config import SelfplayConfig
    from selfplay.learner.checkpoint import CheckpointMeta, save_checkpoint
    from selfplay.policy.config import PolicyConfig
    from selfplay.policy.model import build_policy

    small = PolicyConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                         intermediate_size=64)  # fmt: skip
    model, tokenizer = build_policy(small)
    save_checkpoint(tmp_path, model, tokenizer, None, CheckpointMeta(3, 30, 3, 0.0))
    cfg = OmegaConf.structured(SelfplayConfig)
    cfg.checkpoint = str(tmp_path)
    loaded = load_policy(cfg)
    assert loaded.engine.policy_version == 3 and not loaded.untrained
    assert "version-000003" in loaded.label


def test_selfplay_eval_math_through_the_cli():
    cmd = [sys.executable, "-m", "selfplay.cli", "eval", "env=math", "games=3", *TINY_POLICY,
           "run.progress=false"]  # fmt: skip
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    assert "untrained" in out and "pass@1" in out
    k = TextSamplingConfig().k
    line = json.loads(out.strip().splitlines()[-1])
    assert line["problems"] == 3 and line["k"] == k and line["untrained"] is True
    assert line["split"] == "test" and line["env"] == "selfplay/MathArithmetic-v0"
    for key in ("pass@1", f"pass@{k}", f"maj@{k}", "mean_reward"):
        assert 0.0 <= line[key] <= 1.0
    assert line["pass@1"] <= line[f"pass@{k}"]


def test_eval_text_rejects_bad_input():
    from selfplay.config import SelfplayConfig
    from selfplay.errors import UserError
    from selfplay.evaluate_text import eval_text

    cfg = OmegaConf.structured(SelfplayConfig)
    cfg.env.id = "selfplay/MathArithmetic-v0"
    cfg.games = 0
    with pytest.raises(UserError, match="games=0"):
        eval_text(cfg)
    cfg.games = 1
    with pytest.raises(UserError, match="sampling.k=0"):
        eval_text(cfg, sampling=TextSamplingConfig(k=0))


def test_sampling_is_read_from_the_config_when_it_has_a_sampling_group():
    from selfplay.evaluate_text import _sampling_config

    assert _sampling_config(OmegaConf.create({}), None) == TextSamplingConfig()
    cfg = OmegaConf.create({"sampling": {"k": 3, "temperature": 0.5}})
    assert _sampling_config(cfg, None) == TextSamplingConfig(k=3, temperature=0.5)
    given = TextSamplingConfig(k=2)
    assert _sampling_config(cfg, given) is given


def test_configured_ai_feedback_reaches_the_evaluated_reward():
    """feedback=judge adds the judge's weighted score to each episode's reward."""
    from selfplay.config import SelfplayConfig
    from selfplay.evaluate_text import feedback_wrapper
    from selfplay.feedback.config import FeedbackSourceConfig
    from selfplay.policy.config import PolicyConfig
    from selfplay.policy.factory import make_engine

    cfg = OmegaConf.structured(SelfplayConfig)
    cfg.env.id = "selfplay/MathArithmetic-v0"
    cfg.feedback.sources = [FeedbackSourceConfig(kind="judge_pointwise", weight=0.5)]
    engine = make_engine(PolicyConfig(max_seq_len=512), cfg.engine)
    from selfplay.build import build_env

    env = feedback_wrapper(cfg, engine)(build_env(cfg.env, split="test"))
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("Answer: 123456789")
    assert terminated and info["env_reward"] == 0.0
    judge = info["feedback"]["judge_pointwise"]
    assert 0.0 < judge < 1.0 and reward == pytest.approx(0.5 * judge)
