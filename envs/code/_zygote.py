"""The sandbox's fork server ("zygote"): one per pool slot, started by ``envs.code.sandbox``.

Run as ``python -I -S _zygote.py --uid U --gid G --home DIR ...`` with an empty environment. It is
a plain script (no package imports) so every fork is a small, clean interpreter.

At start-up, once:
  - not root: a new user namespace in which the invoking user keeps its own uid and gid (mapped to
    themselves; setgroups denied), which gives this process the capabilities to do the rest;
  - a new network namespace (only a loopback, left down: no network at all), a new mount
    namespace and a new pid namespace; the process forks the server proper, which is pid 1 there
    (the first process is left waiting outside, so the pool's handle and pipes stay as they were);
  - in the mount namespace: every mount remounted read-only, private size-capped tmpfs on /tmp,
    /var/tmp and /dev/shm, empty read-only tmpfs over /home, /root, /run and the invoking user's
    home (the interpreter's own directories bound back read-only when they lie below one), and a
    fresh /proc that shows only the namespace's processes;
  - the server is a child subreaper (pid 1 of its namespace as well), so every descendant of a
    sandboxed program, daemonised or not, is re-parented here and can be found, killed and reaped;
  - as root, any process left over from an earlier zygote of the same slot uid is killed.

Per job (one JSON line on stdin; answers are JSON lines on stdout) it forks a child that makes a
new session, points stdin at /dev/null and stdout/stderr at files outside the work directory,
chdirs into a fresh 0700 work directory, sets the resource limits, gives up every privilege (as
root: drops to the slot uid with no supplementary groups; in a user namespace: drops every
capability, bounding set included), sets no_new_privs, scrubs the environment and then either runs
the program in the forked interpreter ("fork" mode, no interpreter start-up) or execs a fresh
``python -I -S`` on it ("exec" mode). The zygote enforces the wall-clock limit (pidfd + select),
kills the child's process group and every remaining descendant (``kill(-1)`` from pid 1 reaches
exactly the namespace), removes the job directory and reports the result.

The first line it writes reports what holds (``namespaces``, ``uid_drop``, ``rlimits``,
``readonly_root``, ``hidden``, ``private_proc``, ``notes`` for whatever failed); the pool judges
from it whether programs are confined.
"""

import ctypes
import errno
import json
import os
import pwd
import resource
import select
import shutil
import signal
import sys
import time
import traceback

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
RLIMIT_NAMES = ["cpu", "as", "data", "fsize", "nofile", "core", "memlock", "msgqueue"]
# Never hidden, whatever a passwd entry says a home directory is.
SYSTEM_DIRS = {"/", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/var", "/opt", "/proc",
               "/sys", "/dev", "/tmp", "/srv", "/mnt", "/boot"}

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


def _nproc_counts_per_namespace():
    """Since Linux 5.14 RLIMIT_NPROC counts a uid's processes per user namespace (ucounts), so
    inside ours it caps this slot alone; before, it counted every process of the user."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 14)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _enter_user_namespace(info):
    """Not root: a user namespace where we keep our uid/gid and hold every capability."""
    uid, gid = os.geteuid(), os.getegid()
    if _libc.unshare(CLONE_NEWUSER) != 0:
        info["notes"].append("unshare(CLONE_NEWUSER) failed: " + _errno_str())
        return False
    try:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", "%d %d 1\n" % (uid, uid))
        _write("/proc/self/gid_map", "%d %d 1\n" % (gid, gid))
    except OSError as err:
        info["notes"].append("user namespace id maps failed: %s" % err)
        return False
    return True


def _enter_namespaces(info):
    """The user (not root), network, mount and pid namespaces; each recorded in ``info``."""
    ns = info["namespaces"]
    if os.geteuid() != 0:
        ns["user"] = _enter_user_namespace(info)
        if not ns["user"]:
            info["notes"].append("not root and no user namespace: no namespaces, no uid drop")
            return
    for name, flag in (("net", CLONE_NEWNET), ("mount", CLONE_NEWNS), ("pid", CLONE_NEWPID)):
        if _libc.unshare(flag) == 0:
            ns[name] = True
        else:
            info["notes"].append("unshare(CLONE_NEW%s) failed: %s" % (name.upper(), _errno_str()))


def _become_pid1():
    """Fork the server into the new pid namespace; this process waits outside and exits with it."""
    pid = os.fork()
    if pid == 0:
        # (The waiter is outside our pid namespace: getppid() is 0 here. Should it die before
        # this is armed, the pool's kill of its process group reaches us too.)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        return
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    os._exit(0 if status == 0 else 1)


def _mounts():
    """(mount point, per-mount options) of every mount, parents first."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            points.append((parts[4].replace("\\040", " "), parts[5].split(",")))
    return points


def _under(path, parent):
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _hidden_candidates(home):
    """The directories to hide: homes and /run (user sockets), the invoking user's home too."""
    dirs = ["/home", "/root", "/run"]
    homes = [home]
    try:
        homes.append(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        pass
    for h in homes:
        if h:
            dirs.append(h)
    out = []
    for d in dirs:
        real = os.path.realpath(d)
        if real in SYSTEM_DIRS or not os.path.isdir(real):
            continue
        if any(_under(real, kept) for kept in out):
            continue
        out = [kept for kept in out if not _under(kept, real)] + [real]
    return out


def _bind_readonly(fd, target, info):
    source = ("/proc/self/fd/%d" % fd).encode()
    if _libc.mount(source, target.encode(), None, MS_BIND | MS_REC, None) != 0:
        info["notes"].append("binding %s back failed: %s" % (target, _errno_str()))
        return
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
    if _libc.mount(None, target.encode(), None, flags, None) != 0:
        info["notes"].append("%s back read-only failed: %s" % (target, _errno_str()))


def _hide(dirs, keep, info):
    """An empty read-only tmpfs over each of ``dirs``; the ``keep`` directories below one are
    bound back (read-only) so the interpreter still finds itself."""
    hidden = []
    for d in dirs:
        inside = [k for k in keep if _under(k, d)]
        fds = []
        for k in inside:
            try:
                fds.append((k, os.open(k, os.O_PATH | os.O_DIRECTORY)))
            except OSError as err:
                info["notes"].append("cannot keep %s: %s" % (k, err))
        if _libc.mount(b"tmpfs", d.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                       b"size=1m,mode=0755") != 0:
            info["notes"].append("hiding %s failed: %s" % (d, _errno_str()))
            for _, fd in fds:
                os.close(fd)
            continue
        old = os.umask(0o022)  # bound-back parents traversable by a slot uid
        try:
            for k, fd in fds:
                os.makedirs(k, exist_ok=True)
                _bind_readonly(fd, k, info)
                os.close(fd)
        finally:
            os.umask(old)
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
        if _libc.mount(None, d.encode(), None, flags, None) != 0:
            info["notes"].append("%s read-only failed: %s" % (d, _errno_str()))
            continue
        hidden.append(d)
        if d in keep:
            info["notes"].append("%s holds the interpreter: bound back whole" % d)
    return hidden


def _confine_filesystem(info, tmpfs_mb, home):
    """Mount namespace set-up: read-only mounts, private tmp, hidden homes, fresh /proc."""
    if _libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        info["notes"].append("making mounts private failed: " + _errno_str())
        return
    info["mounts"] = "namespace"
    # Every existing mount read-only (best effort), keeping the flags a user namespace may not
    # clear (nosuid, nodev, noexec of the original; the kernel keeps the atime ones).
    failed = []
    for point, opts in _mounts():
        if point.startswith(("/proc", "/sys", "/dev")) and point not in ("/dev/shm",):
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
        if "noexec" in opts:
            flags |= MS_NOEXEC
        if _libc.mount(None, point.encode(), None, flags, None) != 0:
            failed.append(point)
    info["readonly_root"] = "/" not in failed
    if failed:
        info["notes"].append("could not remount read-only: " + ", ".join(failed[:5]))
    private = []
    for point in ("/tmp", "/var/tmp", "/dev/shm"):
        if not os.path.isdir(point) or os.path.islink(point):
            continue
        opts = ("size=%dm,mode=1777" % tmpfs_mb).encode()
        if _libc.mount(b"tmpfs", point.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts) == 0:
            private.append(point)
        else:
            info["notes"].append("tmpfs on %s failed: %s" % (point, _errno_str()))
    info["private_tmp"] = private
    keep = sorted({os.path.dirname(os.path.realpath(sys.executable)),
                   os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)})
    wanted = _hidden_candidates(home)
    info["hidden"] = _hide(wanted, keep, info)
    info["home_hidden"] = len(info["hidden"]) == len(wanted)
    if info["namespaces"]["pid"]:
        flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
        if _libc.mount(b"proc", b"/proc", b"proc", flags, None) == 0:
            info["private_proc"] = True
        else:
            info["notes"].append("a fresh /proc failed: " + _errno_str())


def _isolate(tmpfs_mb, home):
    info = {
        "namespaces": {"user": False, "net": False, "mount": False, "pid": False},
        "network": "host", "mounts": "host", "readonly_root": False, "private_tmp": [],
        "hidden": [], "home_hidden": False, "private_proc": False, "notes": [],
    }
    _enter_namespaces(info)
    if info["namespaces"]["pid"]:
        _become_pid1()
    if info["namespaces"]["net"]:
        info["network"] = "namespace"
    if info["namespaces"]["mount"]:
        _confine_filesystem(info, tmpfs_mb, home)
    return info


def _drop_capabilities():
    """Give up every capability (effective, permitted, inheritable, ambient and the bounding
    set) that our user namespace gave us, before the program runs."""
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == errno.EINVAL:
                break  # past the last capability this kernel knows
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP: " + _errno_str())
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    if _libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset: " + _errno_str())


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
            if STATE["pid1"]:
                # pid 1 of our own namespace: kill(-1) reaches exactly the namespace, nothing else
                try:
                    os.kill(-1, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            else:
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
        if STATE["nproc_extra"] is not None:
            nproc = int(job["nproc"]) + STATE["nproc_extra"]
            limits.append((resource.RLIMIT_NPROC, nproc, nproc))
        for which, soft, hard in limits:
            resource.setrlimit(which, (soft, hard))
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        elif STATE["userns"]:
            _drop_capabilities()
        _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir}
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # the server ignores it; an exec'd python
        # would keep an ignored SIGINT ignored
        if job["mode"] == "exec":
            # The pool starts us with one the slot uid can run; its real path stays visible.
            python = os.path.realpath(sys.executable)
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
# What the start-up gave this server: in a user namespace (capabilities to drop per job), pid 1
# of its own pid namespace (kill(-1) is safe), the RLIMIT_NPROC headroom (None: not set).
STATE = {"userns": False, "pid1": False, "nproc_extra": None}


def main():
    args = sys.argv[1:]
    opts = dict(zip(args[::2], args[1::2]))
    uid = int(opts.get("--uid", os.getuid()))
    gid = int(opts.get("--gid", os.getgid()))
    tmpfs_mb = int(opts.get("--tmpfs-mb", 256))
    home = opts.get("--home", "")
    os.umask(0o077)
    root = os.geteuid() == 0
    if root:
        _kill_uid(uid)  # leftovers of an earlier zygote of this slot, before we leave their pid ns
    info = _isolate(tmpfs_mb, home)
    ns = info["namespaces"]
    STATE["userns"] = ns["user"]
    STATE["pid1"] = ns["pid"] and os.getpid() == 1
    PRIVATE_TMP.extend(info.get("private_tmp", []))
    if not PRIVATE_TMP:
        os.makedirs("/tmp", exist_ok=True)
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # A program shares our uid in a user namespace and may signal us; pid 1 only gets signals
    # it handles, and SIGINT is the one Python handles: ignore it, so a program cannot stop its
    # own fork server.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rlimits = list(RLIMIT_NAMES)
    if root:
        # Counted per uid: each pool slot has its own uid, so this caps this job alone.
        STATE["nproc_extra"] = 0
        nproc = "per-slot uid"
    elif ns["user"] and STATE["pid1"] and _nproc_counts_per_namespace():
        # Counted per uid and user namespace: ours holds the waiter, this server and the job.
        STATE["nproc_extra"] = 2
        nproc = "per user namespace"
    else:
        nproc = "none (not root, and the kernel counts every process of the user)"
    if STATE["nproc_extra"] is not None:
        rlimits.append("nproc")
    try:
        ns_pid = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns_pid = ""
    info.update(
        ready=True,
        pid=os.getpid(),
        uid=uid if root else os.getuid(),
        uid_drop=root,
        rlimits=rlimits,
        nproc_limit=nproc,
        capabilities="dropped per job" if ns["user"] else ("uid drop" if root else "none held"),
        pid_namespace=ns_pid if ns["pid"] else "",
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
