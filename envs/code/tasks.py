"""Program-synthesis tasks from input/output examples, generated procedurally.

A task asks for one small Python function; its tests are assert statements
(``assert add_7(3) == 10``) and it carries a reference solution that passes them. Families come in
three levels of difficulty:

- level 1, one expression: add / multiply by a constant, reverse / upper-case / repeat a string;
- level 2, filter or map over a list: keep evens / items above k, square / offset items, lengths;
- level 3, simple loops: running sums, counting an item, gcd, digit sums, Collatz steps,
  longest run of equal items.

``generate(seed, level=None, split="train")`` is deterministic in its arguments. The train and test
splits are disjoint by *function* (family and constants, e.g. "add 7" vs "add 9"), decided by a
stable hash, so a test task is never a train task with other inputs.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Callable

LEVELS = (1, 2, 3)
SPLITS = ("train", "test")
TEST_FRACTION_MOD = 5  # one function in 5 (by hash of family and constants) is held out
NUM_TESTS = 6  # asserts per task
NUM_EXAMPLES = 2  # of which shown in the prompt


@dataclass
class CodeTask:
    prompt: str  # what the policy reads
    entry_point: str  # the function the tests call
    tests: list[str]  # assert statements, one per test
    reference_solution: str  # a program that passes every test
    level: int = 0  # 1..3 for procedural tasks, 0 when unknown
    source: str = ""  # "procedural/<family>" or "<file>:<line>"
    task_id: str = ""
    setup_code: str = ""  # run before the tests (imports a dataset's tests need)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Family:
    name: str
    level: int
    # rng -> (constants, function name, one-line description, signature, body, input sampler)
    make: Callable[[random.Random], tuple[dict, str, str, str, str, Callable[[random.Random], tuple]]]


def _ints(rng: random.Random, n_lo: int = 0, n_hi: int = 8, lo: int = -20, hi: int = 20) -> list:
    return [rng.randint(lo, hi) for _ in range(rng.randint(n_lo, n_hi))]


def _word(rng: random.Random, lo: int = 1, hi: int = 8) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(lo, hi)))


# -- level 1 ------------------------------------------------------------------------------------


def _add_const(rng):
    k = rng.randint(1, 20)
    return ({"k": k}, f"add_{k}", f"returns x plus {k}", "(x: int) -> int",
            f"return x + {k}", lambda r: (r.randint(-100, 100),))


def _mul_const(rng):
    k = rng.randint(2, 9)
    return ({"k": k}, f"times_{k}", f"returns x multiplied by {k}", "(x: int) -> int",
            f"return x * {k}", lambda r: (r.randint(-50, 50),))


def _reverse(rng):
    return ({}, "reverse_string", "returns the string s reversed", "(s: str) -> str",
            "return s[::-1]", lambda r: (_word(r, 0, 9),))


def _upper_first(rng):
    return ({}, "shout", "returns s in upper case followed by '!'", "(s: str) -> str",
            "return s.upper() + '!'", lambda r: (_word(r, 0, 8),))


def _repeat(rng):
    k = rng.randint(2, 4)
    return ({"k": k}, f"repeat_{k}", f"returns s repeated {k} times, separated by '-'",
            "(s: str) -> str", f"return '-'.join([s] * {k})", lambda r: (_word(r, 1, 5),))


# -- level 2 ------------------------------------------------------------------------------------


def _keep_above(rng):
    k = rng.randint(-5, 10)
    return ({"k": k}, f"keep_above_{k}".replace("-", "m"),
            f"returns the items of xs greater than {k}, in order", "(xs: list[int]) -> list[int]",
            f"return [x for x in xs if x > {k}]", lambda r: (_ints(r),))


def _keep_parity(rng):
    even = rng.random() < 0.5
    word, rem = ("even", 0) if even else ("odd", 1)
    return ({"even": even}, f"keep_{word}", f"returns the {word} items of xs, in order",
            "(xs: list[int]) -> list[int]", f"return [x for x in xs if x % 2 == {rem}]",
            lambda r: (_ints(r),))


def _map_affine(rng):
    a, b = rng.randint(2, 5), rng.randint(-9, 9)
    sign = "+" if b >= 0 else "-"
    return ({"a": a, "b": b}, "transform", f"returns [x * {a} {sign} {abs(b)} for each x in xs]",
            "(xs: list[int]) -> list[int]", f"return [x * {a} + ({b}) for x in xs]",
            lambda r: (_ints(r),))


def _squares(rng):
    return ({}, "squares", "returns the square of every item of xs, in order",
            "(xs: list[int]) -> list[int]", "return [x * x for x in xs]", lambda r: (_ints(r),))


def _long_words(rng):
    k = rng.randint(2, 5)
    return ({"k": k}, f"words_longer_than_{k}",
            f"returns the words of the list ws that have more than {k} letters, in order",
            "(ws: list[str]) -> list[str]", f"return [w for w in ws if len(w) > {k}]",
            lambda r: ([_word(r, 1, 8) for _ in range(r.randint(0, 6))],))


# -- level 3 ------------------------------------------------------------------------------------


def _running_sum(rng):
    body = "out, total = [], 0\n    for x in xs:\n        total += x\n        out.append(total)\n    return out"
    return ({}, "running_sum", "returns the running sums of xs (the i-th item is xs[0] + ... + xs[i])",
            "(xs: list[int]) -> list[int]", body, lambda r: (_ints(r, 0, 9),))


def _count_item(rng):
    return ({}, "count_item", "returns how many times x occurs in xs, without using list.count",
            "(xs: list[int], x: int) -> int",
            "n = 0\n    for y in xs:\n        if y == x:\n            n += 1\n    return n",
            lambda r: (_ints(r, 0, 10, 0, 4), r.randint(0, 4)))


def _gcd(rng):
    return ({}, "gcd", "returns the greatest common divisor of two non-negative integers a and b "
            "(gcd(0, 0) is 0)", "(a: int, b: int) -> int",
            "while b:\n        a, b = b, a % b\n    return a",
            lambda r: (r.randint(0, 200) * r.choice([1, 2, 3, 6]), r.randint(0, 200)))


def _digit_sum(rng):
    return ({}, "digit_sum", "returns the sum of the decimal digits of the non-negative integer n",
            "(n: int) -> int",
            "total = 0\n    while n:\n        total += n % 10\n        n //= 10\n    return total",
            lambda r: (r.randint(0, 10 ** r.randint(1, 7)),))


def _collatz(rng):
    body = ("steps = 0\n    while n != 1:\n        n = n // 2 if n % 2 == 0 else 3 * n + 1\n"
            "        steps += 1\n    return steps")
    return ({}, "collatz_steps", "returns how many Collatz steps (n -> n/2 if even, else 3n+1) "
            "take the positive integer n to 1", "(n: int) -> int", body,
            lambda r: (r.randint(1, 300),))


def _longest_run(rng):
    body = ("best = cur = 0\n    prev = object()\n    for x in xs:\n"
            "        cur = cur + 1 if x == prev else 1\n        prev = x\n"
            "        best = max(best, cur)\n    return best")
    return ({}, "longest_run", "returns the length of the longest run of equal adjacent items "
            "of xs (0 for an empty list)", "(xs: list[int]) -> int", body,
            lambda r: (_ints(r, 0, 10, 0, 2),))


FAMILIES: tuple[_Family, ...] = (
    _Family("add_const", 1, _add_const),
    _Family("mul_const", 1, _mul_const),
    _Family("reverse", 1, _reverse),
    _Family("shout", 1, _upper_first),
    _Family("repeat", 1, _repeat),
    _Family("keep_above", 2, _keep_above),
    _Family("keep_parity", 2, _keep_parity),
    _Family("map_affine", 2, _map_affine),
    _Family("squares", 2, _squares),
    _Family("long_words", 2, _long_words),
    _Family("running_sum", 3, _running_sum),
    _Family("count_item", 3, _count_item),
    _Family("gcd", 3, _gcd),
    _Family("digit_sum", 3, _digit_sum),
    _Family("collatz", 3, _collatz),
    _Family("longest_run", 3, _longest_run),
)


def split_of(family: str, constants: dict) -> str:
    """"train" or "test" for a function (family + constants), from a stable hash."""
    key = family + repr(sorted(constants.items()))
    return "test" if hashlib.sha1(key.encode()).digest()[0] % TEST_FRACTION_MOD == 0 else "train"


def _build(fam: _Family, rng: random.Random) -> CodeTask:
    consts, name, what, sig, body, sample = fam.make(rng)
    solution = f"def {name}{sig}:\n    {body}\n"
    namespace: dict[str, Any] = {}
    exec(compile(solution, f"<reference {fam.name}>", "exec"), namespace)  # our own code
    func = namespace[name]
    seen, cases = set(), []
    for _ in range(200):
        args = sample(rng)
        if repr(args) in seen:
            continue
        seen.add(repr(args))
        cases.append((args, func(*args)))
        if len(cases) == NUM_TESTS:
            break
    calls = [f"{name}({', '.join(repr(a) for a in args)})" for args, _ in cases]
    tests = [f"assert {call} == {out!r}" for call, (_, out) in zip(calls, cases)]
    examples = "\n".join(f">>> {call}\n{out!r}" for call, (_, out) in
                         list(zip(calls, cases))[:NUM_EXAMPLES])
    prompt = (f"Write a Python function `{name}{sig}` that {what}.\n\n"
              f"Examples:\n{examples}\n")
    return CodeTask(prompt=prompt, entry_point=name, tests=tests, reference_solution=solution,
                    level=fam.level, source=f"procedural/{fam.name}",
                    meta={"family": fam.name, "constants": consts})


def generate(seed: int, level: int | None = None, split: str = "train") -> CodeTask:
    """A task, deterministic in (seed, level, split); ``level=None`` mixes all levels."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if level is not None and level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS} or None, not {level!r}")
    fams = [f for f in FAMILIES if level is None or f.level == level]
    rng = random.Random(f"code-task/{seed}/{level}/{split}")
    for attempt in range(10_000):
        fam = rng.choice(fams)
        state = rng.getstate()
        consts = fam.make(rng)[0]
        if split_of(fam.name, consts) != split:
            continue
        rng.setstate(state)
        task = _build(fam, rng)
        task.task_id = f"procedural/{split}/{level or 'any'}/{seed}"
        return task
    raise RuntimeError(f"no {split} task found for level {level}")  # pragma: no cover
