"""Procedural math problems with reference step-by-step solutions.

Families: ``addition``, ``subtraction``, ``multiplication`` (column arithmetic written digit by
digit with carries and borrows) and ``linear`` (``a*x + b = c`` with an integer solution). Each has
levels 1..5 (more digits / larger coefficients). Every problem is deterministic from
``(family, level, seed, split)``, and the train and test splits are disjoint *as problems*, not
only as seeds: a problem belongs to the test split iff a hash of its question says so, and the
generator rejects candidates of the other split (so a held-out evaluation never sees a training
problem, even at level 1 where the space is small).

The solution steps end in ``"Answer: <n>"``; ``MathProblem.answer`` is ``<n>``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

FAMILIES = ("addition", "subtraction", "multiplication", "linear")
ARITHMETIC_FAMILIES = ("addition", "subtraction", "multiplication")
LEVELS = (1, 2, 3, 4, 5)
TEST_FRACTION_MOD = 5  # one problem in 5 (by question hash) is held out for the test split
SPLITS = ("train", "test")


@dataclass
class MathProblem:
    question: str  # what the policy reads
    answer: str  # the reference final answer (a bare answer: "72", "\\frac{1}{2}")
    solution_steps: list[str] = field(default_factory=list)  # reference steps, last "Answer: ..."
    family: str = ""  # "addition", ..., or "gsm8k" / "math" for loaded datasets
    level: int = 0  # difficulty level (0 when unknown)
    source: str = ""  # "procedural" or "<file>:<line>"


def split_of(question: str) -> str:
    """Which split a question belongs to ("train" or "test"), from a stable hash of its text."""
    digest = hashlib.sha1(question.encode("utf-8")).digest()
    return "test" if digest[0] % TEST_FRACTION_MOD == 0 else "train"


# -------------------------------------------------------------------------------------------------
# Column arithmetic, written digit by digit

_PLACES = ("ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands")


def _place(k: int) -> str:
    return _PLACES[k] if k < len(_PLACES) else f"10^{k}"


def _digits(n: int) -> list[int]:
    """Digits of n >= 0, least significant first."""
    return [int(ch) for ch in reversed(str(n))]


def addition_steps(a: int, b: int) -> list[str]:
    da, db = _digits(a), _digits(b)
    steps, carry = [], 0
    for k in range(max(len(da), len(db))):
        x = da[k] if k < len(da) else 0
        y = db[k] if k < len(db) else 0
        total = x + y + carry
        expr = f"{x}+{y}" + (f"+{carry}" if carry else "")
        steps.append(f"{_place(k)}: {expr}={total}, write {total % 10}, carry {total // 10}")
        carry = total // 10
    if carry:
        steps.append(f"write the last carry {carry}")
    steps.append(f"Answer: {a + b}")
    return steps


def subtraction_steps(a: int, b: int) -> list[str]:
    """a - b with a >= b >= 0, borrowing column by column."""
    da, db = _digits(a), _digits(b)
    steps, borrow = [], 0
    for k in range(len(da)):
        x = da[k] - borrow
        y = db[k] if k < len(db) else 0
        lent = f"{da[k]}-1={x} (lent), " if borrow else ""
        if x < y:
            steps.append(f"{_place(k)}: {lent}{x}<{y}, borrow: {x + 10}-{y}={x + 10 - y}, write {x + 10 - y}")
            borrow = 1
        else:
            steps.append(f"{_place(k)}: {lent}{x}-{y}={x - y}, write {x - y}")
            borrow = 0
    steps.append(f"Answer: {a - b}")
    return steps


def _times_digit(a: int, d: int) -> str:
    """One partial product a*d written digit by digit with carries."""
    parts, carry = [], 0
    for x in _digits(a):
        total = x * d + carry
        parts.append(f"{x}x{d}" + (f"+{carry}" if carry else "") + f"={total}")
        carry = total // 10
    return f"{a}x{d}: " + ", ".join(parts) + f" -> {a * d}"


def multiplication_steps(a: int, b: int) -> list[str]:
    steps, partials = [], []
    for k, d in enumerate(_digits(b)):
        steps.append(_times_digit(a, d) + (f", shift {k}: {a * d * 10**k}" if k else ""))
        partials.append(a * d * 10**k)
    if len(partials) > 1:
        steps.append("add: " + " + ".join(str(p) for p in partials) + f" = {a * b}")
    steps.append(f"Answer: {a * b}")
    return steps


def linear_steps(a: int, b: int, c: int) -> list[str]:
    """Solve a*x + b = c (a != 0, integer solution)."""
    steps = []
    rhs = c - b
    if b > 0:
        steps.append(f"subtract {b} from both sides: {a}x = {c} - {b} = {rhs}")
    elif b < 0:
        steps.append(f"add {-b} to both sides: {a}x = {c} + {-b} = {rhs}")
    else:
        steps.append(f"{a}x = {c}")
    steps.append(f"divide both sides by {a}: x = {rhs} / {a} = {rhs // a}")
    steps.append(f"Answer: {rhs // a}")
    return steps


# -------------------------------------------------------------------------------------------------
# Generators: (rng, level) -> MathProblem


def _n_digits(rng: random.Random, n: int) -> int:
    return rng.randint(10 ** (n - 1) if n > 1 else 0, 10**n - 1)


def _gen_addition(rng: random.Random, level: int) -> MathProblem:
    a, b = _n_digits(rng, level + 1), _n_digits(rng, level + 1)
    return MathProblem(f"What is {a} + {b}?", str(a + b), addition_steps(a, b))


def _gen_subtraction(rng: random.Random, level: int) -> MathProblem:
    a, b = _n_digits(rng, level + 1), _n_digits(rng, level + 1)
    a, b = max(a, b), min(a, b)
    return MathProblem(f"What is {a} - {b}?", str(a - b), subtraction_steps(a, b))


def _gen_multiplication(rng: random.Random, level: int) -> MathProblem:
    a = _n_digits(rng, level + 1)
    b = rng.randint(2, 10 ** ((level + 1) // 2) - 1)
    return MathProblem(f"What is {a} * {b}?", str(a * b), multiplication_steps(a, b))


def _gen_linear(rng: random.Random, level: int) -> MathProblem:
    a = rng.choice([1, -1]) * rng.randint(2, 3 * level + 3)
    x = rng.randint(-5 * level, 5 * level)
    b = rng.randint(-(10**level), 10**level)
    c = a * x + b
    lhs = f"{a}x" + (f" + {b}" if b > 0 else f" - {-b}" if b < 0 else "")
    return MathProblem(f"Solve for x: {lhs} = {c}", str(x), linear_steps(a, b, c))


GENERATORS: dict[str, Callable[[random.Random, int], MathProblem]] = {
    "addition": _gen_addition,
    "subtraction": _gen_subtraction,
    "multiplication": _gen_multiplication,
    "linear": _gen_linear,
}


def generate(family: str, level: int, seed: int, split: str = "train") -> MathProblem:
    """The problem of ``family`` at ``level`` for ``seed`` in ``split`` (deterministic)."""
    if family not in GENERATORS:
        raise ValueError(f"unknown math task family {family!r}; families: {', '.join(FAMILIES)}")
    if level not in LEVELS:
        raise ValueError(f"math task level must be one of {list(LEVELS)}, got {level!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    rng = random.Random(f"{family}:{level}:{split}:{int(seed)}")
    for _ in range(1000):
        problem = GENERATORS[family](rng, level)
        if split_of(problem.question) == split:
            problem.family, problem.level, problem.source = family, level, "procedural"
            return problem
    raise RuntimeError(f"no {split} problem found for {family} level {level} seed {seed}")
