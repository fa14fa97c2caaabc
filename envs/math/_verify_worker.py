"""The math-verify worker: one process, run as a script by ``envs.math.answers`` (never imported).

It reads JSON lines ``[candidate, reference]`` on stdin and writes one JSON line per job on stdout:
``true`` / ``false`` (math-verify's verdict, reference as gold) or ``null`` (it could not decide).
math-verify's own signal-based timeouts are off; the parent kills this process when a job runs
past its limit. Only math-verify is imported here (not the ``envs`` package): it starts quickly.
"""

import json
import logging
import sys

MEMORY_BYTES = 2 << 30  # sympy can blow up; a MemoryError is a "could not decide"


def _limit_memory() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass


def main() -> None:
    _limit_memory()
    logging.disable(logging.WARNING)  # math-verify warns that its timeout is off: we know
    from math_verify import parse, verify

    out = sys.stdout
    out.write('"ready"\n')
    out.flush()
    for line in sys.stdin:
        try:
            candidate, reference = json.loads(line)
            gold = parse("\\boxed{" + reference + "}", parsing_timeout=None)
            pred = parse("\\boxed{" + candidate + "}", parsing_timeout=None)
            result = bool(gold and pred and verify(gold, pred, timeout_seconds=None))
        except BaseException:  # noqa: BLE001 - sympy can raise anything, MemoryError included
            result = None
        out.write(json.dumps(result) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
