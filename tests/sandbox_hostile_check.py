"""Hostile programs against the code sandbox, for a run as an unprivileged user.

    python sandbox_hostile_check.py ROOT --secret FILE --port N --writable DIR
    python sandbox_hostile_check.py ROOT --expect-unconfined
    python sandbox_hostile_check.py --without-user-namespaces UID:GID -- ARGV...   (as root)

ROOT holds a copy of the ``envs/code`` package (sandbox.py, _zygote.py); the check needs nothing
but the standard library, so any Python the user can run will do. It prints one JSON object of
outcomes; ``tests/test_sandbox_unprivileged.py`` runs it through ``runuser`` and asserts them
(the same outcomes ``tests/test_sandbox.py`` asserts as root).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _my_processes() -> list[int]:
    me, pids = os.getuid(), []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == me:
                    pids.append(int(name))
            except FileNotFoundError:
                pass
    return pids


def _settled_count(baseline: int) -> int:
    """How many processes of ours there are once killed ones have left /proc (up to 2 s)."""
    count = len(_my_processes())
    for _ in range(100):
        if count <= baseline:
            break
        time.sleep(0.02)
        count = len(_my_processes())
    return count


LEAK_SECRET = r'''
import ctypes, os
secret = {secret!r}
routes = [secret, "/proc/1/root" + secret, "/proc/1/cwd/" + os.path.basename(secret)]
for path in routes:
    try:
        print("LEAK", path, open(path).read())
    except OSError as e:
        print("refused", path, e.errno)
# A nested user + mount namespace gives the program capabilities again; the mounts that hide the
# home directory must stay locked there.
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000 | 0x00020000) == 0:
    for point in ("/home", os.path.dirname(secret)):
        print("umount", point, libc.umount2(point.encode(), 2), ctypes.get_errno())
    print("remount-rw", libc.mount(None, b"/", None, 32 | 4096, None), ctypes.get_errno())
    try:
        print("LEAK nested", open(secret).read())
    except OSError as e:
        print("refused nested", e.errno)
'''

WRITE_OUTSIDE = r'''
import os, shutil
for path in {targets!r}:
    for what, attempt in (("write", lambda: open(path, "w").write("gone")),
                          ("unlink", lambda: os.unlink(path)),
                          ("rmtree", lambda: shutil.rmtree(os.path.dirname(path)))):
        try:
            attempt()
            print("DID", what, path)
        except OSError as e:
            print("refused", what, path, e.errno)
'''

CONNECT = r'''
import socket
try:
    s = socket.create_connection(("127.0.0.1", {port}), timeout=1)
    s.sendall(b"leak")
    print("CONNECTED")
except OSError as e:
    print("refused", e.errno)
try:
    print("RESOLVED", socket.gethostbyname("example.com"))
except OSError as e:
    print("no dns", e)
'''

FORK_BOMB = (
    "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
)

SIGNAL_SERVER = r'''
import os, signal
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
            signal.SIGSTOP, signal.SIGKILL):
    os.kill(1, sig)  # pid 1: this slot's fork server, which shares the program's uid
print("sent")
'''

DUMP_ENVIRON = r'''
import os
print(dict(os.environ))
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            print(open(f"/proc/{pid}/environ", "rb").read())
        except OSError:
            pass
'''


def confined_checks(pool, args) -> dict:
    out: dict = {"isolation": pool.isolation()}
    secret = args.secret
    out["user_reads_secret"] = open(secret).read()

    r = pool.run(LEAK_SECRET.format(secret=secret))
    out["secret"] = {"status": r.status, "stdout": r.stdout, "stderr": r.stderr[-2000:]}

    marker = os.path.join(args.writable, "marker.txt")
    in_home = os.path.join(os.path.dirname(secret), "escaped.txt")
    targets = [marker, os.path.join(args.writable, "escaped.txt"), in_home, secret]
    r = pool.run(WRITE_OUTSIDE.format(targets=targets))
    out["write"] = {
        "status": r.status, "stdout": r.stdout,
        "marker": open(marker).read() if os.path.exists(marker) else None,
        "secret": open(secret).read() if os.path.exists(secret) else None,
        "escaped": [p for p in targets[1:3] if os.path.exists(p)],
    }

    r = pool.run(CONNECT.format(port=args.port))
    out["network"] = {"status": r.status, "stdout": r.stdout}

    r = pool.run("print(open('/proc/self/status').read())")
    caps = [ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("CapEff:")]
    out["cap_eff"] = caps[0] if caps else None

    r = pool.run(DUMP_ENVIRON)
    out["environ_leaked"] = os.environ["SELFPLAY_TEST_SECRET"] in r.stdout + r.stderr

    for slot in pool._all:
        slot.ensure()
    servers = [slot.proc.pid for slot in pool._all]
    r = pool.run(SIGNAL_SERVER)
    out["signal_server"] = {"status": r.status, "detail": r.detail,
                            "same_servers": servers == [slot.proc.pid for slot in pool._all]}

    baseline = len(_my_processes())
    r = pool.run("import os, signal\nos.kill(-1, signal.SIGKILL)\nprint('sent')")
    out["kill_all"] = {"status": r.status, "after": pool.run("print('alive')").stdout}

    t0 = time.monotonic()
    r = pool.run(FORK_BOMB, timeout_s=1.5, nproc=16)
    out["fork_bomb"] = {"status": r.status, "seconds": time.monotonic() - t0,
                        "after": pool.run("print('still works')").stdout}
    out["processes"] = {"baseline": baseline, "after": _settled_count(baseline)}

    r1 = pool.run("x = bytearray(50 * 1024 ** 3)\nprint('allocated')")
    r2 = pool.run("x = []\nwhile True:\n    x.append(bytearray(10 ** 7))", memory_mb=128)
    out["memory"] = [r1.status, r2.status, r1.stdout]

    t0 = time.monotonic()
    out["timeout"] = {"status": pool.run("while True:\n    pass", timeout_s=1.0).status,
                      "seconds": time.monotonic() - t0}
    return out


def unconfined_checks(root_pool_cls) -> dict:
    out: dict = {}
    with root_pool_cls(1, timeout_s=3.0) as pool:
        try:
            r = pool.run("print('ran unconfined')")
            out["refused"] = None
            out["ran"] = r.stdout
        except Exception as err:  # noqa: BLE001 - reported to the test, which names the type
            out["refused"] = {"type": type(err).__name__, "message": str(err)}
    with root_pool_cls(1, timeout_s=3.0, allow_unconfined=True) as pool:
        out["allowed"] = pool.run("print('ran unconfined')").stdout
        out["isolation"] = pool.isolation()
    return out


def run_without_user_namespaces(uid: int, gid: int, argv: list[str]) -> int:
    """Exec ``argv`` as ``uid``:``gid`` where no user namespace can be created (a machine without
    them): a child enters a user namespace whose ``user.max_user_namespaces`` it sets to 0, the
    parent (root) maps root and ``uid`` into it, the child drops to ``uid`` and execs."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    entered_r, entered_w = os.pipe()
    mapped_r, mapped_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if libc.unshare(0x10000000) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")
            os.write(entered_w, b"x")
            if os.read(mapped_r, 1) != b"x":
                raise RuntimeError("the parent did not map the user namespace")
            with open("/proc/sys/user/max_user_namespaces", "w") as f:
                f.write("0")
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os.execvp(argv[0], argv)
        except BaseException as err:  # noqa: BLE001 - reported on stderr, then a failing exit
            print(f"without-user-namespaces: {err}", file=sys.stderr)
        os._exit(3)
    if os.read(entered_r, 1) != b"x":
        os.waitpid(pid, 0)
        return 3
    for name, ident in (("uid_map", uid), ("gid_map", gid)):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(f"0 0 1\n{ident} {ident} 1\n")
    os.write(mapped_w, b"x")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def main() -> int:
    if len(sys.argv) > 3 and sys.argv[1] == "--without-user-namespaces" and sys.argv[3] == "--":
        uid, gid = (int(x) for x in sys.argv[2].split(":"))
        return run_without_user_namespaces(uid, gid, sys.argv[4:])
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--secret")
    parser.add_argument("--port", type=int)
    parser.add_argument("--writable")
    parser.add_argument("--expect-unconfined", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    from envs.code.sandbox import SandboxPool

    if args.expect_unconfined:
        out = unconfined_checks(SandboxPool)
    else:
        with SandboxPool(2, timeout_s=10.0, memory_mb=256) as pool:  # a loaded CI machine
            out = confined_checks(pool, args)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
