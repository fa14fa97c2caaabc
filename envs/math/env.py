"""MathEnv: a math problem as a text environment, rewarded by the answer verifier.

Modes:

- ``single_turn``: the observation is the question; one action is the whole solution; reward 1.0
  if its final answer (``extract_answer``; or the action itself when it is one short line, a bare
  answer) matches the reference, else 0.0; the episode ends.
- ``multi_step``: one reasoning step per action; the observation is the question followed by the
  steps so far, one per line. A step that holds a final answer (``Answer:`` or ``\\boxed``) ends the
  episode with the verifier's reward; ``max_steps`` steps without one end it (truncated) with 0.0.

Problems come from the procedural families (``source="procedural"``, ``envs.math.tasks``) or a JSONL
file (``source=<path>``, GSM8K or MATH lines; a bare file name is looked up in ``envs/math/data``).
``split`` keeps evaluation honest: procedural train and test problems are disjoint (by a hash of
the question); for a file, "train"/"test" filter its lines the same way and "all" keeps them all.

``info`` always has "problem_family", "level" and "mode"; "answer" (the reference), "correct" and
"predicted" appear only when the episode has ended, never before. An action that is not a string,
or is longer than ``max_action_chars``, is untrusted input: a wrong answer that ends the episode
(``info["invalid_action"] = True``), never an exception.

``reference_actions()`` (after ``reset``) gives the actions that solve the current problem, in this
env's own action format, for a supervised warm start or expert iteration: in ``multi_step`` one
reference step per action, each one line (a policy's step ends at its newline), the last one
stating the answer (``Answer: <n>``); in ``single_turn`` one action, the whole solution (the steps
joined by newlines). The steps are the procedural family's ``solution_steps`` or a dataset line's
solution (GSM8K: the ``answer`` reasoning without calculator annotations, its ``#### n`` turned
into a last line ``Answer: n``; MATH: the ``solution`` lines, then ``Answer: <its last
\\boxed>``). Stepped from ``reset`` with the same seed they end the episode with reward 1.0 (the
contract check in ``envs.checker`` and ``tests/test_reference_solutions.py`` hold every registered
env to it). They are in the observation charset (typographic characters spelled in ASCII) and
within ``max_action_chars``. In ``multi_step`` they are at most ``max_steps`` and only the last
states a final answer: the first step that states one ends the episode, so it is the last action
when it states the reference answer, else the steps from it on are joined into one line (or, when
that line does not state it either, the steps that state another answer are left out); when there
are more steps than ``max_steps``, neighbouring steps are joined on one line. ``ValueError`` when
called before ``reset``, when the problem has no reference solution (a dataset problem is named by
file and line), or when it cannot be written within those limits. They always solve the problem
from its start, whatever was stepped since ``reset``.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
from gymnasium import spaces

from envs.math.answers import answers_match, extract_answer, normalize_answer
from envs.math.datasets import DATA_DIR, load_problems
from envs.math.tasks import ARITHMETIC_FAMILIES, FAMILIES, LEVELS, MathProblem, generate, split_of

MODES = ("single_turn", "multi_step")
OBS_CHARSET = "".join(chr(c) for c in range(32, 127)) + "\n"
OBS_MAX_LENGTH = 4096  # procedural problems at low levels stay far below 256 characters
ACTION_MAX_LENGTH = 8192
_ELLIPSIS = "...\n"


BARE_ANSWER_MAX_CHARS = 64


def final_answer(text: str) -> str | None:
    """The final answer a solution states (``extract_answer``), or the text itself when it is a
    bare answer (one short line); None for reasoning that never states a final answer (which is
    not searched for a matching number: that would reward listing candidates)."""
    found = extract_answer(text)
    if found is not None:
        return found
    bare = text.strip()
    if bare and "\n" not in bare and len(bare) <= BARE_ANSWER_MAX_CHARS:
        return bare
    return None


def check(problem: MathProblem, answer_text: object, timeout_s: float = 2.0) -> float:
    """The verifier: 1.0 if the final answer in ``answer_text`` matches the problem's, else 0.0."""
    if not isinstance(answer_text, str):
        return 0.0
    final = final_answer(answer_text)
    if final is None:
        return 0.0
    return 1.0 if answers_match(final, problem.answer, timeout_s=timeout_s) else 0.0


def has_final_answer(step: str) -> bool:
    """Whether a reasoning step states a final answer (``Answer:`` / ``answer is`` / ``\\boxed``)."""
    lowered = step.lower()
    return "answer:" in lowered or "answer is" in lowered or "\\boxed" in step or "####" in step


def _to_charset(text: str) -> str:
    """The observation alphabet is printable ASCII and newlines (the tiny LM's byte vocabulary)."""
    text = text.replace("\r\n", "\n").replace("\t", " ")
    if all(ch in OBS_CHARSET for ch in text):
        return text
    return "".join(ch if ch in OBS_CHARSET else "?" for ch in text)


# Characters outside the charset that have a plain-ASCII spelling (what a reference solution keeps).
_ASCII_SPELLING = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
    "\u2212": "-", "\u00d7": "*", "\u00f7": "/", "\u2026": "...", "\u00a0": " ", "\u2009": " ",
    "\u202f": " ", "\u2264": "<=", "\u2265": ">=", "\u2260": "!=",
})


def ascii_spelling(text: str) -> str:
    """``text`` in the observation charset, keeping what can be kept: newlines for ``\\r\\n``,
    a space for a tab, ASCII for typographic quotes and dashes, letters without their accents;
    any other character becomes ``?`` (as in observations)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    if all(ch in OBS_CHARSET for ch in text):
        return text
    text = unicodedata.normalize("NFKD", text.translate(_ASCII_SPELLING))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return _to_charset(text)


def _states(text: str, answer: str) -> bool:
    """Whether ``text``'s final answer is ``answer`` as written (after the light normalisation)."""
    found = final_answer(text)
    return found is not None and normalize_answer(found) == normalize_answer(answer)


def reference_actions_for(
    problem: MathProblem, mode: str, max_steps: int, max_action_chars: int, where: str = ""
) -> list[str]:
    """The actions that solve ``problem`` in ``mode`` (``MathEnv.reference_actions``'s rules);
    ``where`` names the problem in errors (the dataset file and line)."""
    where = where or problem.source or "the current problem"
    steps = [ascii_spelling(s).strip() for s in problem.solution_steps]
    steps = [s for s in steps if s]
    if not steps:
        raise ValueError(f"MathEnv: {where} has no reference solution")
    if ascii_spelling(problem.answer) != problem.answer:
        raise ValueError(
            f"MathEnv: {where}: the reference answer {problem.answer!r:.80} has characters outside "
            "the action charset (printable ASCII and newline), so no action can state it"
        )
    if mode == "single_turn":
        actions = ["\n".join(steps)]
        if not _states(actions[0], problem.answer):
            raise ValueError(f"MathEnv: {where}: the reference solution does not state its answer")
    else:
        actions = _one_line_steps(steps, problem.answer, max_steps, where)
    longest = max(len(a) for a in actions)
    if longest > max_action_chars:
        raise ValueError(
            f"MathEnv: {where}: a reference action is {longest} characters, over "
            f"max_action_chars={max_action_chars}"
        )
    return actions


def _one_line_steps(steps: list[str], answer: str, max_steps: int, where: str) -> list[str]:
    """At most ``max_steps`` one-line steps (a policy's step ends at its newline) of which only
    the last states a final answer, and states ``answer``."""
    lines = [line.strip() for s in steps for line in s.split("\n") if line.strip()]
    first = next((i for i, s in enumerate(lines) if has_final_answer(s)), len(lines) - 1)
    head, rest = lines[:first], lines[first:]
    # The first line that states an answer ends the episode: it is the last action if its answer
    # is the reference's; else all the rest on one line; else the last line, the lines before it
    # that state some other answer left out.
    if _states(rest[0], answer):
        last = rest[0]
    elif _states(" ".join(rest), answer):
        last = " ".join(rest)
    elif _states(rest[-1], answer):
        head += [line for line in rest[:-1] if not has_final_answer(line)]
        last = rest[-1]
    else:
        raise ValueError(f"MathEnv: {where}: the reference solution does not state its answer")
    groups = min(len(head), max_steps - 1)
    if groups == 0:
        head, last = [], " ".join(head + [last])
    actions = [
        " ".join(head[len(head) * g // groups : len(head) * (g + 1) // groups])
        for g in range(groups)
    ] + [last]
    if any(has_final_answer(a) for a in actions[:-1]) or not _states(actions[-1], answer):
        raise ValueError(
            f"MathEnv: {where}: the reference solution cannot be written as at most "
            f"max_steps={max_steps} one-line steps of which only the last states the answer"
        )
    return actions


def resolve_source(source: str) -> str:
    """A JSONL path as given, or a bare file name found in ``envs/math/data``."""
    if os.path.isfile(source):
        return source
    shipped = os.path.join(DATA_DIR, source)
    if os.path.isfile(shipped):
        return shipped
    raise FileNotFoundError(
        f"MathEnv: source={source!r} is neither 'procedural' nor an existing JSONL file "
        f"(also looked in {DATA_DIR})"
    )


class MathEnv(gym.Env):
    """A math problem per episode; text observation, text action, verifier reward."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        source: str = "procedural",
        families: Sequence[str] | str | None = None,
        level: int | Sequence[int] = 1,
        mode: str = "single_turn",
        max_steps: int = 8,
        answer_timeout_s: float = 2.0,
        split: str | None = None,
        max_action_chars: int = 4000,
        on_error: str = "raise",
        render_mode: str | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"MathEnv: mode={mode!r}; expected one of {', '.join(MODES)}")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"MathEnv: max_steps must be a positive integer, got {max_steps!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"MathEnv: render_mode={render_mode!r}; supported: 'ansi' or None")
        self.mode, self.max_steps, self.render_mode = mode, max_steps, render_mode
        self.answer_timeout_s = float(answer_timeout_s)
        self.max_action_chars = int(max_action_chars)
        self.source = source
        self.levels = [level] if isinstance(level, int) else list(level)
        for lv in self.levels:
            if lv not in LEVELS:
                raise ValueError(f"MathEnv: level {lv!r} not in {list(LEVELS)}")

        if source == "procedural":
            self.split = split or "train"
            if self.split not in ("train", "test"):
                raise ValueError(f"MathEnv: split={split!r}; procedural problems: 'train' or 'test'")
            if families is None:
                families = ARITHMETIC_FAMILIES
            elif isinstance(families, str):
                families = [f.strip() for f in families.split(",") if f.strip()]
            self.families = list(families)
            unknown = [f for f in self.families if f not in FAMILIES]
            if unknown or not self.families:
                raise ValueError(
                    f"MathEnv: families={self.families!r}; known families: {', '.join(FAMILIES)}"
                )
            self._dataset: list[MathProblem] | None = None
            self._path = ""
        else:
            self.split = split or "all"
            if self.split not in ("train", "test", "all"):
                raise ValueError(f"MathEnv: split={split!r}; expected 'train', 'test' or 'all'")
            path = resolve_source(source)
            self._path = path
            problems = load_problems(path, on_error=on_error)
            if self.split != "all":
                problems = [p for p in problems if split_of(p.question) == self.split]
            if not problems:
                raise ValueError(f"MathEnv: {path} has no problems in split {self.split!r}")
            self._dataset = problems
            self.families = sorted({p.family for p in problems})

        self.observation_space = spaces.Text(OBS_MAX_LENGTH, min_length=1, charset=OBS_CHARSET)
        self.action_space = spaces.Text(ACTION_MAX_LENGTH, min_length=0, charset=OBS_CHARSET)
        self.problem: MathProblem | None = None
        self.steps: list[str] = []
        self.done = True

    # -- gymnasium API --------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        if self._dataset is not None:
            self.problem = self._dataset[int(rng.integers(len(self._dataset)))]
        else:
            family = self.families[int(rng.integers(len(self.families)))]
            level = self.levels[int(rng.integers(len(self.levels)))]
            self.problem = generate(family, level, int(rng.integers(2**31 - 1)), self.split)
        self.steps, self.done = [], False
        return self._observation(), self._info()

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self.done or self.problem is None:
            raise RuntimeError("MathEnv: the episode is over; call reset() first")
        valid = isinstance(action, str) and len(action) <= self.max_action_chars
        if not valid:
            return self._finish(None, truncated=False, invalid=True)
        if self.mode == "single_turn":
            return self._finish(action, truncated=False)
        self.steps.append(action.strip())
        if has_final_answer(action):
            return self._finish(action, truncated=False)
        if len(self.steps) >= self.max_steps:
            return self._finish(None, truncated=True)
        return self._observation(), 0.0, False, False, self._info()

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._observation() if self.problem is not None else ""
        gym.logger.warn("render() needs render_mode='ansi'")
        return None

    def reference_actions(self) -> list[str]:
        """The actions that solve the current problem from ``reset`` (see the module docstring);
        ``ValueError`` before ``reset`` or when the problem has no usable reference."""
        if self.problem is None:
            raise ValueError("MathEnv.reference_actions: no current problem; call reset() first")
        where = self.problem.source
        if self._path and ":" in where:  # "<file name>:<line>" of a dataset problem
            where = f"{self._path}:{where.rsplit(':', 1)[1]}"
        return reference_actions_for(
            self.problem, self.mode, self.max_steps,
            min(self.max_action_chars, ACTION_MAX_LENGTH), where,
        )

    # -- what search uses: a cheap copy of the state -------------------------------------------

    def get_state(self) -> tuple[MathProblem | None, tuple[str, ...], bool]:
        return self.problem, tuple(self.steps), self.done

    def set_state(self, state: tuple[MathProblem | None, Sequence[str], bool]) -> None:
        problem, steps, done = state
        self.problem, self.steps, self.done = problem, list(steps), bool(done)

    # -- helpers --------------------------------------------------------------------------------

    def _finish(
        self, final_text: str | None, truncated: bool, invalid: bool = False
    ) -> tuple[str, float, bool, bool, dict[str, Any]]:
        assert self.problem is not None
        reward = 0.0 if final_text is None else check(self.problem, final_text, self.answer_timeout_s)
        self.done = True
        info = self._info()
        predicted = final_answer(final_text) if final_text is not None else None
        info.update(
            answer=self.problem.answer,
            correct=reward > 0,
            predicted=(predicted or "")[:200],
            invalid_action=invalid,
            num_steps=len(self.steps) if self.mode == "multi_step" else 1,
        )
        return self._observation(), reward, not truncated, truncated, info

    def _observation(self) -> str:
        assert self.problem is not None
        question = _to_charset(self.problem.question)
        if not self.steps:
            return question[:OBS_MAX_LENGTH]
        lines = [_to_charset(s) for s in self.steps]
        text = question + "\n" + "\n".join(lines)
        if len(text) <= OBS_MAX_LENGTH:
            return text
        # keep the question and the latest steps that fit
        budget = OBS_MAX_LENGTH - len(question) - 1 - len(_ELLIPSIS)
        kept: list[str] = []
        for line in reversed(lines):
            if len(line) + 1 > budget:
                break
            kept.append(line)
            budget -= len(line) + 1
        tail = "\n".join(reversed(kept))
        return (question + "\n" + _ELLIPSIS + tail)[:OBS_MAX_LENGTH]

    def _info(self) -> dict[str, Any]:
        assert self.problem is not None
        return {
            "problem_family": self.problem.family,
            "level": self.problem.level,
            "mode": self.mode,
            "source": self.problem.source,
        }
