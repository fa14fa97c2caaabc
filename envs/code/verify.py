"""Score a program against a task's tests in the sandbox, so that the program cannot forge it.

Each assert is split (``ast``) into an expression the sandbox evaluates and an expected value kept
*out of the sandbox*: ``assert f(3) == 10`` becomes the expression ``f(3)`` and the expected
literal ``10``; ``assert f(x)`` / ``assert not f(x)`` both become ``f(x)`` with expected truth
True / False. One sandbox run loads the program (as module ``solution``), evaluates every
expression (each under its own alarm) and prints ``repr`` of each value on a line tagged with a
random per-run tag; the parent compares them with the expected values. A program that prints fake
result lines gains nothing: it would have to print the right values, which it does not know
without computing them (a line index seen twice counts as failed).

Asserts whose expected side is not a literal (``assert math.isclose(f(1), 3.14)``) and non-assert
tests (``check(candidate)``) are "opaque": their truth is computed inside the sandbox, which a
program that reads its harness could forge; ``TestReport.opaque`` counts them. Procedural tasks
have none.
"""

from __future__ import annotations

import ast
import json
import operator
import os
import re
from dataclasses import dataclass, field
from typing import Any

from envs.code.sandbox import SandboxPool, SandboxResult, default_pool
from envs.code.tasks import CodeTask

MAX_VALUE_CHARS = 10_000

_OPS = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}


@dataclass(frozen=True)
class Check:
    expr: str  # evaluated in the sandbox ("eval"), or a statement ("exec", kind "opaque_stmt")
    kind: str  # "compare" | "truthy" | "falsy" | "opaque" | "opaque_stmt"
    op: str = ""  # comparison operator name (kind "compare")
    expected: str = ""  # a Python literal, never sent to the sandbox


def _literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def compile_test(test: str) -> Check:
    """Split one test (an assert statement, or any statement) into a ``Check``."""
    try:
        tree = ast.parse(test.strip())
    except SyntaxError:
        return Check(test, "opaque_stmt")
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return Check(test.strip(), "opaque_stmt")
    cond = tree.body[0].test
    if isinstance(cond, ast.Compare) and len(cond.ops) == 1 and type(cond.ops[0]) in _OPS:
        left, op, right = cond.left, type(cond.ops[0]), cond.comparators[0]
        if op in (ast.Eq, ast.NotEq) and _literal(left) and not _literal(right):
            left, right = right, left
        if _literal(right) and not _literal(left):
            return Check(ast.unparse(left), "compare", op.__name__, ast.unparse(right))
    if isinstance(cond, ast.UnaryOp) and isinstance(cond.op, ast.Not):
        return Check(ast.unparse(cond.operand), "falsy")
    if isinstance(cond, ast.Call):
        return Check(ast.unparse(cond), "truthy")
    return Check(ast.unparse(cond), "opaque")


_HARNESS = r'''
import json as _json, signal as _signal, sys as _sys
_out = _sys.stdout
_TAG, _EXPRS, _SETUP, _PER_TEST, _CAP = {tag!r}, {exprs!r}, {setup!r}, {per_test!r}, {cap!r}

def _emit(i, payload):
    _out.write("\n@@" + _TAG + " " + str(i) + " " + _json.dumps(payload) + "\n")
    _out.flush()

class _TestTimeout(BaseException):
    pass

def _alarm(signum, frame):
    raise _TestTimeout()

_ns = {{"__name__": "solution", "__builtins__": __builtins__}}
try:
    with open("solution.py") as _f:
        exec(compile(_f.read(), "solution.py", "exec"), _ns)
    if _SETUP:
        exec(compile(_SETUP, "setup", "exec"), _ns)
except BaseException as _e:
    import traceback as _tb
    _tb.print_exc()
    _emit(-1, ["load_error", type(_e).__name__])
    _sys.exit(0)
for _i, (_kind, _expr) in enumerate(_EXPRS):
    try:
        _signal.signal(_signal.SIGALRM, _alarm)
        _signal.setitimer(_signal.ITIMER_REAL, _PER_TEST)
        try:
            if _kind == "opaque_stmt":
                exec(compile(_expr, "test", "exec"), _ns)
                _v = True
            else:
                _v = eval(compile(_expr, "test", "eval"), _ns)
            _truth = bool(_v)
            _r = repr(_v)
        finally:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
    except BaseException as _e:
        _emit(_i, ["exc", type(_e).__name__])
    else:
        _emit(_i, ["val", _r if len(_r) <= _CAP else None, _truth])
'''


@dataclass
class TestReport:
    passed: list[bool]  # one per test
    run: SandboxResult | None = None
    opaque: int = 0  # tests whose truth was computed inside the sandbox (forgeable)
    details: list[str] = field(default_factory=list)  # per test: "pass" or why it failed

    @property
    def fraction(self) -> float:
        return sum(self.passed) / len(self.passed) if self.passed else 0.0

    @property
    def all_passed(self) -> bool:
        return bool(self.passed) and all(self.passed)


def _judge(check: Check, payload: Any) -> tuple[bool, str]:
    if not (isinstance(payload, list) and payload and payload[0] == "val" and len(payload) == 3):
        return False, f"raised {payload[1]}" if isinstance(payload, list) and len(payload) > 1 else "no result"
    _, rep, truth = payload
    if check.kind in ("opaque", "opaque_stmt"):
        return bool(truth), "pass" if truth else "assertion false"
    value: Any
    try:
        value = ast.literal_eval(rep) if isinstance(rep, str) else None
        literal = isinstance(rep, str)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        value, literal = None, False
    if check.kind == "truthy":
        ok = bool(value) if literal else bool(truth)
    elif check.kind == "falsy":
        ok = (not value) if literal else (not truth)
    else:
        if not literal:
            return False, "value is not a plain Python literal"
        try:
            ok = bool(_OPS[getattr(ast, check.op)](value, ast.literal_eval(check.expected)))
        except Exception:  # noqa: BLE001 - e.g. comparing int and str with <
            ok = False
    return ok, "pass" if ok else f"got {rep[:80] if isinstance(rep, str) else '?'}"


def run_tests(
    task: CodeTask,
    program: str,
    *,
    pool: SandboxPool | None = None,
    timeout_s: float = 5.0,
    per_test_timeout_s: float = 1.0,
    **limits: Any,
) -> TestReport:
    """Run every test of ``task`` against ``program`` in one sandbox run."""
    checks = [compile_test(t) for t in task.tests]
    tag = os.urandom(12).hex()
    harness = _HARNESS.format(
        tag=tag, exprs=[(c.kind, c.expr) for c in checks], setup=task.setup_code,
        per_test=float(per_test_timeout_s), cap=MAX_VALUE_CHARS,
    )
    pool = pool or default_pool()
    result = pool.run(harness, files={"solution.py": program}, timeout_s=timeout_s, **limits)
    lines: dict[int, list[Any]] = {}
    pattern = re.compile(r"^@@" + tag + r" (-?\d+) (.*)$")
    for line in result.stdout.splitlines():
        m = pattern.match(line)
        if m:
            try:
                lines.setdefault(int(m.group(1)), []).append(json.loads(m.group(2)))
            except json.JSONDecodeError:
                lines.setdefault(int(m.group(1)), []).append(None)
    passed, details = [], []
    for i, check in enumerate(checks):
        got = lines.get(i, [])
        if len(got) != 1:
            ok, why = False, "no result" if not got else "result line repeated (forged?)"
        else:
            ok, why = _judge(check, got[0])
        if -1 in lines:
            ok, why = False, "program failed to load"
        passed.append(ok)
        details.append(why)
    opaque = sum(c.kind.startswith("opaque") for c in checks)
    return TestReport(passed=passed, run=result, opaque=opaque, details=details)


def score(report: TestReport, reward: str = "fraction") -> float:
    """The reward: the fraction of tests passed, or 1/0 for all-or-nothing (``reward="all"``)."""
    if reward == "fraction":
        return report.fraction
    if reward == "all":
        return 1.0 if report.all_passed else 0.0
    raise ValueError(f"reward must be 'fraction' or 'all', not {reward!r}")
