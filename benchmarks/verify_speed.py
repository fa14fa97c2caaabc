"""Verifier speed: sandboxed code tests and math answer checks, against naive baselines.

    python benchmarks/verify_speed.py [--quick]

Measures, in the same run on the same inputs:
  (a) sandbox executions per second of small programs: ``SandboxPool.run_many`` (fork-server
      slots, every confinement on) vs a naive ``subprocess.run([python, file], timeout=...)`` per
      program, one after the other, with no confinement at all;
  (b) code tests verified per second on procedural tasks (reference solutions and wrong programs):
      ``envs.code.verify.run_tests`` through the pool (one sandbox run per program, all its tests)
      in "fork" mode and in "exec" mode (a fresh ``python -I -S`` per run) vs the naive baseline of
      one ``subprocess.run([python, file])`` per test (program + that assert), sequential;
  (c) math answer verifications per second: ``envs.math.answers.answers_match_many`` (its worker
      pool, time limits, in-process fast paths) vs calling math-verify's ``parse`` + ``verify``
      directly in this process, one pair after the other: on the bare strings (raw: it cannot
      parse bare LaTeX, says False and skips the work) and with the answers in ``\\boxed{}``
      (what our workers run); each figure reports how many verdicts agree, with samples.
Prints a table and writes benchmarks/results/verify_speed.json (DESIGN.md's benchmarks protocol).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import figure, machine, write_result

from envs.code.sandbox import SandboxPool
from envs.code.tasks import LEVELS, generate
from envs.code.verify import run_tests

NOTE = "no GPU used"


def _programs(n: int) -> list[str]:
    """Small programs of the kind a policy writes: a function, a loop, some output."""
    out = []
    for i in range(n):
        out.append(
            f"def f(n):\n    return sum(k * k for k in range(n))\n"
            f"print(f({100 + i}))\n"
        )
    return out


def _naive_run(source: str, workdir: str, timeout: float = 5.0) -> bool:
    path = os.path.join(workdir, "prog.py")
    with open(path, "w") as f:
        f.write(source)
    try:
        proc = subprocess.run([sys.executable, path], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def bench_executions(n: int, workers: int) -> tuple[float, float]:
    progs = _programs(n)
    with SandboxPool(workers) as pool:
        pool.run_many(progs[:workers])  # start the slots (fork servers) before timing
        t0 = time.perf_counter()
        results = pool.run_many(progs)
        ours = n / (time.perf_counter() - t0)
    assert all(r.ok for r in results), [r.stderr for r in results if not r.ok][:1]
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        ok = [_naive_run(p, d) for p in progs]
        base = n / (time.perf_counter() - t0)
    assert all(ok)
    return ours, base


def _code_workload(n_tasks: int) -> list[tuple]:
    work = []
    for i in range(n_tasks):
        task = generate(i, LEVELS[i % len(LEVELS)], "train")
        program = task.reference_solution
        if i % 3 == 2:  # a wrong program now and then
            program = f"def {task.entry_point}(*a):\n    return a[0]\n"
        work.append((task, program))
    return work


def bench_tests(n_tasks: int, workers: int) -> tuple[float, float, float, int]:
    work = _code_workload(n_tasks)
    n_tests = sum(len(t.tests) for t, _ in work)
    rates = {}
    verdicts = {}
    with SandboxPool(workers) as pool:
        for mode in ("fork", "exec"):
            pool.run_many(["pass"] * workers, mode=mode)  # warm up
            t0 = time.perf_counter()
            futures = [pool._executor.submit(run_tests, t, p, pool=pool, mode=mode)
                       for t, p in work]
            reports = [f.result() for f in futures]
            rates[mode] = n_tests / (time.perf_counter() - t0)
            verdicts[mode] = [x for r in reports for x in r.passed]
    naive = []
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        for task, program in work:
            for test in task.tests:
                naive.append(_naive_run(program + "\n" + test + "\n", d))
        base = n_tests / (time.perf_counter() - t0)
    assert verdicts["fork"] == verdicts["exec"] == naive, "verdicts differ from the baseline"
    return rates["fork"], rates["exec"], base, n_tests


def _math_pairs(n: int, offset: int = 0) -> list[tuple[str, str]]:
    """Distinct (candidate, reference) pairs (no cache can help), equal and unequal, in forms a
    policy writes: fractions vs decimals, expressions, sets, intervals, boxed solutions."""
    pairs = []
    for i in range(offset, offset + n):
        a, b = i % 9 + 1, i % 7 + 2
        kind = i % 8
        if kind == 0:
            pairs.append((f"\\frac{{{a}}}{{{2 * b}}}", f"{a / (2 * b)}"))
        elif kind == 1:
            pairs.append((f"\\frac{{{a * 3}}}{{{b * 3}}}", f"\\frac{{{a}}}{{{b}}}"))
        elif kind == 2:
            pairs.append((f"x^2+{2 * a}x+{a * a}", f"(x+{a})^2"))
        elif kind == 3:
            pairs.append((f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}"))
        elif kind == 4:
            pairs.append((f"The answer is \\boxed{{{i}}}", f"{i}"))
        elif kind == 5:
            pairs.append((f"{i}", f"{i + 1}"))
        elif kind == 6:
            pairs.append((f"\\{{{a},{b},{i}\\}}", f"\\{{{i},{b},{a}\\}}"))
        else:
            pairs.append((f"[{a},{i + 10})", f"[{a},{i + 11})"))
    return pairs


def _naive_verdicts(pairs: list[tuple[str, str]], wrap: str) -> tuple[list[bool], float]:
    """math-verify in this process, one pair after the other, no time limit: (verdicts, pairs/s).
    ``wrap`` formats each answer before ``parse`` ("{}": as it is; "\\boxed{{{}}}": boxed)."""
    from math_verify import parse, verify

    t0 = time.perf_counter()
    out = []
    for c, r in pairs:
        try:
            out.append(bool(verify(parse(wrap.format(r)), parse(wrap.format(c)))))
        except Exception:
            out.append(False)
    return out, len(pairs) / (time.perf_counter() - t0)


def bench_math(n: int) -> list[dict]:
    """Three figures: all pairs against the raw baseline (math-verify on the bare strings, which
    cannot parse bare LaTeX such as ``x^2+6x+9`` or ``\\{1,2\\}`` and so skips that work and
    says False) and against the boxed baseline (the same call with each answer in ``\\boxed{}``, the
    verdicts we aim for); and the pairs that need sympy (no in-process shortcut) alone, boxed."""
    try:
        from envs.math.answers import answers_match_many
    except ImportError:
        return []
    pairs = _math_pairs(n)
    warm = _math_pairs(64, offset=n)
    answers_match_many(warm)  # start the worker pool before timing
    _naive_verdicts(warm, "\\boxed{{{}}}")  # and warm math-verify's parsers in this process
    _naive_verdicts(warm, "{}")
    sympy_pairs = [p for i, p in enumerate(_math_pairs(n, offset=n + 64), n + 64) if i % 8 in (2, 3)]

    def ours(batch: list[tuple[str, str]]) -> tuple[list[bool], float]:
        t0 = time.perf_counter()
        verdicts = answers_match_many(batch)
        return verdicts, len(batch) / (time.perf_counter() - t0)

    raw = "math_verify.parse + verify in-process on the bare strings, one by one, no time limit"
    boxed = "math_verify.parse + verify in-process, answers in \\boxed{}, one by one, no time limit"
    goal = ">= 1: a time limit and isolation, and still as fast as the raw call"
    figures = []
    for label, batch, wrap, base_name in [
        ("", pairs, "{}", raw),
        ("", pairs, "\\boxed{{{}}}", boxed),
        ("pairs that need sympy: polynomials, surds; ", sympy_pairs, "\\boxed{{{}}}", boxed),
    ]:
        ours_v, ours_rate = ours(batch)
        base_v, base_rate = _naive_verdicts(batch, wrap)
        agree = sum(a == b for a, b in zip(ours_v, base_v))
        row = figure(f"math answer verifications/s ({label}{len(batch)} pairs; "
                     f"{agree}/{len(batch)} verdicts agree)", "checks/s", ours_rate, base_rate,
                     base_name, goal)
        row.update(agree=agree, pairs=len(batch),
                   disagree_samples=[[c, r, o] for (c, r), o, b in zip(batch, ours_v, base_v)
                                     if o != b][:6])
        figures.append(row)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (same code path)")
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    n_exec, n_tasks, n_math = (24, 9, 32) if args.quick else (300, 90, 400)

    figures = []
    ours, base = bench_executions(n_exec, workers)
    figures.append(figure(
        f"sandboxed executions/s, small programs ({workers} slots, fork mode)", "executions/s",
        ours, base, "subprocess.run([python, file]) per program, sequential, unconfined",
        "> 1: confinement costs nothing against the naive runner"))
    fork, exe, base, n_tests = bench_tests(n_tasks, workers)
    naive_tests = "subprocess.run([python, file]) per test (program + assert), sequential"
    figures.append(figure(f"code tests verified/s ({n_tests} tests, {workers} slots, fork mode)",
                          "tests/s", fork, base, naive_tests, "> 5"))
    figures.append(figure(f"code tests verified/s ({n_tests} tests, {workers} slots, exec mode)",
                          "tests/s", exe, base, naive_tests, "> 1"))
    figures += bench_math(n_math)

    print(f"verify_speed ({'quick' if args.quick else 'full'}) on {machine(NOTE)}")
    print(f"{'figure':<72} {'ours':>10} {'baseline':>10} {'ratio':>7}")
    for f in figures:
        ratio = "-" if f["ratio"] is None else f"{f['ratio']:.2f}"
        print(f"{f['name']:<72} {f['ours']:>10.1f} {f['baseline']:>10.1f} {ratio:>7}")
        print(f"    baseline: {f['baseline_name']}")
    write_result("verify_speed", figures, quick=args.quick, note=NOTE)  # --quick: .quick.json


if __name__ == "__main__":
    main()
