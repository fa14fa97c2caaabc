"""FeedbackRewardWrapper: AI feedback combined into the final reward of a text episode."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from envs.math.env import MathEnv
from selfplay.feedback.base import combine_rewards
from selfplay.feedback.config import FeedbackConfig, FeedbackSourceConfig
from selfplay.feedback.judge import PointwiseJudge
from selfplay.feedback.wrapper import FeedbackRewardWrapper, unique_names, wrap_with_feedback
from selfplay.policy.config import EngineConfig, PolicyConfig
from selfplay.policy.factory import make_engine

TINY = PolicyConfig(
    hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64, max_seq_len=256
)


class Fixed:
    """A scripted Feedback: the same score for every response; remembers what it was asked."""

    def __init__(self, value: float):
        self.value = value
        self.calls: list[tuple[list[str], list[str]]] = []

    def score(self, prompts, responses):
        self.calls.append((list(prompts), list(responses)))
        return np.full(len(prompts), self.value)


class Other(Fixed):
    pass


class Raising:
    def score(self, prompts, responses):
        raise RuntimeError("judge is down")


def right_answer(env) -> str:
    return f"Answer: {env.unwrapped.problem.answer}"


def test_final_reward_is_the_weighted_combination():
    a, b = Fixed(0.5), Other(0.25)
    env = FeedbackRewardWrapper(MathEnv(), [(a, 2.0), (b, -1.0)], env_weight=3.0)
    obs, _ = env.reset(seed=0)
    action = "carry the one\n" + right_answer(env)
    _, reward, terminated, _, info = env.step(action)
    assert terminated
    assert info["env_reward"] == 1.0
    assert reward == pytest.approx(3.0 * 1.0 + 2.0 * 0.5 - 1.0 * 0.25)
    expected = combine_rewards(np.array([1.0]), [(Fixed(0.5), 2.0), (Other(0.25), -1.0)],
                               [obs], [action], 3.0)  # fmt: skip
    assert reward == pytest.approx(float(expected[0]))
    assert info["feedback"] == {"Fixed": 0.5, "Other": 0.25}
    assert "feedback_error" not in info
    # each source was asked once, about the episode's first observation and its action
    assert a.calls == [([obs], [action])] and b.calls == [([obs], [action])]


def test_wrong_answer_keeps_env_reward_zero_in_info():
    env = FeedbackRewardWrapper(MathEnv(), [(Fixed(0.5), 1.0)])
    env.reset(seed=1)
    _, reward, _, _, info = env.step("Answer: -1")
    assert info["env_reward"] == 0.0 and reward == pytest.approx(0.5)


def test_multi_step_judges_the_joined_steps_at_the_end_only():
    fb = Fixed(1.0)
    env = FeedbackRewardWrapper(MathEnv(mode="multi_step", max_steps=4), [(fb, 0.5)])
    obs, _ = env.reset(seed=2)
    steps = ["first step", "second step", right_answer(env)]
    for step in steps[:-1]:
        _, reward, terminated, truncated, info = env.step(step)
        assert (reward, terminated, truncated) == (0.0, False, False)
        assert "feedback" not in info and not fb.calls  # earlier steps untouched
    _, reward, terminated, _, info = env.step(steps[-1])
    assert terminated and reward == pytest.approx(1.0 + 0.5)
    assert fb.calls == [([obs], ["\n".join(steps)])]  # prompt = the first observation


def test_truncated_episode_gets_feedback_too():
    env = FeedbackRewardWrapper(MathEnv(mode="multi_step", max_steps=2), [(Fixed(0.8), 1.0)])
    env.reset(seed=3)
    env.step("thinking")
    _, reward, terminated, truncated, info = env.step("still thinking")
    assert truncated and not terminated
    assert info["env_reward"] == 0.0 and reward == pytest.approx(0.8)


def test_each_episode_starts_a_new_response():
    fb = Fixed(0.0)
    env = FeedbackRewardWrapper(MathEnv(), [(fb, 1.0)])
    for seed in (0, 1):
        env.reset(seed=seed)
        env.step(f"attempt {seed}")
    assert [c[1] for c in fb.calls] == [["attempt 0"], ["attempt 1"]]
    assert fb.calls[0][0] != fb.calls[1][0]  # different problems


def test_a_raising_source_falls_back_to_the_env_reward_and_logs_once(caplog):
    env = FeedbackRewardWrapper(MathEnv(), [(Fixed(0.5), 1.0), (Raising(), 1.0)])
    with caplog.at_level(logging.WARNING, logger="selfplay.feedback.wrapper"):
        for seed in (0, 1):
            env.reset(seed=seed)
            _, reward, terminated, _, info = env.step(right_answer(env))
            assert terminated and reward == info["env_reward"] == 1.0
            assert (
                "RuntimeError" in info["feedback_error"]
                and "judge is down" in info["feedback_error"]
            )
            assert info["feedback"] == {}
    assert len([r for r in caplog.records if "feedback failed" in r.message]) == 1


def test_a_non_finite_score_is_a_failure_not_a_reward():
    env = FeedbackRewardWrapper(MathEnv(), [(Fixed(math.nan), 1.0)])
    env.reset(seed=0)
    _, reward, _, _, info = env.step("Answer: 0")
    assert reward == info["env_reward"] and "nan" in info["feedback_error"]


def test_a_weight_zero_source_is_not_called_nor_reported():
    off = Other(0.9)
    env = FeedbackRewardWrapper(MathEnv(), [(Fixed(0.5), 1.0), (off, 0.0)])
    env.reset(seed=0)
    _, _, _, _, info = env.step("Answer: 0")
    assert off.calls == [] and info["feedback"] == {"Fixed": 0.5}


def test_names():
    assert unique_names(["judge", "rm", "judge"]) == ["judge", "rm", "judge#2"]
    with pytest.raises(ValueError, match="repeat"):
        FeedbackRewardWrapper(MathEnv(), [(Fixed(0), 1.0), (Fixed(1), 1.0)], names=["a", "a"])


def test_no_sources_returns_the_env_unchanged():
    env = MathEnv()
    assert wrap_with_feedback(env, FeedbackConfig(), lambda path: pytest.fail("no engine")) is env


def test_real_pointwise_judge_over_a_tiny_engine_through_the_builder():
    engine = make_engine(TINY, EngineConfig())
    cfg = FeedbackConfig(
        env_weight=1.0, sources=[FeedbackSourceConfig(kind="judge_pointwise", weight=0.5)]
    )
    asked: list[str] = []
    env = wrap_with_feedback(MathEnv(), cfg, lambda path: asked.append(path) or engine)
    assert isinstance(env, FeedbackRewardWrapper) and asked == [""]  # the policy's own engine
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(right_answer(env))
    score = info["feedback"]["judge_pointwise"]
    assert terminated and 0.0 <= score <= 1.0
    assert reward == pytest.approx(info["env_reward"] + 0.5 * score)
    # the same judge scores the same text the same way (read off the distribution, no sampling)
    direct = PointwiseJudge(engine).score([env.unwrapped.problem.question], [right_answer(env)])
    assert score == pytest.approx(float(direct[0]))
