"""The math-verify worker: one process, run as a script by ``envs.math.answers`` (never imported).

It reads JSON lines ``[candidate, reference, time_limit_s]`` on stdin and writes one JSON line per job on stdout:
``true`` / ``false`` (math-verify's verdict, reference as gold) or ``null`` (it could not decide).
math-verify's own signal-based timeouts are off; the parent kills this process when a job runs
past its limit. Only math-verify is imported here (not the ``envs`` package): it starts quickly.
"""

import json
import logging
import sys

MEMORY_BYTES = 2 << 30  # sympy can blow up; a MemoryError is a "could not decide"
JOB_CPU_SLACK_S = 5  # SIGXCPU ends a job that outlives its time limit (and the parent's kill)


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


def _limit_cpu_for_next_job(limit_s: float) -> None:
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

    out = sys.stdout
    out.write('"ready"\n')
    out.flush()
    for line in sys.stdin:
        try:
            candidate, reference, limit_s = json.loads(line)
            _limit_cpu_for_next_job(float(limit_s))
            gold = parse("\\boxed{" + reference + "}", parsing_timeout=None)
            pred = parse("\\boxed{" + candidate + "}", parsing_timeout=None)
            result = bool(gold and pred and verify(gold, pred, timeout_seconds=None))
        except BaseException:  # noqa: BLE001 - sympy can raise anything, MemoryError included
            result = None
        out.write(json.dumps(result) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
