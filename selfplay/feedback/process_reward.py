"""Process rewards: a score for every reasoning step, not only the final answer.

``ProcessRewardModel.score_steps(prompt, steps)`` gives one score per step, judging the prefix
that ends with it (the steps are a chain: step i is only as sound as what led to it). Two kinds:
- ``PrefixScorer``: any ``Feedback`` (a reward model, a pointwise judge) scores each prefix
  prompt + steps[:i+1];
- ``VerifierStepScorer``: a step verifier callable says if each step's claims hold, e.g.
  ``ArithmeticStepVerifier``, which recomputes every "a op b = c" in a step.
``ProcessRewardFeedback`` turns step scores into one reward (min / last / mean) so a process
reward plugs in wherever a ``Feedback`` does. min is the usual choice: one wrong step spoils the
solution however good the rest reads.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from selfplay.feedback.base import Feedback


@runtime_checkable
class ProcessRewardModel(Protocol):
    def score_steps(self, prompt: str, steps: Sequence[str]) -> np.ndarray:
        """float64 [num_steps]: the score of each step (of the prefix that ends with it)."""
        ...


# ---- aggregation -------------------------------------------------------------------------------


def _last(scores: np.ndarray) -> float:
    return float(scores[-1])


# name -> [num_steps] -> float. Chosen by config (feedback.sources[i].aggregate).
AGGREGATIONS: dict[str, Callable[[np.ndarray], float]] = {
    "min": lambda s: float(np.min(s)),
    "last": _last,
    "mean": lambda s: float(np.mean(s)),
}


def aggregate_steps(scores: np.ndarray, how: str = "min", empty: float = 0.0) -> float:
    """One reward from step scores [num_steps]; ``empty`` when there are no steps."""
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregate: {how!r} is not one of {', '.join(sorted(AGGREGATIONS))}")
    scores = np.asarray(scores, dtype=np.float64)
    return empty if scores.size == 0 else AGGREGATIONS[how](scores)


# ---- scorers -----------------------------------------------------------------------------------


class PrefixScorer:
    """Scores each step by a ``Feedback`` on the prefix prompt + steps[:i+1] (steps joined by
    ``separator``), all prefixes of a solution in one batch."""

    def __init__(self, feedback: Feedback, separator: str = "\n"):
        self.feedback, self.separator = feedback, separator

    def score_steps(self, prompt: str, steps: Sequence[str]) -> np.ndarray:
        if not steps:
            return np.zeros(0)
        prefixes = [self.separator.join(steps[: i + 1]) for i in range(len(steps))]
        return np.asarray(self.feedback.score([prompt] * len(steps), prefixes), dtype=np.float64)


class VerifierStepScorer:
    """Scores each step with ``verify(prompt, step) -> float`` (1 sound, 0 wrong)."""

    def __init__(self, verify: Callable[[str, str], float]):
        self.verify = verify

    def score_steps(self, prompt: str, steps: Sequence[str]) -> np.ndarray:
        return np.array([float(self.verify(prompt, s)) for s in steps], dtype=np.float64)


# ---- arithmetic step verifier ------------------------------------------------------------------

# Numbers, operators (x and × multiply, as in "3x4=12"; ÷ divides), parentheses, '='.
_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|([-+*/×x÷()=])|(\S))")
_MUL, _DIV = {"*", "x", "×"}, {"/", "÷"}


def _tokens(text: str) -> list[str]:
    """Numbers and operators; any other character becomes "?" (a wall no claim crosses)."""
    out = []
    for m in _TOKEN.finditer(text):
        num, op, _other = m.groups()
        out.append(num or op or "?")
    return out


class _Parser:
    """Recursive descent over tokens: expr := term (('+'|'-') term)*; term := factor (mul|div
    factor)*; factor := '-' factor | number | '(' expr ')'. Never calls eval."""

    def __init__(self, toks: list[str]):
        self.toks, self.i = toks, 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def expr(self) -> float:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.toks[self.i]
            self.i += 1
            rhs = self.term()
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self) -> float:
        value = self.factor()
        while self.peek() in _MUL or self.peek() in _DIV:
            op = self.toks[self.i]
            self.i += 1
            rhs = self.factor()
            if op in _MUL:
                value *= rhs
            elif rhs == 0:
                raise ZeroDivisionError
            else:
                value /= rhs
        return value

    def factor(self) -> float:
        tok = self.peek()
        if tok == "-":
            self.i += 1
            return -self.factor()
        if tok == "(":
            self.i += 1
            value = self.expr()
            if self.peek() != ")":
                raise ValueError("unclosed parenthesis")
            self.i += 1
            return value
        if tok is not None and tok[0].isdigit():
            self.i += 1
            return float(tok)
        raise ValueError(f"expected a number, got {tok!r}")


def _parse_all(toks: list[str]) -> float | None:
    """The value of ``toks`` if they are exactly one expression, else None."""
    if not toks or len(toks) > 200:  # a claim is short; long runs are not worth parsing
        return None
    p = _Parser(toks)
    try:
        value = p.expr()
    except (ValueError, ZeroDivisionError, RecursionError, OverflowError):
        return None
    return value if p.i == len(toks) and math.isfinite(value) else None


def _longest_suffix(toks: list[str]) -> float | None:
    """The value of the longest tail of ``toks`` that is an expression ("So 3 + 4" -> 7)."""
    for start in range(len(toks)):
        value = _parse_all(toks[start:])
        if value is not None:
            return value
    return None


def _longest_prefix(toks: list[str]) -> float | None:
    """The value of the longest head of ``toks`` that is an expression ("7 (lent)" -> 7)."""
    for end in range(len(toks), 0, -1):
        value = _parse_all(toks[:end])
        if value is not None:
            return value
    return None


def arithmetic_claims(text: str) -> list[tuple[float, float]]:
    """(left value, right value) of every "expr = expr" claim in ``text``.

    A chain "12 - 3 = 9 = 3 x 3" gives two claims. The leftmost side is the longest expression
    just before the first '=', the rightmost the longest just after the last; inner sides must be
    whole expressions. A side that is not arithmetic ("4x = 12", a variable) makes no claim."""
    toks = _tokens(text)
    claims: list[tuple[float, float]] = []
    i = 0
    while i < len(toks):
        if toks[i] != "=":
            i += 1
            continue
        # the run of '='-separated segments around this '=' (stops at a "?" wall)
        start = i
        while start > 0 and toks[start - 1] != "?":
            start -= 1
        end = i
        while end < len(toks) and toks[end] != "?":
            end += 1
        segments: list[list[str]] = [[]]
        for tok in toks[start:end]:
            if tok == "=":
                segments.append([])
            else:
                segments[-1].append(tok)
        values: list[float | None] = []
        for k, seg in enumerate(segments):
            if k == 0:
                values.append(_longest_suffix(seg))
            elif k == len(segments) - 1:
                values.append(_longest_prefix(seg))
            else:
                values.append(_parse_all(seg))
        for left, right in itertools.pairwise(values):
            if left is not None and right is not None:
                claims.append((left, right))
        i = end
    return claims


class ArithmeticStepVerifier:
    """A step verifier: 1.0 if every arithmetic claim in the step holds, 0.0 if any is false,
    ``no_claim_score`` for a step with nothing to check (a step that computes nothing is not
    wrong). Equality within a relative tolerance, so "7 / 2 = 3.5" holds.

    Limitations: numbers with thousands separators ("1,000") or units ("$5") are not read as
    one number; variables end a claim rather than being solved for."""

    def __init__(self, rel_tol: float = 1e-9, abs_tol: float = 1e-9, no_claim_score: float = 1.0):
        self.rel_tol, self.abs_tol, self.no_claim_score = rel_tol, abs_tol, no_claim_score

    def __call__(self, prompt: str, step: str) -> float:
        claims = arithmetic_claims(step)
        if not claims:
            return self.no_claim_score
        ok = all(math.isclose(a, b, rel_tol=self.rel_tol, abs_tol=self.abs_tol) for a, b in claims)
        return 1.0 if ok else 0.0


# ---- as a Feedback -----------------------------------------------------------------------------


class ProcessRewardFeedback:
    """Feedback from a ProcessRewardModel: split each response into steps at ``separator``
    (blank steps dropped), score them, aggregate (min / last / mean)."""

    def __init__(self, prm: ProcessRewardModel, aggregate: str = "min", separator: str = "\n"):
        if aggregate not in AGGREGATIONS:
            raise ValueError(
                f"aggregate: {aggregate!r} is not one of {', '.join(sorted(AGGREGATIONS))}"
            )
        if not separator:
            raise ValueError("step_separator must not be empty")
        self.prm, self.aggregate, self.separator = prm, aggregate, separator

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        if len(prompts) != len(responses):
            raise ValueError(f"score: {len(prompts)} prompts but {len(responses)} responses")
        out = np.zeros(len(prompts))
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            steps = [s for s in response.split(self.separator) if s.strip()]
            out[i] = aggregate_steps(self.prm.score_steps(prompt, steps), self.aggregate)
        return out


def _arithmetic(path: str, separator: str, batch_size: int) -> ProcessRewardModel:
    return VerifierStepScorer(ArithmeticStepVerifier())


def _reward_model_prefixes(path: str, separator: str, batch_size: int) -> ProcessRewardModel:
    from selfplay.feedback.reward_model import RewardModel, RewardModelFeedback

    if not path:
        raise ValueError(
            "feedback.sources: step_scorer 'reward_model' needs path (a RewardModel dir)"
        )
    model, tokenizer = RewardModel.load(path)
    return PrefixScorer(RewardModelFeedback(model, tokenizer, batch_size), separator)


# step_scorer name -> builder(path, separator, batch_size)
STEP_SCORERS: dict[str, Callable[[str, str, int], ProcessRewardModel]] = {
    "arithmetic": _arithmetic,
    "reward_model": _reward_model_prefixes,
}


def build_step_scorer(name: str, path: str, separator: str, batch_size: int) -> ProcessRewardModel:
    if name not in STEP_SCORERS:
        raise ValueError(
            f"feedback.sources: step_scorer {name!r} is not one of {', '.join(sorted(STEP_SCORERS))}"
        )
    return STEP_SCORERS[name](path, separator, batch_size)


__all__ = [
    "AGGREGATIONS",
    "STEP_SCORERS",
    "ArithmeticStepVerifier",
    "PrefixScorer",
    "ProcessRewardFeedback",
    "ProcessRewardModel",
    "VerifierStepScorer",
    "aggregate_steps",
    "arithmetic_claims",
    "build_step_scorer",
]
