"""Math problems from JSONL files, in the two common formats, detected line by line.

- GSM8K: ``{"question": ..., "answer": "...reasoning...\\n#### 72"}``: the final answer is the text
  after ``####``; the reasoning lines before it become the solution steps.
- MATH: ``{"problem": ..., "solution": "... \\boxed{\\frac{1}{2}} ..."}``: the final answer is the
  last ``\\boxed{...}``; optional ``"level"`` ("Level 3" or 3) and ``"type"`` are kept.

A line that is not JSON, not an object, in neither format, with an empty question, or without a
usable final answer (none, empty, or with characters outside printable ASCII, which no action can
write) is an error naming the file and line (``on_error="raise"``, the default) or is skipped and
counted (``on_error="skip"``; the count is ``LoadResult.skipped``). Blank lines are ignored.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from envs.math.answers import extract_answer
from envs.math.tasks import MathProblem

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
GSM8K_SAMPLE = os.path.join(DATA_DIR, "gsm8k_sample.jsonl")
MATH_SAMPLE = os.path.join(DATA_DIR, "math_sample.jsonl")


class DatasetFormatError(ValueError):
    """A malformed dataset line; the message names the file and the 1-based line number."""

    def __init__(self, path: str, line_no: int, reason: str):
        self.path, self.line_no, self.reason = path, line_no, reason
        super().__init__(f"{path}:{line_no}: {reason}")


@dataclass
class LoadResult:
    problems: list[MathProblem] = field(default_factory=list)
    skipped: int = 0  # malformed lines skipped (on_error="skip")
    errors: list[str] = field(default_factory=list)  # "path:line: reason" of each skipped line


_GSM8K_CALC = re.compile(r"<<[^<>]*>>")  # GSM8K calculator annotations: <<48/2=24>>
_LEVEL = re.compile(r"(\d+)")


def _gsm8k(obj: dict) -> tuple[str, str, list[str], str, int]:
    question, answer = obj["question"], obj["answer"]
    if not isinstance(question, str) or not isinstance(answer, str):
        raise ValueError("'question' and 'answer' must be strings")  # noqa: TRY004 - a malformed line
    if "####" not in answer:
        raise ValueError("GSM8K answer has no '#### <final answer>'")
    reasoning, final = answer.rsplit("####", 1)
    final = final.strip().replace(",", "")
    if not final:
        raise ValueError("GSM8K answer is empty after '####'")
    steps = [_GSM8K_CALC.sub("", s).strip() for s in reasoning.splitlines() if s.strip()]
    return question.strip(), final, steps + [f"Answer: {final}"], "gsm8k", 0


def _math(obj: dict) -> tuple[str, str, list[str], str, int]:
    problem, solution = obj["problem"], obj["solution"]
    if not isinstance(problem, str) or not isinstance(solution, str):
        raise ValueError("'problem' and 'solution' must be strings")  # noqa: TRY004 - a malformed line
    if "\\boxed" not in solution and "\\fbox" not in solution:
        raise ValueError("MATH solution has no \\boxed{...} final answer")
    final = extract_answer(solution)
    if not final:
        raise ValueError("MATH solution's \\boxed{...} is empty or unbalanced")
    level_match = _LEVEL.search(str(obj.get("level", "")))
    steps = [s.strip() for s in solution.splitlines() if s.strip()] + [f"Answer: {final}"]
    return problem.strip(), final, steps, "math", int(level_match.group(1)) if level_match else 0


def _usable(parsed: tuple[str, str, list[str], str, int]) -> tuple[str, str, list[str], str, int]:
    question, final = parsed[0], parsed[1]
    if not question:
        raise ValueError("the question is empty")
    if not all(" " <= ch <= "~" for ch in final):
        raise ValueError(
            f"the final answer {final!r:.60} has characters outside printable ASCII, which no "
            "action can write"
        )
    return parsed


def parse_line(obj: object) -> tuple[str, str, list[str], str, int]:
    """(question, answer, steps, family, level) of one decoded line; ValueError when malformed."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")  # noqa: TRY004 - a malformed line
    if "question" in obj and "answer" in obj:
        return _usable(_gsm8k(obj))
    if "problem" in obj and "solution" in obj:
        return _usable(_math(obj))
    keys = ", ".join(sorted(map(str, obj))) or "none"
    raise ValueError(
        "neither GSM8K ({'question', 'answer'}) nor MATH ({'problem', 'solution'}); "
        f"keys: {keys}"
    )


def load_jsonl(path: str, on_error: str = "raise") -> LoadResult:
    """Every problem in a JSONL file (GSM8K or MATH lines, mixed freely)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"math dataset not found: {path}")
    result = LoadResult()
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"not valid JSON ({err.msg} at column {err.colno})") from None
                question, answer, steps, family, level = parse_line(obj)
            except ValueError as err:
                failure = DatasetFormatError(path, line_no, str(err))
                if on_error == "raise":
                    raise failure from None
                result.skipped += 1
                result.errors.append(str(failure))
                continue
            result.problems.append(
                MathProblem(question, answer, steps, family, level, f"{os.path.basename(path)}:{line_no}")
            )
    return result


def load_problems(path: str, on_error: str = "raise") -> list[MathProblem]:
    """The problems of ``load_jsonl`` (raises if the file holds none)."""
    problems = load_jsonl(path, on_error).problems
    if not problems:
        raise DatasetFormatError(path, 0, "no problems in the file")
    return problems
