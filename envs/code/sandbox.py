"""A sandbox for policy-written Python: separate processes, namespaces, resource limits.

    from envs.code.sandbox import SandboxPool, run_in_sandbox
    result = run_in_sandbox("print(1 + 1)", timeout_s=2)        # SandboxResult(status="ok", ...)
    with SandboxPool(max_workers=4) as pool:
        results = pool.run_many(["print(1)", "while True: pass"], timeout_s=1)
        pool.isolation()                     # what confines them on this machine (see below)

    python -m envs.code.sandbox FILE [--timeout S] [--memory-mb M] [--mode fork|exec] [--isolation]

How a program is confined:

- each pool slot owns a fork server (``_zygote.py``, ``python -I -S`` with an empty environment)
  living in its own network namespace (loopback only, down: no network), mount namespace (every
  mount read-only; private size-capped tmpfs on /tmp, /var/tmp, /dev/shm; empty read-only tmpfs
  over /home, /root, /run and the invoking user's home, so no key, token or user socket there can
  be read; a fresh /proc) and pid namespace (the program sees and can signal only its own slot);
- each execution is a forked child in a new session, in a fresh 0700 directory that is removed
  afterwards, with RLIMIT_CPU / AS / DATA / FSIZE / NOFILE / NPROC / CORE set, no_new_privs, and a
  scrubbed environment (PATH, LANG, HOME);
- as root, the child drops to the slot's own unprivileged uid (so RLIMIT_NPROC, which counts per
  uid and is ignored for root, caps this execution alone, and the program can touch no file of
  root or of another slot), with no supplementary groups;
- not root, the fork server first enters an unprivileged user namespace (the user keeps its own
  uid inside), which is what lets it build the same namespaces; the child then drops every
  capability that namespace gave (bounding set included). What differs from root: no per-slot
  uid (every slot runs as the invoking user, who keeps its supplementary groups, and the program
  may read what that user may read outside the hidden directories), and RLIMIT_NPROC holds per
  user namespace only on Linux >= 5.14;
- the wall-clock limit is enforced by the fork server, which then kills the child's process group
  and, as pid 1 of its namespace (and a child subreaper), every descendant left (also after a
  normal exit), and by the pool as a backstop (a fork server that does not answer in time is
  killed, and with it its pid namespace; as root, its slot uid's processes too);
- stdout/stderr go to files outside the work directory and come back capped.

With neither root nor user namespaces nothing but the rlimits, the session kill and the scrubbed
environment would hold, so the pool refuses to run anything (``SandboxUnconfined``) unless it is
told ``allow_unconfined=True`` (``env.kwargs.allow_unconfined`` for the code envs).
``isolation()`` says what holds: ``namespaces`` (user, net, mount, pid), ``uid_drop``, ``rlimits``,
``hidden``, ``confined``, ``notes`` on whatever failed, and a one-line ``summary``.

``mode="fork"`` (default) runs the program in the forked, already started interpreter (no start-up
cost); ``mode="exec"`` execs a fresh ``python -I -S`` in the same confinement.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

_ZYGOTE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_zygote.py")

# Slot uids: far above any real account, one per pool slot (uid = UID_BASE + slot number).
UID_BASE = 1_000_000_000
_slot_counter = 0
_slot_lock = threading.Lock()


def _next_slot_uid() -> int:
    global _slot_counter
    with _slot_lock:
        # Mixed with our pid so two processes' pools never share a uid.
        uid = UID_BASE + (os.getpid() % 2_000_000) * 1024 + (_slot_counter % 1024)
        _slot_counter += 1
    return uid


@dataclass
class SandboxResult:
    """What one sandboxed execution did.

    status: "ok" (exit 0) | "error" (non-zero exit) | "timeout" (wall or CPU limit) |
    "memory" (MemoryError under the address-space limit) | "filesize" (file size limit) |
    "killed" (a signal) | "sandbox_error" (the sandbox itself failed; the program may not have run).
    """

    status: str
    returncode: int | None  # exit code, or -signal when killed by a signal (like subprocess)
    stdout: str
    stderr: str
    duration_s: float
    cpu_s: float = 0.0
    maxrss_kb: int = 0
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Limits:
    """Per-execution limits (all overridable per call)."""

    timeout_s: float = 5.0  # wall clock, enforced by the fork server (and the pool as backstop)
    cpu_s: float | None = None  # RLIMIT_CPU; None: the wall-clock timeout
    memory_mb: int = 512  # RLIMIT_AS and RLIMIT_DATA
    nproc: int = 16  # RLIMIT_NPROC (processes and threads of the slot uid)
    fsize_mb: int = 16  # RLIMIT_FSIZE (any single file, stdout/stderr included)
    nofile: int = 64  # RLIMIT_NOFILE
    max_output: int = 64 * 1024  # bytes of stdout and of stderr returned
    mode: str = "fork"  # "fork" (pre-started interpreter) | "exec" (fresh python -I -S)


def _classify(raw: dict[str, Any]) -> SandboxResult:
    if "internal_error" in raw:
        return SandboxResult("sandbox_error", None, "", "", 0.0, detail=raw["internal_error"])
    sig = raw.get("signal")
    code = raw.get("exitcode")
    stderr = raw.get("stderr", "")
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if raw.get("reason") == "timeout":
        status, detail = "timeout", "wall-clock limit"
    elif raw.get("reason") == "killed":
        status, detail = "killed", "sandbox shut down"
    elif sig in (signal.SIGXCPU, signal.SIGKILL) and raw.get("cpu_s", 0) >= 0.9 * raw.get(
        "cpu_limit", 1e9
    ):
        status, detail = "timeout", "CPU limit"
    elif sig is not None:
        status, detail = "killed", signal.Signals(sig).name
    elif code == 0:
        status, detail = "ok", ""
    elif last.startswith("MemoryError") or "Cannot allocate memory" in last:
        status, detail = "memory", "address-space limit"
    elif "File too large" in last:
        status, detail = "filesize", "file size limit"
    elif code == 121 and stderr.startswith("sandbox setup failed"):
        status, detail = "sandbox_error", "setup failed"
    else:
        status, detail = "error", f"exit code {code}"
    return SandboxResult(
        status=status,
        returncode=-sig if sig is not None else code,
        stdout=raw.get("stdout", ""),
        stderr=stderr,
        duration_s=float(raw.get("duration_s", 0.0)),
        cpu_s=float(raw.get("cpu_s", 0.0)),
        maxrss_kb=int(raw.get("maxrss_kb", 0)),
        stdout_truncated=bool(raw.get("stdout_truncated")),
        stderr_truncated=bool(raw.get("stderr_truncated")),
        detail=detail,
    )


class SandboxUnconfined(ValueError):
    """The sandbox cannot confine programs on this machine and was not allowed to run them
    unconfined. A ValueError: ``allow_unconfined=False`` is a value this machine cannot honour,
    and a code env's constructor raising it reaches the user as one message (selfplay.build)."""


def is_confined(info: dict[str, Any]) -> bool:
    """Whether a fork server's report means programs are confined: no network, a read-only
    filesystem with the homes hidden, and no reach into other processes (a uid of its own, or a
    pid namespace with its own /proc)."""
    ns = info.get("namespaces", {})
    files = ns.get("mount") and info.get("readonly_root") and info.get("home_hidden")
    processes = info.get("uid_drop") or (ns.get("pid") and info.get("private_proc"))
    return bool(ns.get("net") and files and processes)


def describe(info: dict[str, Any]) -> str:
    """One line saying what confines a sandboxed program (for a run's log)."""
    ns = info.get("namespaces", {})
    held = "+".join(name for name in ("user", "net", "mount", "pid") if ns.get(name)) or "none"
    if info.get("uid_drop"):
        uid = "uid drop: per-slot uid"
    else:
        uid = f"uid drop: no (runs as uid {info.get('uid')}"
        uid += ", capabilities dropped)" if ns.get("user") else ")"
    parts = [f"namespaces: {held}", uid, "rlimits: " + ", ".join(info.get("rlimits", []))]
    if info.get("hidden"):
        parts.append("hidden: " + ", ".join(info["hidden"]))
    head = "confined" if info.get("confined", is_confined(info)) else "NOT CONFINED"
    line = f"code sandbox: {head}; " + "; ".join(parts)
    if info.get("notes") and not info.get("confined", is_confined(info)):
        line += "; " + "; ".join(info["notes"][:3])
    return line


def check_confinement(info: dict[str, Any], allow_unconfined: bool, key: str) -> None:
    """Raise ``SandboxUnconfined`` when ``info`` does not confine programs and running them
    unconfined was not allowed; the message names the setting ``key`` that would allow it."""
    if allow_unconfined or is_confined(info):
        return
    why = "; ".join(info.get("notes", [])[:3]) or "no namespaces"
    raise SandboxUnconfined(
        f"the code sandbox cannot confine programs on this machine ({why}): policy-written code "
        "would run with this user's access to its files, processes and the network. Run as root "
        "or where unprivileged user namespaces work (sysctl user.max_user_namespaces > 0, "
        f"kernel.unprivileged_userns_clone=1), or set {key} to run it under resource limits "
        "only."
    )


_reported = threading.Lock()
REPORTED_ENV = "SELFPLAY_SANDBOX_REPORTED"  # set once reported: child processes stay quiet


def report_once(info: dict[str, Any]) -> None:
    """Print ``describe(info)`` on stderr once per run (the first process that asks; processes
    it starts afterwards, such as local Ray workers, inherit the marker and stay quiet)."""
    with _reported:
        if os.environ.get(REPORTED_ENV):
            return
        os.environ[REPORTED_ENV] = "1"
    print(describe(info), file=sys.stderr, flush=True)


def kill_uid_processes(uid: int) -> int:
    """SIGKILL every process owned by ``uid`` (scanning /proc); returns how many were signalled."""
    if uid == 0 or uid == os.getuid():
        return 0
    killed = 0
    for _ in range(200):
        found = 0
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                if os.stat(f"/proc/{name}").st_uid != uid:
                    continue
                os.kill(int(name), signal.SIGKILL)
                found += 1
            except (FileNotFoundError, ProcessLookupError):
                continue
        killed += found
        if not found:
            break
        time.sleep(0.005)
    return killed


_python_lock = threading.Lock()
_python_cache: list[str] = []


def sandbox_python() -> str:
    """The interpreter sandboxed programs run on: this venv's when an unprivileged uid can run
    it (with its standard library), else a system one of the same minor version."""
    with _python_lock:
        if _python_cache:
            return _python_cache[0]
        candidates = [sys.executable]
        if os.geteuid() == 0:
            version = "python%d.%d" % sys.version_info[:2]
            candidates += [os.path.realpath(sys.executable), getattr(sys, "_base_executable", ""),
                           f"/usr/local/bin/{version}", f"/usr/bin/{version}"]
        for python in candidates:
            if not python or not os.path.isfile(python):
                continue
            if os.geteuid() != 0:
                _python_cache.append(python)
                return python
            try:
                probe = subprocess.run(
                    [python, "-I", "-S", "-c", "import json, socket, collections, re"],
                    user=65534, group=65534, extra_groups=[], env={}, cwd="/",
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, timeout=20,
                )
            except (OSError, subprocess.SubprocessError):
                continue
            if probe.returncode == 0:
                _python_cache.append(python)
                return python
        raise RuntimeError(
            "no Python interpreter that an unprivileged user can run was found (tried "
            + ", ".join(c for c in candidates if c) + ")"
        )


class _Zygote:
    """One fork server and its slot uid; used by one thread at a time."""

    START_TIMEOUT_S = 20.0

    def __init__(self, uid: int, tmpfs_mb: int):
        self.uid = uid
        self.tmpfs_mb = tmpfs_mb
        self.proc: subprocess.Popen | None = None
        self.info: dict[str, Any] = {}
        self.confined = False
        self._buf = b""

    def _start(self) -> None:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        self.proc = subprocess.Popen(
            [sandbox_python(), "-I", "-S", _ZYGOTE, "--uid", str(self.uid), "--gid",
             str(self.uid), "--tmpfs-mb", str(self.tmpfs_mb), "--home", os.path.expanduser("~")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd="/",
            close_fds=True,
            start_new_session=True,
        )
        self._buf = b""
        line = self._read_line(time.monotonic() + self.START_TIMEOUT_S)
        if line is None:
            self.stop()
            raise RuntimeError("the sandbox fork server did not start (envs/code/_zygote.py)")
        self.info = json.loads(line)
        self.confined = is_confined(self.info)

    def _read_line(self, deadline: float) -> bytes | None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def ensure(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self._start()

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        self.ensure()
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.stop()
            return {"internal_error": "the sandbox fork server died before the job started"}
        # The fork server enforces the timeout itself; this is the backstop.
        line = self._read_line(time.monotonic() + job["timeout_s"] + 10.0)
        if line is None:
            self.stop()
            return {"internal_error": "the sandbox fork server stopped answering; restarted"}
        return json.loads(line)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()  # type: ignore[union-attr]
                except OSError:
                    pass
        if os.geteuid() == 0:
            kill_uid_processes(self.uid)


class SandboxPool:
    """A bounded pool of sandbox slots; ``run`` and ``run_many`` are safe from any thread.

    At most ``max_workers`` programs run at once; every call returns within its timeout plus a
    few seconds (a stuck slot is killed and restarted), so the pool never hangs its caller.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        tmpfs_mb: int = 256,
        allow_unconfined: bool = False,
        **limits: Any,
    ):
        self.max_workers = max(1, int(max_workers or os.cpu_count() or 1))
        # Run programs even where no namespace confines them (rlimits only); off by default.
        self.allow_unconfined = bool(allow_unconfined)
        self.limits = Limits(**limits)
        self._slots: queue.Queue[_Zygote] = queue.Queue()
        self._all: list[_Zygote] = []
        for _ in range(self.max_workers):
            slot = _Zygote(_next_slot_uid(), tmpfs_mb)
            self._slots.put(slot)
            self._all.append(slot)
        self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix="sandbox")
        self._closed = False

    # -- one execution ---------------------------------------------------------------------

    def _job(self, source: str, files: dict[str, str] | None, overrides: dict[str, Any]) -> dict:
        lim = Limits(**{**asdict(self.limits), **overrides})
        if lim.mode not in ("fork", "exec"):
            raise ValueError(f"mode must be 'fork' or 'exec', not {lim.mode!r}")
        cpu = lim.cpu_s if lim.cpu_s is not None else lim.timeout_s
        return {
            "source": source,
            "filename": "main.py",
            "files": dict(files or {}),
            "timeout_s": float(lim.timeout_s),
            "cpu_s": float(cpu),
            "memory_mb": int(lim.memory_mb),
            "nproc": int(lim.nproc),
            "fsize_mb": int(lim.fsize_mb),
            "nofile": int(lim.nofile),
            "max_output": int(lim.max_output),
            "mode": lim.mode,
        }

    def run(
        self,
        source: str,
        *,
        files: dict[str, str] | None = None,
        allow_unconfined: bool | None = None,
        **limits: Any,
    ) -> SandboxResult:
        """Run ``source`` as main.py (beside ``files``) in a fresh sandbox; never raises for
        anything the program does. ``SandboxUnconfined`` when this machine cannot confine it
        and neither the pool nor this call (``allow_unconfined``) allows that."""
        if self._closed:
            raise RuntimeError("SandboxPool is closed")
        if not isinstance(source, str):
            raise TypeError(f"source must be a str, not {type(source).__name__}")
        job = self._job(source, files, limits)
        allow = self.allow_unconfined if allow_unconfined is None else allow_unconfined
        slot = self._slots.get()
        try:
            slot.ensure()
            if not slot.confined:
                check_confinement(slot.info, allow, "allow_unconfined=True (a SandboxPool or "
                                  "run() argument; --allow-unconfined on the command line)")
            raw = slot.run(job)
        finally:
            self._slots.put(slot)
        raw["cpu_limit"] = job["cpu_s"]
        return _classify(raw)

    def run_many(
        self, sources: Iterable[str], *, files: dict[str, str] | None = None, **limits: Any
    ) -> list[SandboxResult]:
        """Run many programs in parallel (at most ``max_workers`` at once); results in order."""
        futures = [self._executor.submit(self.run, s, files=files, **limits) for s in sources]
        return [f.result() for f in futures]

    def submit(self, source: str, **kwargs: Any):
        """A ``concurrent.futures.Future`` of ``run(source, **kwargs)``."""
        return self._executor.submit(self.run, source, **kwargs)

    def isolation(self) -> dict[str, Any]:
        """What confinement holds on this machine (starts one slot if none has started)."""
        slot = self._slots.get()
        try:
            slot.ensure()
            info = dict(slot.info)
        finally:
            self._slots.put(slot)
        info["confined"] = is_confined(info)
        info["degraded"] = not (info["confined"] and info.get("uid_drop"))  # short of root's
        info["python"] = sandbox_python()
        info["summary"] = describe(info)
        return info

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        for slot in self._all:
            slot.stop()

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_default_pool: SandboxPool | None = None
_default_lock = threading.Lock()


def default_pool() -> SandboxPool:
    """A process-wide pool (os.cpu_count() slots), closed at exit."""
    global _default_pool
    with _default_lock:
        if _default_pool is None or _default_pool._closed:
            _default_pool = SandboxPool()
            atexit.register(_default_pool.close)
        return _default_pool


def run_in_sandbox(source: str, *, files: dict[str, str] | None = None, **limits: Any) -> SandboxResult:
    """Run one program in the process-wide pool (see ``Limits`` for the keyword arguments)."""
    return default_pool().run(source, files=files, **limits)


def isolation() -> dict[str, Any]:
    """What confines programs of the process-wide pool (see ``SandboxPool.isolation``)."""
    return default_pool().isolation()


def require_confinement(pool: SandboxPool, allow_unconfined: bool, key: str) -> dict[str, Any]:
    """``pool.isolation()``, reported once per run (``report_once``); ``SandboxUnconfined``
    naming ``key`` when programs would run unconfined and that was not allowed."""
    info = pool.isolation()
    report_once(info)
    check_confinement(info, allow_unconfined, key)
    return info


# ---------------------------------------------------------------------------------------------
# python -m envs.code.sandbox FILE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m envs.code.sandbox", description="Run a Python file in the code sandbox."
    )
    parser.add_argument("file", help="the Python file to run")
    parser.add_argument("--timeout", type=float, default=5.0, help="wall-clock seconds")
    parser.add_argument("--memory-mb", type=int, default=512, help="address-space limit")
    parser.add_argument("--mode", choices=["fork", "exec"], default="fork")
    parser.add_argument("--isolation", action="store_true", help="also print what confines it")
    parser.add_argument("--allow-unconfined", action="store_true",
                        help="run it even where no namespace can confine it (rlimits only)")
    args = parser.parse_args(argv)
    try:
        with open(args.file, encoding="utf-8") as f:
            source = f.read()
    except (OSError, UnicodeDecodeError) as err:
        print(json.dumps({"status": "sandbox_error", "detail": f"cannot read {args.file}: {err}"}))
        return 2
    with SandboxPool(1, timeout_s=args.timeout, memory_mb=args.memory_mb, mode=args.mode,
                     allow_unconfined=args.allow_unconfined) as pool:
        try:
            result = pool.run(source)
        except SandboxUnconfined as err:
            print(json.dumps({"status": "sandbox_error", "detail": str(err)}))
            return 2
        out = {
            "status": result.status,
            "returncode": result.returncode,
            "stdout": result.stdout,
            "stderr": result.stderr,
            "duration_s": round(result.duration_s, 4),
            "detail": result.detail,
        }
        if args.isolation:
            out["isolation"] = pool.isolation()
    print(json.dumps(out))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
