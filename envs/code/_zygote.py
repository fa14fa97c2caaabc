"""The sandbox's fork server ("zygote"): one per pool slot, started by ``envs.code.sandbox``.

Run as ``python -I -S _zygote.py --uid U --gid G ...`` with an empty environment. It is a plain
script (no package imports) so every fork is a small, clean interpreter.

At start-up, once (as root):
  - a new network namespace (only a loopback, left down: no network at all) and a new mount
    namespace with private tmpfs mounts on /tmp, /var/tmp and /dev/shm (size-capped) and every
    other mount remounted read-only;
  - the process becomes a child subreaper, so every descendant of a sandboxed program, daemonised
    or not, is re-parented here and can be found, killed and reaped;
  - any process left over from an earlier zygote of the same slot uid is killed.

Per job (one JSON line on stdin; answers are JSON lines on stdout) it forks a child that makes a
new session, points stdin at /dev/null and stdout/stderr at root-owned files, chdirs into a fresh
0700 work directory owned by the slot uid, sets the resource limits, drops to the slot uid (no
supplementary groups, no new privileges), scrubs the environment and then either runs the
program in the forked interpreter ("fork" mode, no interpreter start-up) or execs a fresh
``python -I -S`` on it ("exec" mode). The zygote enforces the wall-clock limit (pidfd + select),
kills the child's process group and every remaining descendant, removes the job directory and
reports the result.
"""

import ctypes
import json
import os
import resource
import select
import shutil
import signal
import sys
import time
import traceback

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)


def _errno_str():
    return os.strerror(ctypes.get_errno())


def _send(obj):
    data = (json.dumps(obj) + "\n").encode()
    view = memoryview(data)
    while view:
        n = os.write(1, view)
        view = view[n:]


# ---------------------------------------------------------------------------------------------
# Start-up isolation (once per zygote)


def _isolate(tmpfs_mb):
    info = {"network": "host", "mounts": "host", "readonly_root": False, "notes": []}
    if os.geteuid() != 0:
        info["notes"].append("not root: no namespaces, no uid drop")
        return info
    if _libc.unshare(CLONE_NEWNET) == 0:
        info["network"] = "namespace"
    else:
        info["notes"].append("unshare(CLONE_NEWNET) failed: " + _errno_str())
    if _libc.unshare(CLONE_NEWNS) != 0:
        info["notes"].append("unshare(CLONE_NEWNS) failed: " + _errno_str())
        return info
    if _libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        info["notes"].append("making mounts private failed: " + _errno_str())
        return info
    info["mounts"] = "namespace"
    # Every existing mount read-only (best effort; deepest last so nothing is shadowed).
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            points.append(parts[4].replace("\\040", " "))
    failed = []
    for point in points:
        if point.startswith(("/proc", "/sys", "/dev")) and point not in ("/dev/shm",):
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
        if _libc.mount(None, point.encode(), None, flags, None) != 0:
            failed.append(point)
    info["readonly_root"] = "/" not in failed
    if failed:
        info["notes"].append("could not remount read-only: " + ", ".join(failed[:5]))
    private = []
    for point in ("/tmp", "/var/tmp", "/dev/shm"):
        if not os.path.isdir(point):
            continue
        opts = ("size=%dm,mode=1777" % tmpfs_mb).encode()
        if _libc.mount(b"tmpfs", point.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts) == 0:
            private.append(point)
        else:
            info["notes"].append("tmpfs on %s failed: %s" % (point, _errno_str()))
    info["private_tmp"] = private
    return info


# ---------------------------------------------------------------------------------------------
# Killing and reaping everything a job left behind


def _children():
    try:
        with open("/proc/self/task/%d/children" % os.getpid()) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        me = os.getpid()
        kids = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % name) as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                kids.append(int(name))
        return kids


def _kill_uid(uid):
    """Kill every process of ``uid`` (a helper drops to it and calls kill(-1, SIGKILL))."""
    if os.geteuid() != 0 or uid == 0:
        return
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        except BaseException:
            pass
        os._exit(0)
    os.waitpid(pid, 0)


def _reap_all(uid):
    """Kill and reap every descendant; True when none is left."""
    escalated = False
    for _ in range(2000):
        try:
            while True:
                pid, _status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
        except ChildProcessError:
            return True
        kids = _children()
        for kid in kids:
            try:
                os.kill(kid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not escalated:
            _kill_uid(uid)
            escalated = True
        time.sleep(0.0005)
    return False


# ---------------------------------------------------------------------------------------------
# One job


def _child(job, jobdir, workdir, uid, gid):
    """In the forked child: confine ourselves, then run the program. Never returns."""
    try:
        os.setsid()
        fd_in = os.open("/dev/null", os.O_RDONLY)
        fd_out = os.open(os.path.join(jobdir, "stdout"), os.O_WRONLY | os.O_CREAT, 0o600)
        fd_err = os.open(os.path.join(jobdir, "stderr"), os.O_WRONLY | os.O_CREAT, 0o600)
        os.dup2(fd_in, 0)
        os.dup2(fd_out, 1)
        os.dup2(fd_err, 2)
        os.closerange(3, 65536)
        os.chdir(workdir)
        cpu = max(1, int(job["cpu_s"] + 0.999))
        mem = int(job["memory_mb"]) * 1024 * 1024
        limits = [
            (resource.RLIMIT_CPU, cpu, cpu + 1),
            (resource.RLIMIT_AS, mem, mem),
            (resource.RLIMIT_DATA, mem, mem),
            (resource.RLIMIT_FSIZE, int(job["fsize_mb"]) * 1024 * 1024,
             int(job["fsize_mb"]) * 1024 * 1024),
            (resource.RLIMIT_NOFILE, int(job["nofile"]), int(job["nofile"])),
            (resource.RLIMIT_CORE, 0, 0),
            (resource.RLIMIT_MEMLOCK, 0, 0),
            (resource.RLIMIT_MSGQUEUE, 0, 0),
        ]
        if os.geteuid() == 0:
            # Counted per uid: each pool slot has its own uid, so this caps this job alone.
            limits.append((resource.RLIMIT_NPROC, int(job["nproc"]), int(job["nproc"])))
        for which, soft, hard in limits:
            resource.setrlimit(which, (soft, hard))
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir}
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_IGN)
        if job["mode"] == "exec":
            python = sys.executable  # the pool starts us with one the slot uid can run
            argv = [python, "-I", "-S", job["filename"]] + list(job.get("argv", []))
            os.execve(python, argv, env)
        # "fork" mode: run the program in this (already started) interpreter.
        os.environ.clear()
        os.environ.update(env)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)
        sys.argv = [job["filename"]] + list(job.get("argv", []))
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        main = type(sys)("__main__")
        main.__file__ = job["filename"]
        main.__builtins__ = __builtins__
        sys.modules["__main__"] = main
    except BaseException:
        try:
            os.write(2, ("sandbox setup failed:\n" + traceback.format_exc()).encode())
        finally:
            os._exit(121)
    status = 0
    try:
        exec(compile(job["source"], job["filename"], "exec"), main.__dict__)
    except SystemExit as exc:
        code_ = exc.code
        if code_ is None:
            status = 0
        elif isinstance(code_, int):
            status = code_ & 0xFF
        else:
            try:
                print(code_, file=sys.stderr)
            except BaseException:
                pass
            status = 1
    except BaseException:
        try:
            traceback.print_exc()
        except BaseException:
            pass
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(status)


def _read_capped(path, cap):
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            data = f.read(cap)
    except OSError:
        return "", False
    return data.decode("utf-8", "replace"), size > cap


def _run_job(job, uid, gid, seq):
    jobdir = "/tmp/sbx-%d-%d" % (os.getpid(), seq)
    workdir = os.path.join(jobdir, "work")
    os.mkdir(jobdir, 0o711)
    os.chmod(jobdir, 0o711)  # traversable by the slot uid (umask is 077), not listable
    os.mkdir(workdir, 0o700)
    if os.geteuid() == 0:
        os.chown(workdir, uid, gid)
    for name, text in dict(job.get("files", {}), **{job["filename"]: job["source"]}).items():
        path = os.path.join(workdir, name)
        with open(path, "w") as f:
            f.write(text)
        if os.geteuid() == 0:
            os.chown(path, uid, gid)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(job, jobdir, workdir, uid, gid)
    pidfd = os.pidfd_open(pid)
    deadline = start + float(job["timeout_s"])
    reason = None
    parent_gone = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            reason = "timeout"
            break
        ready, _, _ = select.select([pidfd, 0], [], [], left)
        if pidfd in ready:
            break
        if 0 in ready:  # the pool closed our stdin (or died): stop everything
            parent_gone = True
            reason = "killed"
            break
    if reason is not None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status, usage = os.wait4(pid, 0)
    duration = time.monotonic() - start
    os.close(pidfd)
    try:  # leftover children of a normal exit too: the whole group, then every descendant
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    clean = _reap_all(uid)
    cap = int(job["max_output"])
    stdout, out_trunc = _read_capped(os.path.join(jobdir, "stdout"), cap)
    stderr, err_trunc = _read_capped(os.path.join(jobdir, "stderr"), cap)
    shutil.rmtree(jobdir, ignore_errors=True)
    _wipe_tmp()
    result = {
        "reason": reason,
        "exitcode": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "duration_s": duration,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "maxrss_kb": usage.ru_maxrss,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_truncated": out_trunc,
        "stderr_truncated": err_trunc,
        "leftovers_cleaned": clean,
    }
    return result, parent_gone


def _wipe_tmp():
    """Empty the private /tmp, /var/tmp, /dev/shm between jobs (only when they are ours)."""
    for point in PRIVATE_TMP:
        try:
            names = os.listdir(point)
        except OSError:
            continue
        for name in names:
            path = os.path.join(point, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass


PRIVATE_TMP = []


def main():
    args = sys.argv[1:]
    opts = dict(zip(args[::2], args[1::2]))
    uid = int(opts.get("--uid", os.getuid()))
    gid = int(opts.get("--gid", os.getgid()))
    tmpfs_mb = int(opts.get("--tmpfs-mb", 256))
    os.umask(0o077)
    info = _isolate(tmpfs_mb)
    PRIVATE_TMP.extend(info.get("private_tmp", []))
    if not PRIVATE_TMP:
        os.makedirs("/tmp", exist_ok=True)
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if os.geteuid() == 0:
        _kill_uid(uid)
    info.update(
        ready=True,
        pid=os.getpid(),
        uid=uid if os.geteuid() == 0 else os.getuid(),
        nproc_limit="per-slot uid" if os.geteuid() == 0 else "none (not root)",
    )
    _send(info)
    buf = b""
    seq = 0
    while True:
        while b"\n" not in buf:
            chunk = os.read(0, 1 << 16)
            if not chunk:
                _reap_all(uid)
                return
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        seq += 1
        try:
            job = json.loads(line)
            result, parent_gone = _run_job(job, uid, gid, seq)
        except Exception:
            result, parent_gone = {"internal_error": traceback.format_exc()}, False
            _reap_all(uid)
        if parent_gone:
            return
        _send(result)


if __name__ == "__main__":
    main()
