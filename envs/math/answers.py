"""Math answer equivalence under our own time limit: ``answers_match`` and ``extract_answer``.

A policy's answer is untrusted input. ``math-verify`` (sympy underneath) decides equivalence of
LaTeX and plain expressions well, but some inputs make sympy run for ever (``9^{9^{9^9}}``,
``9!!!!!``) and its own timeout uses ``signal.alarm`` (main thread only). So its timeouts are off
(``parsing_timeout=None``, ``timeout_seconds=None``) and every parse+verify runs in a small pool of
persistent worker processes (``_verify_worker.py``, a plain script: no ``__main__`` re-import, no
process-global multiprocessing settings). A call hands each worker a chunk of pairs and reads the
per-pair verdicts as they come (``select`` on the pipes, no polling); a worker whose current pair
runs past the limit is killed and replaced in the background, that pair gets False, and the rest of
its chunk goes to another worker. Any thread may call; a pathological pair costs the limit.

How a pair is decided, cheapest first:

1. both sides go through ``extract_answer`` (a full solution text is reduced to its final answer;
   a bare answer is kept as it is) and a light normalisation (``$``, spaces, ``\\!``, thousands
   separators ``1,000``, a trailing ``.``, a leading ``x =``, a trailing percent sign);
2. in-process, no worker: equal normalised strings, or equal plain numbers (integers, decimals,
   ``a/b``, ``\\frac{a}{b}``) -> True; two different exact numbers (integers, fractions) -> False;
   sets ``\\{1,2\\}`` and intervals / tuples ``[0,1)`` of plain numbers (or infinities) of the same
   shape -> True when the items are equal (as sets for sets, in order otherwise), False when they
   differ and every item is exact (a decimal item goes to the worker, for math-verify's rounding);
3. guards: over ``MAX_ANSWER_CHARS`` characters or bracket nesting deeper than ``MAX_NESTING``
   -> False (never handed to sympy);
4. otherwise math-verify in a worker, reference as gold: ``verify(parse(\\boxed{ref}),
   parse(\\boxed{cand}))`` (each distinct pair of a batch once; parsed references are cached in the
   worker); True if it says so or if the fallback says so.

Bare answers are parsed as LaTeX (wrapped in ``\\boxed{}``): plain ``math_verify.parse`` on a bare
string without ``$`` or ``\\boxed`` cannot read ``x^2+6x+9``, ``4\\sqrt{5}`` or ``\\{1,2\\}`` and
returns nothing (so ``verify`` says False even for equal answers); we say True for those.

The fallback is exact comparison of the normalised strings plus numeric comparison of plain numbers
(exact for integers and fractions; within 1e-6 relative when a decimal is involved, like
math-verify's rounding).

Percent: a trailing ``%`` / ``\\%`` is dropped, so ``50%`` equals ``50`` and does NOT equal ``0.5``.
Benchmarks write "what percent ..." answers as the number of percent (GSM8K ``#### 50``); reading
``50%`` as ``0.5`` would reward ``0.5`` for such a question. math-verify itself is inconsistent
here (on plain text it accepts ``50%`` as both ``50`` and ``0.5``; in LaTeX it cannot parse it),
so we normalise first. A deliberate difference from plain math-verify, as is step 1's extraction
(``Answer: 18`` equals ``18``; boxed math-verify finds no answer in it).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from fractions import Fraction

MAX_ANSWER_CHARS = 10_000  # longer (after extraction) -> exact string comparison only
MAX_NESTING = 64  # deeper bracket nesting -> exact string comparison only
WORKER_WAIT_S = 30.0  # at most this long to wait for a free (or starting) worker
MAX_CHUNK = 16  # pairs sent to a worker in one request
_MAX_NUMBER_DIGITS = 200  # plain-number fallback ignores longer numbers (no giant int parsing)

log = logging.getLogger(__name__)

# -------------------------------------------------------------------------------------------------
# Extraction


_BOXED = re.compile(r"\\(?:boxed|fbox)")


def _last_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces.

    Linear time: an earlier ``\\boxed`` only needs scanning up to the start of a later one that
    did not close (if it has not closed by then, it never closes).
    """
    limit = len(text)
    for match in reversed(list(_BOXED.finditer(text))):
        start, i = match.start(), match.end()
        if start >= limit:
            continue  # inside a later \\boxed that did not close
        while i < limit and text[i] == " ":
            i += 1
        if i < limit and text[i] == "{":
            depth = 0
            for j in range(i, limit):
                ch = text[j]
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
        limit = start
    return None


_ANSWER_ANCHOR = re.compile(r"(?i)\banswer\b\s*(?:is\b|:)")


def extract_answer(text: str) -> str | None:
    """The final answer in a solution text, or None.

    In order: the last ``\\boxed{...}`` (balanced braces); else a GSM8K ``#### answer``; else the
    last line saying "answer is X" / "Answer: X" (the text after it, trailing period dropped).
    """
    if not isinstance(text, str):
        return None
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed
    k = text.rfind("####")
    if k != -1:
        rest = text[k + 4 :].strip()
        if rest:
            return rest.splitlines()[0].strip()
    for line in reversed(text.splitlines()):
        anchor = _ANSWER_ANCHOR.search(line)
        if anchor is None:
            continue
        value = line[anchor.end() :].strip().strip("*").strip()
        value = value.rstrip(".").strip()
        if value:
            return value
    return None


# -------------------------------------------------------------------------------------------------
# Normalisation and the in-process fallback

_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_NUMBER = re.compile(r"^([+-]?)(\d*)(?:\.(\d*))?$")
_FRACTION = re.compile(r"^([+-]?\d+)/(\d+)$")
_LATEX_FRACTION = re.compile(r"^([+-]?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$")
_LEADING_VAR = re.compile(r"^[a-zA-Z]\s*=\s*(?=[^=])")
_TEXT_WRAP = re.compile(r"^\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}$")


def normalize_answer(answer: str) -> str:
    """A light, cheap normalisation (linear time) used before every comparison."""
    s = answer.strip()
    if len(s) > 2 and s.startswith("$") and s.endswith("$"):
        s = s.strip("$").strip()
    for prefix in ("\\(", "\\["):
        if s.startswith(prefix) and s.endswith("\\)" if prefix == "\\(" else "\\]"):
            s = s[2:-2].strip()
    s = s.replace("\\!", "").replace("\\,", "").replace("\\ ", "").replace("\\left", "")
    s = s.replace("\\right", "").replace("\\displaystyle", "")
    s = " ".join(s.split())
    while s.endswith("."):
        s = s[:-1].rstrip()
    m = _TEXT_WRAP.match(s)
    if m:
        s = m.group(1).strip()
    s = _LEADING_VAR.sub("", s, count=1)
    if s.endswith("\\%"):
        s = s[:-2].rstrip()
    elif s.endswith("%"):
        s = s[:-1].rstrip()
    s = s.replace("^\\circ", "").replace("^{\\circ}", "")
    if _THOUSANDS.match(s.replace(" ", "")):
        s = s.replace(",", "")
    if s.startswith("+") and len(s) > 1:
        s = s[1:]
    if "\\" not in s:  # spaces matter between LaTeX commands ("\\pi r"), nowhere else
        s = s.replace(" ", "")
    return s


def _plain_number(s: str) -> tuple[Fraction, bool] | None:
    """(value, is_exact) for an integer, a decimal or a fraction ``a/b``; None otherwise."""
    if len(s) > _MAX_NUMBER_DIGITS:
        return None
    m = _NUMBER.match(s)
    if m and (m.group(2) or m.group(3)):
        sign, whole, frac = m.groups()
        value = Fraction(int(whole or "0")) + (
            Fraction(int(frac), 10 ** len(frac)) if frac else 0
        )
        return (-value if sign == "-" else value), frac is None
    m = _FRACTION.match(s)
    if m and int(m.group(2)) != 0:
        return Fraction(int(m.group(1)), int(m.group(2))), True
    m = _LATEX_FRACTION.match(s)
    if m and int(m.group(3)) != 0:
        value = Fraction(int(m.group(2)), int(m.group(3)))
        return (-value if m.group(1) == "-" else value), True
    return None


def _fallback_match(candidate: str, reference: str) -> bool:
    """Exact normalised strings, or equal plain numbers (decimals within 1e-6 relative)."""
    if candidate == reference and candidate != "":
        return True
    a, b = _plain_number(candidate), _plain_number(reference)
    if a is None or b is None:
        return False
    if a[0] == b[0]:
        return True
    if a[1] and b[1]:
        return False
    return abs(a[0] - b[0]) <= Fraction(1, 10**6) * max(1, abs(b[0]))


def _max_nesting(s: str) -> int:
    depth = best = 0
    for ch in s:
        if ch in "([{":
            depth += 1
            best = max(best, depth)
        elif ch in ")]}":
            depth = max(0, depth - 1)
    return best


_INFINITY = {"\\infty": "+inf", "+\\infty": "+inf", "-\\infty": "-inf", "\\infinity": "+inf"}


def _number_sequence(s: str) -> tuple[str, tuple, bool] | None:
    """A set ``\\{1, 2\\}`` or an interval / tuple ``[0, 1)`` of plain numbers (or +-infinity):
    (shape, items, all exact), the shape being ``set`` or the two brackets; None otherwise."""
    if len(s) > MAX_ANSWER_CHARS:
        return None
    if s.startswith("\\{") and s.endswith("\\}"):
        shape, inner = "set", s[2:-2]
    elif len(s) > 2 and s[0] in "([" and s[-1] in ")]":
        shape, inner = s[0] + s[-1], s[1:-1]
        if "," not in inner:
            return None
    else:
        return None
    items, exact = [], True
    for part in inner.split(","):
        part = part.strip()
        if part in _INFINITY:
            items.append(_INFINITY[part])
            continue
        number = _plain_number(part)
        if number is None:
            return None
        items.append(number[0])
        exact = exact and number[1]
    return shape, tuple(items), exact


# -------------------------------------------------------------------------------------------------
# The worker pool

_WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_verify_worker.py")


class _Worker:
    """One ``_verify_worker.py`` process, spoken to in JSON lines over its stdin/stdout."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-s", _WORKER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        self.fd = self.proc.stdout.fileno()
        self._buf = b""

    def read_available(self) -> list[object]:
        """The complete JSON lines readable now (one ``os.read``); raise EOFError if it died."""
        chunk = os.read(self.fd, 65536)
        if not chunk:
            raise EOFError
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        return [json.loads(line) for line in lines]

    def read_one(self, timeout_s: float) -> object:
        """The next JSON line, or raise TimeoutError / EOFError (used for the start-up line)."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if select.select([self.fd], [], [], remaining)[0]:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise EOFError
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def send(self, pairs: list[tuple[str, str]], timeout_s: float) -> None:
        self.proc.stdin.write(json.dumps([timeout_s, pairs]).encode() + b"\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        # reap in the background: the caller must not wait for the kernel
        threading.Thread(target=self.proc.wait, daemon=True).start()


class _Job:
    """The pairs a worker is deciding for one call: their indices in order, and when the one
    now running started (its deadline is that plus the limit)."""

    def __init__(self, indices: list[int], now: float) -> None:
        self.pending = deque(indices)
        self.started = now


class VerifierPool:
    """A few persistent math-verify worker processes, shared by every thread of this process.

    A call takes the idle workers (waiting for one if none is idle), sends each a chunk of pairs
    and reads the per-pair verdicts as they come, with ``select`` on their pipes (no polling). A
    worker whose current pair runs past the limit is killed, that pair gets no verdict, the rest of
    its chunk goes back to the queue, and a replacement starts at once in the background. A worker
    that fails to start makes the waiting calls give up (they use the fallback) instead of
    retrying in a loop.
    """

    def __init__(self, size: int | None = None) -> None:
        self.size = size or max(1, min(4, os.cpu_count() or 1))
        self._idle: list[_Worker] = []
        self._count = 0  # workers alive: idle, busy or starting
        self._failures = 0  # failed starts since the last good one
        self._cond = threading.Condition()
        self._closed = False

    def _start_one(self) -> None:
        """Start a worker in the background (``_count`` already includes it)."""

        def start() -> None:
            worker = None
            try:
                worker = _Worker()
                ok = worker.read_one(WORKER_WAIT_S) == "ready"
            except Exception as err:  # noqa: BLE001
                log.warning("math-verify worker failed to start: %r", err)
                ok = False
            with self._cond:
                if ok and not self._closed:
                    self._idle.append(worker)
                    self._failures = 0
                else:
                    self._count -= 1
                    self._failures += not ok
                    if worker is not None:
                        worker.kill()
                self._cond.notify_all()

        threading.Thread(target=start, daemon=True, name="math-verify-start").start()

    def _acquire(self, wait_s: float) -> _Worker | None:
        deadline = time.monotonic() + wait_s
        with self._cond:
            failures = self._failures
            while not self._closed:
                if self._idle:
                    return self._idle.pop()
                if self._failures > failures or self._failures >= 3 and self._count == 0:
                    return None  # workers cannot start here: the caller falls back
                if self._count < self.size:
                    self._count += 1
                    self._start_one()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
        return None

    def _take_idle(self, most: int) -> list[_Worker]:
        """Up to ``most`` idle workers, without waiting (and start missing ones)."""
        with self._cond:
            if self._closed:
                return []
            while self._count < self.size and self._failures < 3:
                self._count += 1
                self._start_one()
            taken = self._idle[-most:] if most > 0 else []
            del self._idle[len(self._idle) - len(taken) :]
            return taken

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            if self._closed:
                worker.kill()
                self._count -= 1
            else:
                self._idle.append(worker)
            self._cond.notify_all()

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._cond:
            if self._closed:
                self._count -= 1
            else:  # replace it now, so the next call finds a warm worker
                self._start_one()
            self._cond.notify_all()

    def warm_up(self, wait_s: float = WORKER_WAIT_S) -> bool:
        """Start every worker and wait until they are ready (tests and benchmarks call this)."""
        workers = [w for w in (self._acquire(wait_s) for _ in range(self.size)) if w is not None]
        for w in workers:
            self._release(w)
        return len(workers) == self.size

    def verify(self, candidate: str, reference: str, timeout_s: float) -> bool | None:
        """math-verify's verdict, or None when it failed, timed out or no worker was available."""
        return self.verify_many([(candidate, reference)], timeout_s)[0]

    def verify_many(self, pairs: Sequence[tuple[str, str]], timeout_s: float) -> list[bool | None]:
        """math-verify's verdict on each pair (None: failed, past ``timeout_s``, or no worker).

        Each pair gets at most ``timeout_s`` of a worker's time; the call also waits for a free
        worker when every worker is busy with other calls (at most ``WORKER_WAIT_S`` each time it
        has none left).
        """
        timeout_s = max(0.0, timeout_s)
        results: list[bool | None] = [None] * len(pairs)
        todo = deque(range(len(pairs)))
        free: list[_Worker] = []  # ours, without work
        busy: dict[_Worker, _Job] = {}
        try:
            while todo or busy:
                if todo:
                    free += self._take_idle(self.size)
                    if not free and not busy:
                        worker = self._acquire(WORKER_WAIT_S)
                        if worker is None:
                            break  # no worker: the rest stays undecided
                        free.append(worker)
                # hand out chunks: small enough that the workers finish together
                now = time.monotonic()
                while todo and free:
                    n = max(1, min(MAX_CHUNK, len(todo) // (2 * (len(busy) + len(free)))))
                    indices = [todo.popleft() for _ in range(min(n, len(todo)))]
                    worker = free.pop()
                    try:
                        worker.send([pairs[i] for i in indices], timeout_s)
                    except (OSError, ValueError):  # it died while idle: not these pairs' fault
                        self._discard(worker)
                        todo.extendleft(reversed(indices))
                        continue
                    busy[worker] = _Job(indices, now)
                for worker in free:  # nothing left to hand out: let other calls have them
                    self._release(worker)
                free = []
                if not busy:
                    continue
                wait = min(job.started for job in busy.values()) + timeout_s - time.monotonic()
                ready = select.select([w.fd for w in busy], [], [], max(0.0, wait))[0]
                now = time.monotonic()
                for worker, job in list(busy.items()):
                    try:
                        lines = worker.read_available() if worker.fd in ready else []
                    except (EOFError, OSError, ValueError):  # it died on the running pair
                        lines = None
                    for verdict in lines or ():
                        i = job.pending.popleft()
                        results[i] = verdict if isinstance(verdict, bool) else None
                        job.started = now
                    if lines is None or job.pending and now >= job.started + timeout_s:
                        # the running pair failed or ran past the limit: it gets no verdict
                        del busy[worker]
                        self._discard(worker)
                        job.pending.popleft()
                        todo.extendleft(reversed(job.pending))
                    elif not job.pending:
                        del busy[worker]
                        free.append(worker)
        finally:
            for worker in busy:  # interrupted mid-job (an exception): its state is unknown
                self._discard(worker)
            for worker in free:
                self._release(worker)
        return results

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for w in idle:
            w.kill()


_pool: VerifierPool | None = None
_pool_pid = -1
_pool_lock = threading.Lock()


def get_pool() -> VerifierPool:
    """The process-wide pool (a forked child gets its own)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = VerifierPool()
            _pool_pid = os.getpid()
        return _pool


@atexit.register
def _close_pool() -> None:
    if _pool is not None and _pool_pid == os.getpid():
        _pool.close()


# -------------------------------------------------------------------------------------------------
# The public functions


def _prepare(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    extracted = extract_answer(text)
    return normalize_answer(extracted if extracted is not None else text)


def _decide_in_process(c: str, r: str) -> bool | None:
    """The verdict on two normalised answers when it is cheap and certain; None: ask a worker."""
    if c == "" or r == "":
        return False
    if _fallback_match(c, r):
        return True
    a, b = _plain_number(c), _plain_number(r)
    if a is not None and b is not None and a[1] and b[1]:
        return False  # two different exact numbers (integers, fractions): math-verify agrees
    seq_c, seq_r = _number_sequence(c), _number_sequence(r)
    if seq_c is not None and seq_r is not None and seq_c[0] == seq_r[0]:
        (shape, items_c, exact_c), (_, items_r, exact_r) = seq_c, seq_r
        same = set(items_c) == set(items_r) if shape == "set" else items_c == items_r
        if same:
            return True
        if exact_c and exact_r:
            return False
    if max(len(c), len(r)) > MAX_ANSWER_CHARS or max(_max_nesting(c), _max_nesting(r)) > MAX_NESTING:
        return False  # too big to hand to sympy; the exact comparison above already failed
    return None


def answers_match(candidate: str, reference: str, timeout_s: float = 2.0) -> bool:
    """Whether ``candidate`` is mathematically the same answer as ``reference``.

    Either may be a bare answer (``\\frac{1}{2}``, ``0.5``, ``\\{1,2\\}``, ``[0,1)``) or a full
    solution text whose final answer ``extract_answer`` finds. Never raises on bad input (a
    non-string is False) and never runs math-verify longer than ``timeout_s`` (the call may also
    wait for a free worker when every worker is busy, and for the pool to start on first use).
    """
    return answers_match_many([(candidate, reference)], timeout_s)[0]


def answers_match_many(
    pairs: Iterable[tuple[str, str]] | Sequence[tuple[str, str]], timeout_s: float = 2.0
) -> list[bool]:
    """``answers_match`` over many (candidate, reference) pairs, using every worker at once.

    The cheap cases are decided here; the rest (each distinct pair once) go to the worker pool in
    chunks, at most ``timeout_s`` of a worker's time per pair: a pathological pair costs the limit
    and a worker, never the other pairs' verdicts.
    """
    out: list[bool] = []
    ask: dict[tuple[str, str], list[int]] = {}  # distinct pairs for the workers -> positions
    for k, pair in enumerate(pairs):
        try:
            candidate, reference = pair
        except (TypeError, ValueError):
            candidate = reference = None
        c, r = _prepare(candidate), _prepare(reference)
        verdict = False if c is None or r is None else _decide_in_process(c, r)
        out.append(bool(verdict))
        if verdict is None:
            ask.setdefault((c, r), []).append(k)
    if ask:
        keys = list(ask)
        for (c, r), verdict in zip(keys, get_pool().verify_many(keys, timeout_s)):
            # math-verify's verdict, or the fallback's when it had none (timed out, failed)
            ok = bool(verdict) or _fallback_match(c, r)
            for k in ask[(c, r)]:
                out[k] = ok
    return out
