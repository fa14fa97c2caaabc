"""The Engine protocol: the one door to the policy model for the rest of the framework.

Search, actors, the arena and the AI-feedback sources talk to a model only through an Engine. Two
implementations: the embedded torch engine (``selfplay.policy.torch_engine``, CPU or GPU) and the
vLLM engine (``selfplay.policy.vllm_engine``, GPU). Every result carries the policy version that
produced it, so episodes record which version played them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    """How to sample completions (vLLM's names, so configs carry over)."""

    n: int = 1  # completions per prompt
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k
    max_tokens: int = 64
    stop: tuple[str, ...] = ()  # generation ends after the first of these strings (kept in text)
    seed: int | None = None  # per-request seed: the same seed gives the same samples
    ignore_eos: bool = False  # keep sampling past EOS (benchmarks: fixed-length generations)


@dataclass
class Completion:
    """One sampled continuation of a prompt."""

    text: str
    token_ids: list[int]
    logprobs: list[float]  # log-probability of each sampled token under the (untempered) policy
    finish_reason: str  # "stop" (a stop string or EOS) or "length"
    policy_version: int


@dataclass
class ActionEvaluation:
    """The policy's view of one decision: priors over the given actions and a value."""

    priors: np.ndarray  # float64 [num_actions], a distribution over the given actions only
    value: float  # in [-1, 1], expected outcome for the player to move
    policy_version: int


@runtime_checkable
class Engine(Protocol):
    policy_version: int

    def generate(
        self, prompts: Sequence[str], sampling: SamplingParams
    ) -> list[list[Completion]]:
        """``sampling.n`` completions for each prompt, in prompt order."""
        ...

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        """Summed log-probability of each continuation given its prompt."""
        ...

    def evaluate(
        self, states: Sequence[str], actions: Sequence[Sequence[str]]
    ) -> list[ActionEvaluation]:
        """Priors over each state's actions (the LM's distribution restricted to those strings,
        multi-token actions included) and the value head's estimate."""
        ...

    def load_weights(self, weights: Mapping[str, object], version: int) -> None:
        """Replace the model weights (a state dict) and record ``version`` on later results."""
        ...


class EngineInputError(ValueError):
    """A request the engine cannot serve (empty prompt, prompt longer than the context, an action
    the tokenizer cannot encode, …); the message says which request and why."""
