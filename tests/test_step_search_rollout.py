"""rollout.mode=step_search: MCTS over reasoning steps as a training run's rollout, the env as the
judge through its gymnasium API, and decisions the alphazero loss trains on."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from test_text_search import ScriptedEngine, _last_line

from selfplay.build import build_env
from selfplay.config import EnvConfig
from selfplay.errors import UserError
from selfplay.replay.sampler import decisions_of
from selfplay.rollout.config import RolloutConfig
from selfplay.rollout.step_search import StepSearchRollout, env_reward_fn, steps_of
from selfplay.search.config import SearchConfig
from selfplay.textgen.config import TextSamplingConfig

MATH_STEPS = EnvConfig(id="selfplay/MathSteps-v0",
                       kwargs={"families": ["addition"], "level": 1, "mode": "multi_step",
                               "max_steps": 4})


def reference(seed: int) -> tuple[str, list[str]]:
    env = build_env(MATH_STEPS)
    question = str(env.reset(seed=seed)[0])
    return question, env.unwrapped.reference_actions()


def test_the_env_judges_a_searched_state_through_its_own_api():
    question, steps = reference(3)
    env = build_env(MATH_STEPS)
    reward = env_reward_fn(env, [3], [question])
    assert steps_of(question, question + "\n" + "\n".join(steps)) == steps
    assert reward(0, question + "\n" + "\n".join(steps)) == 1.0
    wrong = question + "\nAnswer: 100000"
    assert reward(0, wrong) == 0.0
    with pytest.raises(ValueError, match="does not start with its problem"):
        steps_of(question, "another problem\nAnswer: 1")


def rollout(engine, num_simulations: int = 32, **search) -> StepSearchRollout:
    cfg = SimpleNamespace(env=MATH_STEPS, rollout=RolloutConfig(problems=64),
                          search=SearchConfig(num_simulations=num_simulations, num_candidates=2,
                                              dirichlet_fraction=0.0, temperature=0.0, **search),
                          sampling=TextSamplingConfig(step_max_tokens=16))
    return StepSearchRollout(cfg, engine)


@pytest.mark.parametrize("leaf_value", ["value_head", "rollouts"])
def test_step_search_rollout_finds_the_verified_answer_and_records_sibling_steps(leaf_value):
    # Each problem's candidates: its right answer (unlikely under the prior) and a wrong one.
    answers: dict[str, str] = {}
    answers_questions = []
    for seed in range(64):
        question, steps = reference(seed)
        answers[_last_line(question + "\n")] = steps[-1]
        answers_questions.append(question)

    def options(prompt: str):
        right = answers[_last_line(prompt)]
        return [("Answer: 100000\n", -0.1), (right + "\n", -2.0)]

    mode = rollout(ScriptedEngine(options), leaf_value=leaf_value)
    episodes = mode.play(3, seed=0, actor="a0")
    assert len(episodes) == 3
    for ep in episodes:
        (step,) = ep.steps
        assert ep.outcome == 1.0 and step.reward == 1.0  # the search found what the env verifies
        assert step.action == answers[_last_line(step.observation + "\n")]
        assert step.observation in answers_questions  # the state itself (no prompt newline)
        stats = step.search
        assert sorted(stats.actions) == sorted(["Answer: 100000", step.action])
        right = stats.actions.index(step.action)
        assert stats.visits[right] > stats.visits[1 - right]  # visits moved off the prior
        assert stats.priors[right] < stats.priors[1 - right]
        (decision,) = decisions_of(ep, "searched")
        assert decision.value_target == 1.0 and decision.target[right] > 0.5
        assert ep.env_id == "selfplay/MathSteps-v0" and ep.info["termination"] == "answer"


def test_an_unknown_leaf_value_is_one_error_naming_the_key():
    with pytest.raises(UserError, match="search.leaf_value='oracle'"):
        rollout(ScriptedEngine(lambda p: [("x\n", -0.1)]), leaf_value="oracle")


def test_step_search_needs_a_multi_step_task():
    single = EnvConfig(id="selfplay/MathArithmetic-v0")
    cfg = SimpleNamespace(env=single, rollout=RolloutConfig(), search=SearchConfig(),
                          sampling=TextSamplingConfig())
    with pytest.raises(UserError, match="takes a whole solution per action"):
        StepSearchRollout(cfg, ScriptedEngine(lambda p: [("x\n", -1.0)]))


def test_training_rollouts_add_the_configured_ai_feedback_to_the_reward():
    from selfplay.feedback.config import FeedbackConfig, FeedbackSourceConfig
    from selfplay.rollout.modes import SampleGroups

    # A process reward (arithmetic step checks; no model) at weight 0.5 beside the verifier.
    feedback = FeedbackConfig(env_weight=1.0, sources=[FeedbackSourceConfig(
        kind="process_reward", weight=0.5, step_scorer="arithmetic", aggregate="min")])
    math = EnvConfig(id="selfplay/MathArithmetic-v0",
                     kwargs={"families": ["addition"], "level": 1})
    cfg = SimpleNamespace(env=math, rollout=RolloutConfig(problems=8),
                          sampling=TextSamplingConfig(k=2, max_tokens=32),
                          search=SearchConfig(), feedback=feedback, engine=None)
    wrong_step = "2 + 2 = 5\nAnswer: 100000"  # a false claim and a wrong answer: 0 + 0.5 * 0
    right_step = "2 + 2 = 4\nAnswer: 100000"  # a true claim, a wrong answer: 0 + 0.5 * 1
    engine = ScriptedEngine(lambda prompt: [(wrong_step, -1.0), (right_step, -1.0)])
    episodes = SampleGroups(cfg, engine).play(2, seed=0, actor="a0")
    assert len(episodes) == 4
    by_action = {ep.steps[-1].action: ep for ep in episodes}
    assert by_action[wrong_step].outcome == 0.0
    assert by_action[right_step].outcome == pytest.approx(0.5)
    assert float(by_action[right_step].info["env_reward"]) == 0.0  # the verifier's own verdict
    assert "process_reward" in str(by_action[right_step].info["feedback"])
    plain = SimpleNamespace(**{**vars(cfg), "feedback": FeedbackConfig()})
    assert all(ep.outcome == 0.0 for ep in SampleGroups(plain, engine).play(2, seed=0, actor="a"))


class SpelledEngine(ScriptedEngine):
    """A scripted engine with the default policy's tokenizer, so the rollout checks candidates as
    the learner will encode them."""

    max_len = 512

    def __init__(self, options):
        from selfplay.policy.tokenizer import build_char_tokenizer

        super().__init__(options)
        self.tokenizer = build_char_tokenizer()


def test_candidates_the_learner_cannot_score_leave_the_targets_and_the_rest_renormalise():
    # A policy that closes the line at once writes an empty step (and one it cannot spell): the
    # learner has no prior for either, which once stopped a run with an EngineInputError.
    from selfplay.policy.priors import encode_decisions

    answers = {}
    for seed in range(64):
        question, steps = reference(seed)
        answers[_last_line(question + "\n")] = steps[-1]

    def options(prompt: str):
        right = answers.get(_last_line(prompt), "Answer: 100000")  # after a bad step: wrong
        return [("\n", -0.1), ("  \n", -0.2), ("\u2603\n", -0.3), (right + "\n", -2.0)]

    engine = SpelledEngine(options)
    cfg_rollout = rollout(engine)
    cfg_rollout.cfg.search.num_candidates = 4
    episodes = cfg_rollout.play(3, seed=0, actor="a0")
    assert episodes
    for ep in episodes:
        for step in ep.steps:
            stats = step.search
            assert stats is not None and stats.actions  # the verified step is still a target
            assert all(a.strip() and "\u2603" not in a for a in stats.actions)
            assert len(stats.visits) == len(stats.priors) == len(stats.q_values) == len(stats.actions)
            assert abs(sum(stats.target_distribution) - 1.0) < 1e-9
            # what the learner does with the decision: encode the state and every candidate
            encode_decisions(engine.tokenizer, [step.observation], [stats.actions], engine.max_len)
