"""The seams of AI feedback: ``Feedback`` (a reward per response), ``PairwiseFeedback`` (which of
two responses is better), how rewards combine, and the registry that builds sources from config.

Every source sees only text: the prompt the policy answered and the response it gave. Responses
are untrusted (a policy may learn to game its judge), so each source treats them as data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from selfplay.feedback.config import FeedbackConfig, FeedbackSourceConfig
from selfplay.policy.engine import Engine


@runtime_checkable
class Feedback(Protocol):
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """float64 [B]: a reward for each response to the prompt beside it."""
        ...


@runtime_checkable
class PairwiseFeedback(Protocol):
    def compare(
        self, prompts: Sequence[str], responses_a: Sequence[str], responses_b: Sequence[str]
    ) -> np.ndarray:
        """float64 [B] in [0, 1]: the probability that response a is better than response b."""
        ...


def combine_rewards(
    env_rewards: np.ndarray,
    sources: Sequence[tuple[Feedback, float]],
    prompts: Sequence[str],
    responses: Sequence[str],
    env_weight: float = 1.0,
) -> np.ndarray:
    """``env_weight * env_rewards + sum_i weight_i * source_i.score(prompts, responses)``.

    env_rewards [B]; returns float64 [B]. A plain weighted sum (no normalisation): each source's
    scale is its own (a judge gives [0, 1], a reward model an unbounded logit), so the weights in
    the config are where the scales are reconciled. A source with weight 0 is not called at all,
    so a disabled judge costs nothing."""
    env = np.asarray(env_rewards, dtype=np.float64)
    if env.shape != (len(prompts),) or len(prompts) != len(responses):
        raise ValueError(
            f"combine_rewards: {env.shape} env rewards, {len(prompts)} prompts and "
            f"{len(responses)} responses (one of each per episode)"
        )
    total = env_weight * env
    for source, weight in sources:
        if weight == 0.0:
            continue
        r = np.asarray(source.score(prompts, responses), dtype=np.float64)
        if r.shape != env.shape:
            raise ValueError(
                f"combine_rewards: {type(source).__name__} returned shape {r.shape}, "
                f"expected {env.shape}"
            )
        total = total + weight * r
    return total


# ---- building sources from config -------------------------------------------------------------

# engine_factory(path) -> an Engine serving the model at ``path`` ("" = the policy's own engine).
EngineFactory = Callable[[str], Engine]
SourceBuilder = Callable[[FeedbackSourceConfig, EngineFactory], Feedback]


def _judge_pointwise(src: FeedbackSourceConfig, engine_factory: EngineFactory) -> Feedback:
    from selfplay.feedback.judge import POINTWISE_TEMPLATE, PointwiseJudge

    return PointwiseJudge(
        engine_factory(src.path),
        template=src.template or POINTWISE_TEMPLATE,
        max_response_chars=src.max_response_chars,
    )


def _judge_pairwise(src: FeedbackSourceConfig, engine_factory: EngineFactory) -> Feedback:
    from selfplay.feedback.judge import PAIRWISE_TEMPLATE, PairwiseJudge, RoundRobinReward

    judge = PairwiseJudge(
        engine_factory(src.path),
        template=src.template or PAIRWISE_TEMPLATE,
        max_response_chars=src.max_response_chars,
    )
    return RoundRobinReward(judge, max_opponents=src.max_opponents)


def _reward_model(src: FeedbackSourceConfig, engine_factory: EngineFactory) -> Feedback:
    from selfplay.feedback.reward_model import RewardModel, RewardModelFeedback

    if not src.path:
        raise ValueError(
            "feedback.sources: kind 'reward_model' needs path (a saved RewardModel dir)"
        )
    model, tokenizer = RewardModel.load(src.path)
    return RewardModelFeedback(model, tokenizer, batch_size=src.batch_size)


def _process_reward(src: FeedbackSourceConfig, engine_factory: EngineFactory) -> Feedback:
    from selfplay.feedback.process_reward import ProcessRewardFeedback, build_step_scorer

    prm = build_step_scorer(src.step_scorer, src.path, src.step_separator, src.batch_size)
    return ProcessRewardFeedback(prm, aggregate=src.aggregate, separator=src.step_separator)


# kind -> builder. A new source registers here; nothing else changes.
FEEDBACK_BUILDERS: dict[str, SourceBuilder] = {
    "judge_pointwise": _judge_pointwise,
    "judge_pairwise": _judge_pairwise,
    "reward_model": _reward_model,
    "process_reward": _process_reward,
}


def build_feedback(
    cfg: FeedbackConfig, engine_factory: EngineFactory
) -> list[tuple[Feedback, float]]:
    """(source, weight) for every entry of ``cfg.sources``, built by its ``kind``.

    ``engine_factory(path)`` gives the engine a judge talks to ("" = the policy's own engine), so
    this module never decides how engines are made."""
    out: list[tuple[Feedback, float]] = []
    for i, src in enumerate(cfg.sources):
        builder = FEEDBACK_BUILDERS.get(src.kind)
        if builder is None:
            raise ValueError(
                f"feedback.sources[{i}].kind: {src.kind!r} is not a known feedback source; "
                f"known kinds: {', '.join(sorted(FEEDBACK_BUILDERS))}"
            )
        out.append((builder(src, engine_factory), float(src.weight)))
    return out


__all__ = [
    "FEEDBACK_BUILDERS",
    "EngineFactory",
    "Feedback",
    "PairwiseFeedback",
    "build_feedback",
    "combine_rewards",
]
