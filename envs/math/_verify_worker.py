"""The math-verify worker: one process, run as a script by ``envs.math.answers`` (never imported).

It reads one JSON line per request on stdin, ``[time_limit_s, [[candidate, reference], ...]]`` (a
chunk of pairs), and writes one JSON line per pair on stdout, in order, as soon as that pair is
decided: ``true`` / ``false`` (math-verify's verdict, reference as gold) or ``null`` (it could not
decide). So the parent always knows which pair is running: the one after the last line it read.
math-verify's own signal-based timeouts are off; the parent kills this process when a pair runs
past its limit (a per-pair CPU-time rlimit is the backstop if that kill is ever missed). Parsed
references are kept in an LRU cache: a policy's group of samples shares one reference. Only
math-verify is imported here (not the ``envs`` package): it starts quickly.
"""

import functools
import json
import logging
import sys

MEMORY_BYTES = 2 << 30  # sympy can blow up; a MemoryError is a "could not decide"
JOB_CPU_SLACK_S = 5  # SIGXCPU ends a pair that outlives its time limit (and the parent's kill)
REFERENCE_CACHE = 4096  # parsed references kept
# Decided once before "ready": the first parse of each kind of answer is slow in a fresh process
# (the LaTeX parser fills its prediction caches, sympy imports lazily), up to ~0.5 s on a busy
# machine; that must not count against the first real pair's time limit.
WARM_UP = [
    ("x^2+6x+9", "(x+3)^2"), ("2\\sqrt{3}", "\\sqrt{12}"), ("\\frac{\\pi}{2}", "\\pi/2"),
    ("\\{1,2,3\\}", "\\{3,2,1\\}"), ("[0,1)", "(-\\infty, 2]"), ("(1,2)", "(1, 3)"),
    ("\\dfrac{3}{4}", "0.75"), ("2^{10}", "1024"), ("\\text{yes}", "yes"), ("x \\le 3", "x<3"),
    ("y = 2x+1", "2x+1"), ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "(1,2)"), ("30^\\circ", "30"),
]


def _limit_memory() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass


def _exit_with_parent() -> None:
    """Exit when the parent dies (stdin EOF covers an idle worker; this covers a busy one)."""
    import os
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _limit_cpu_for_next_pair(limit_s: float) -> None:
    """A backstop if the parent fails to kill us: at most ``limit_s`` + slack more CPU seconds."""
    try:
        import resource

        used = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(used.ru_utime + used.ru_stime + limit_s) + 1 + JOB_CPU_SLACK_S
        hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except (ImportError, ValueError, OSError):
        pass


def main() -> None:
    _limit_memory()
    _exit_with_parent()
    logging.disable(logging.WARNING)  # math-verify warns that its timeout is off: we know
    from math_verify import parse, verify

    def parse_boxed(answer: str) -> list:
        return parse("\\boxed{" + answer + "}", parsing_timeout=None)

    parse_reference = functools.lru_cache(maxsize=REFERENCE_CACHE)(parse_boxed)

    for candidate, reference in WARM_UP:
        try:
            verify(parse_boxed(reference), parse_boxed(candidate), timeout_seconds=None)
        except Exception:  # noqa: BLE001, S110 - warming only
            pass

    out = sys.stdout
    out.write('"ready"\n')
    out.flush()
    for line in sys.stdin:
        try:
            limit_s, pairs = json.loads(line)
            limit_s = float(limit_s)
        except BaseException:  # noqa: BLE001, S112 - a malformed request: nothing to answer
            continue
        for pair in pairs:
            try:
                candidate, reference = pair
                _limit_cpu_for_next_pair(limit_s)
                gold = parse_reference(reference)
                pred = parse_boxed(candidate)
                result = bool(gold and pred and verify(gold, pred, timeout_seconds=None))
            except BaseException:  # noqa: BLE001 - sympy can raise anything, MemoryError included
                result = None
            out.write("true\n" if result else "false\n" if result is False else "null\n")
            out.flush()


if __name__ == "__main__":
    main()
