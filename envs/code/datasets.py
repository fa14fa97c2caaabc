"""Load MBPP- and HumanEval-style JSONL files as ``CodeTask`` lists.

One JSON object per line; the format is recognised per line by its keys:

- MBPP: ``text`` (the problem), ``code`` (reference), ``test_list`` (assert statements), optional
  ``task_id``, ``test_setup_code``, ``challenge_test_list``. The prompt is the text followed by the
  first test, as in the MBPP paper; the entry point is the function the first test calls.
- HumanEval: ``prompt`` (signature + docstring), ``canonical_solution`` (the body),
  ``test`` (defines ``check(candidate)``), ``entry_point``, optional ``task_id``. When ``check`` is
  a plain list of asserts they become one test each (``candidate`` bound to the entry point);
  otherwise the whole ``check(entry_point)`` call is one test.

A malformed line raises ``DatasetError`` naming the file and line; blank lines are skipped. A line
without usable tests is malformed: an MBPP test that holds no ``assert``, a HumanEval ``test`` that
defines no ``check`` function (such "tests" would pass any program, or none).
Small samples written for this project live in ``envs/code/data/``.
"""

from __future__ import annotations

import ast
import json
import os
import re

from envs.code.tasks import CodeTask

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
MBPP_KEYS = ("text", "code", "test_list")
HUMANEVAL_KEYS = ("prompt", "canonical_solution", "test", "entry_point")


class DatasetError(ValueError):
    """A malformed dataset line; the message starts with ``<file>:<line>:``."""

    def __init__(self, path: str, lineno: int, message: str):
        self.path, self.lineno = path, lineno
        super().__init__(f"{path}:{lineno}: {message}")


def _str_field(obj: dict, key: str, where: tuple[str, int]) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(*where, f"field {key!r} must be a non-empty string, got {value!r:.60}")
    return value


def _check_python(src: str, what: str, where: tuple[str, int]) -> None:
    try:
        ast.parse(src)
    except SyntaxError as err:
        raise DatasetError(*where, f"{what} is not valid Python ({err.msg}, line {err.lineno})")


def _mbpp(obj: dict, where: tuple[str, int]) -> CodeTask:
    text = _str_field(obj, "text", where)
    code = _str_field(obj, "code", where)
    tests = obj.get("test_list")
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise DatasetError(*where, "field 'test_list' must be a non-empty list of assert strings")
    tests = list(tests) + [t for t in obj.get("challenge_test_list") or [] if isinstance(t, str)]
    for t in tests:
        _check_python(t, f"test {t[:40]!r}", where)
        if not any(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(t))):
            raise DatasetError(*where, f"test {t[:40]!r} holds no assert statement")
    _check_python(code, "field 'code'", where)
    match = re.search(r"assert\s+(?:not\s+)?\(?\s*(?:set\()?\s*([A-Za-z_]\w*)\s*\(", tests[0])
    defined = re.findall(r"^def\s+([A-Za-z_]\w*)", code, flags=re.M)
    entry = match.group(1) if match and match.group(1) in defined else (defined[-1] if defined else "")
    if not entry:
        raise DatasetError(*where, "cannot tell the entry point: no function defined in 'code'")
    prompt = f"{text.strip()}\nYour code should pass these tests:\n{tests[0].strip()}\n"
    return CodeTask(prompt=prompt, entry_point=entry, tests=[t.strip() for t in tests],
                    reference_solution=code.replace("\r\n", "\n"), level=0,
                    source=f"{where[0]}:{where[1]}", task_id=str(obj.get("task_id", where[1])),
                    setup_code=obj.get("test_setup_code") or "")


def _split_check(test_src: str, entry: str) -> tuple[str, list[str]] | None:
    """(setup, one assert per test) when check(candidate) is only asserts; None otherwise."""
    tree = ast.parse(test_src)
    setup, check = [], None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            check = node
        else:
            setup.append(ast.unparse(node))
    if check is None:
        return None
    body = [n for n in check.body if not (isinstance(n, ast.Expr) and isinstance(
        getattr(n, "value", None), ast.Constant))]
    if not body or not all(isinstance(n, ast.Assert) for n in body):
        return None
    tests = []
    for node in body:
        node = ast.Assert(test=node.test, msg=None)  # messages would only clutter the test
        tests.append(ast.unparse(node))
    return "\n".join(setup + [f"candidate = {entry}"]), tests


def _humaneval(obj: dict, where: tuple[str, int]) -> CodeTask:
    prompt = _str_field(obj, "prompt", where)
    body = _str_field(obj, "canonical_solution", where)
    test = _str_field(obj, "test", where)
    entry = _str_field(obj, "entry_point", where)
    if not entry.isidentifier():
        raise DatasetError(*where, f"field 'entry_point' {entry!r} is not an identifier")
    _check_python(test, "field 'test'", where)
    if not any(isinstance(n, ast.FunctionDef) and n.name == "check" for n in ast.parse(test).body):
        raise DatasetError(*where, "field 'test' defines no check(candidate) function")
    solution = prompt + body
    _check_python(solution, "prompt + canonical_solution", where)
    split = _split_check(test, entry)
    if split is None:
        setup, tests = test, [f"check({entry})"]
    else:
        setup, tests = split
    return CodeTask(prompt=prompt, entry_point=entry, tests=tests, reference_solution=solution,
                    level=0, source=f"{where[0]}:{where[1]}",
                    task_id=str(obj.get("task_id", where[1])), setup_code=setup)


def parse_line(obj: object, path: str = "<memory>", lineno: int = 0) -> CodeTask:
    where = (path, lineno)
    if not isinstance(obj, dict):
        raise DatasetError(*where, f"expected a JSON object, got {type(obj).__name__}")
    if all(k in obj for k in HUMANEVAL_KEYS):
        return _humaneval(obj, where)
    if all(k in obj for k in MBPP_KEYS):
        return _mbpp(obj, where)
    raise DatasetError(
        *where,
        f"neither an MBPP line (keys {', '.join(MBPP_KEYS)}) nor a HumanEval line (keys "
        f"{', '.join(HUMANEVAL_KEYS)}); it has keys {', '.join(sorted(obj)) or '(none)'}",
    )


def resolve_path(path: str) -> str:
    """``path`` as given, or a bare file name found in ``envs/code/data``."""
    if os.path.isfile(path):
        return path
    shipped = os.path.join(DATA_DIR, path)
    if os.path.isfile(shipped):
        return shipped
    raise FileNotFoundError(f"code dataset {path!r} not found (also looked in {DATA_DIR})")


def load_jsonl(path: str) -> list[CodeTask]:
    """Every task of an MBPP/HumanEval JSONL file (formats may be mixed line by line)."""
    path = resolve_path(path)
    tasks = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(path, lineno, f"invalid JSON ({err.msg} at column {err.colno})")
            tasks.append(parse_line(obj, path, lineno))
    if not tasks:
        raise DatasetError(path, 0, "no tasks in the file")
    return tasks
