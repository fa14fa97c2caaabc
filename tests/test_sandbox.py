"""The code sandbox: right answers pass, wrong ones fail, hostile programs are contained.

After every hostile program the machine is checked: marker files outside the sandbox intact and
no process left running under any of the pool's slot uids or in any slot's pid namespace.

The suite runs as root and as a normal user (user namespaces); the hostile programs that need the
namespaces are skipped only where none can be made (where the pool runs unconfined).
``tests/test_sandbox_unprivileged.py`` runs them as an unprivileged user when the suite is root.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envs.code.sandbox import SandboxPool, SandboxResult

ROOT = os.geteuid() == 0
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pool():
    # allow_unconfined: on a machine without namespaces the rlimit tests still run; the ones
    # that need confinement skip (``confined``).
    with SandboxPool(2, timeout_s=3.0, memory_mb=256, allow_unconfined=True) as p:
        yield p


@pytest.fixture(scope="module")
def isolation(pool):
    return pool.isolation()


@pytest.fixture
def confined(isolation):
    if not isolation["confined"]:
        pytest.skip("no namespaces here (neither root nor user namespaces): "
                    + isolation["summary"])


@pytest.fixture
def markers(tmp_path):
    """Files a hostile program will try to delete (root-owned 0700 dir; file world-writable)."""
    d = tmp_path / "markers"
    d.mkdir(mode=0o700)
    files = [d / f"marker{i}.txt" for i in range(3)]
    for f in files:
        f.write_text("keep me")
        f.chmod(0o666)
    return files


def _slot_processes(pool: SandboxPool) -> list[int]:
    """Processes of the slot uids (as root), and in the slots' pid namespaces beyond each
    namespace's fork server."""
    uids = {slot.uid for slot in pool._all} if ROOT else set()
    namespaces = {slot.info.get("pid_namespace") for slot in pool._all} - {None, ""}
    pids, by_namespace = [], {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid in uids:
                    pids.append(int(name))
                if namespaces and (ns := os.readlink(f"/proc/{name}/ns/pid")) in namespaces:
                    by_namespace.setdefault(ns, []).append(int(name))
            except (FileNotFoundError, PermissionError):
                pass
    return pids + [p for members in by_namespace.values() if len(members) > 1 for p in members]


def _machine_ok(pool: SandboxPool, markers: list[Path] | None = None) -> None:
    for _ in range(50):  # a killed process can take a moment to disappear from /proc
        left = _slot_processes(pool)
        if not left:
            break
        time.sleep(0.02)
    assert not left, f"sandbox processes left running: {left}"
    for f in markers or []:
        assert f.read_text() == "keep me", f"{f} was changed"


# -- ordinary programs ------------------------------------------------------------------------


def test_correct_program_passes(pool):
    r = pool.run("def f(x):\n    return x + 1\nassert f(1) == 2\nprint('fine')")
    assert isinstance(r, SandboxResult)
    assert r.status == "ok" and r.returncode == 0 and r.stdout == "fine\n"
    assert r.duration_s < 3


def test_wrong_program_fails(pool):
    r = pool.run("def f(x):\n    return x - 1\nassert f(1) == 2")
    assert r.status == "error" and r.returncode == 1 and "AssertionError" in r.stderr


def test_syntax_error_and_exit_codes(pool):
    assert pool.run("def (:").status == "error"
    r = pool.run("raise SystemExit(3)")
    assert (r.status, r.returncode) == ("error", 3)
    assert pool.run("import sys; sys.exit(0)").status == "ok"


def test_exec_mode_runs_a_fresh_interpreter(pool):
    r = pool.run("import sys; print(sys.flags.isolated, sys.flags.no_site)", mode="exec")
    assert r.status == "ok" and r.stdout.split() == ["1", "1"]


def test_files_beside_the_program_and_fresh_directory(pool):
    r = pool.run("import helper, os; print(helper.X, sorted(os.listdir('.')))",
                 files={"helper.py": "X = 7\n"})
    # -I leaves the script directory off sys.path: the helper is importable only explicitly.
    assert r.status == "error"
    r = pool.run("import sys, os; sys.path.insert(0, '.'); import helper\n"
                 "open('junk', 'w').write('x'); print(helper.X, os.getcwd())",
                 files={"helper.py": "X = 7\n"})
    assert r.status == "ok" and r.stdout.startswith("7 ")
    cwd = r.stdout.split()[1]
    r2 = pool.run("import os; print(sorted(os.listdir('.')), os.getcwd())")
    assert r2.stdout.startswith("['main.py']") and r2.stdout.split()[-1] != cwd


def test_output_is_capped(pool):
    r = pool.run("print('x' * 1_000_000)", max_output=1000)
    assert r.status == "ok" and len(r.stdout) == 1000 and r.stdout_truncated


def test_pool_runs_in_parallel_in_order(pool):
    srcs = [f"print({i})" for i in range(6)] + ["while True: pass"]
    t0 = time.monotonic()
    results = pool.run_many(srcs, timeout_s=1.5)
    assert [r.stdout.strip() for r in results[:6]] == [str(i) for i in range(6)]
    assert results[6].status == "timeout"
    assert time.monotonic() - t0 < 8
    _machine_ok(pool)


def test_cli_prints_json(tmp_path, isolation):
    prog = tmp_path / "prog.py"
    prog.write_text("print('hello from the sandbox')\n")
    out = subprocess.run([sys.executable, "-m", "envs.code.sandbox", str(prog), "--timeout", "2"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    data = json.loads(out.stdout)
    if not isolation["confined"]:  # it refuses, and says how to run it anyway
        assert out.returncode == 2 and data["status"] == "sandbox_error"
        assert "--allow-unconfined" in data["detail"]
        return
    assert out.returncode == 0 and data["status"] == "ok"
    assert data["stdout"] == "hello from the sandbox\n" and "duration_s" in data


# -- hostile programs -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fork", "exec"])
def test_infinite_loop_times_out(pool, markers, mode):
    t0 = time.monotonic()
    r = pool.run("while True:\n    pass", timeout_s=1.0, mode=mode)
    assert r.status == "timeout" and not r.ok
    assert time.monotonic() - t0 < 4
    _machine_ok(pool, markers)


def test_sleeping_daemon_children_are_killed(pool, markers):
    src = (
        "import os, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(600)\n"
        "        os._exit(0)\n"
        "print('parent exits normally')\n"
    )
    r = pool.run(src)
    assert r.status == "ok"
    _machine_ok(pool, markers)


def test_fork_bomb_is_contained(pool, markers, isolation):
    if "nproc" not in isolation["rlimits"]:
        pytest.skip("no process limit here: " + isolation["nproc_limit"])
    src = (
        "import os\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        pass\n"
    )
    t0 = time.monotonic()
    r = pool.run(src, timeout_s=1.5, nproc=16)
    assert r.status in ("timeout", "killed", "error")
    assert time.monotonic() - t0 < 5
    _machine_ok(pool, markers)
    assert pool.run("print('still works')").stdout == "still works\n"


def test_huge_allocation_fails(pool, markers):
    r = pool.run("x = bytearray(50 * 1024 ** 3)\nprint('allocated')")
    assert r.status == "memory" and "allocated" not in r.stdout
    r = pool.run("x = []\nwhile True:\n    x.append(bytearray(10 ** 7))", memory_mb=128)
    assert r.status == "memory"
    _machine_ok(pool, markers)


def test_huge_file_fails(pool, markers):
    src = (
        "with open('big.bin', 'wb') as f:\n"
        "    for _ in range(10 * 1024):\n"
        "        f.write(b'x' * (1 << 20))\n"
        "print('wrote 10 GB')\n"
    )
    r = pool.run(src, fsize_mb=8)
    assert r.status == "filesize" and "wrote" not in r.stdout
    _machine_ok(pool, markers)


def test_cannot_delete_files_outside(pool, markers, confined):
    paths = [str(m) for m in markers] + [str(REPO / "pyproject.toml")]
    src = (
        "import os, shutil\n"
        f"paths = {paths!r}\n"
        "for p in paths:\n"
        "    for attempt in (lambda: os.unlink(p), lambda: open(p, 'w').write('gone'),\n"
        "                    lambda: shutil.rmtree(os.path.dirname(p))):\n"
        "        try:\n"
        "            attempt()\n"
        "            print('DID', p)\n"
        "        except OSError as e:\n"
        "            print('refused', p, e.errno)\n"
    )
    r = pool.run(src)
    assert "DID" not in r.stdout, r.stdout
    assert (REPO / "pyproject.toml").exists()
    _machine_ok(pool, markers)


def test_no_network(pool, markers, confined):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        src = (
            "import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "s.sendall(b'leak')\n"
            "print('CONNECTED')\n"
        )
        for mode in ("fork", "exec"):
            r = pool.run(src, mode=mode)
            assert r.status == "error" and "CONNECTED" not in r.stdout
        r = pool.run("import socket; print(socket.gethostbyname('example.com'))")
        assert r.status == "error"
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever connected
    finally:
        listener.close()
    _machine_ok(pool, markers)


def test_parent_environment_is_not_visible(pool, markers, monkeypatch):
    secret = "s3cret-token-" + os.urandom(8).hex()
    monkeypatch.setenv("SELFPLAY_TEST_SECRET", secret)
    src = (
        "import os\n"
        "print(dict(os.environ))\n"
        "for pid in os.listdir('/proc'):\n"
        "    if pid.isdigit():\n"
        "        try:\n"
        "            print(open(f'/proc/{pid}/environ', 'rb').read())\n"
        "        except OSError:\n"
        "            pass\n"
    )
    for mode in ("fork", "exec"):
        r = pool.run(src, mode=mode)
        assert r.status == "ok"
        assert secret not in r.stdout and secret not in r.stderr
        env = eval(r.stdout.splitlines()[0])  # the first line is the program's own environment
        assert set(env) <= {"PATH", "LANG", "HOME", "LC_CTYPE"}
    _machine_ok(pool, markers)


def test_output_flood_does_not_block(pool, markers):
    t0 = time.monotonic()
    r = pool.run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", timeout_s=2)
    assert r.status in ("filesize", "timeout") and r.stdout_truncated
    assert len(r.stdout) <= 64 * 1024 and time.monotonic() - t0 < 5
    _machine_ok(pool, markers)


# -- what confines them --------------------------------------------------------------------------


def test_isolation_reports_what_holds(isolation, confined):
    ns = isolation["namespaces"]
    assert ns["net"] and ns["mount"] and ns["pid"]
    assert ns["user"] is (not ROOT)  # a user namespace is how a normal user gets the others
    assert isolation["uid_drop"] is ROOT
    assert isolation["confined"] and isolation["readonly_root"] and isolation["private_proc"]
    assert {"cpu", "as", "fsize", "nofile"} <= set(isolation["rlimits"])
    assert "/home" in isolation["hidden"] or not os.path.isdir("/home")
    assert os.path.realpath(os.path.expanduser("~")) in isolation["hidden"] or any(
        os.path.realpath(os.path.expanduser("~")).startswith(h + "/") for h in isolation["hidden"])
    assert isolation["summary"].startswith("code sandbox: confined; namespaces: ")
    assert isolation["degraded"] is (not ROOT)


def test_homes_and_other_processes_are_out_of_sight(pool, confined):
    src = (
        "import os\n"
        "print(sorted(os.listdir('/home')) if os.path.isdir('/home') else [])\n"
        "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
    )
    for mode in ("fork", "exec"):
        r = pool.run(src, mode=mode)
        assert r.status == "ok", r.stderr
        homes, pids = r.stdout.splitlines()
        assert homes == "[]"  # an empty tmpfs: no user's files, keys or sockets
        # Its own pid namespace: the fork server (1) and this program, not the machine's.
        assert os.getpid() not in eval(pids) and len(eval(pids)) <= 3, pids
    user_home = os.path.expanduser("~")
    r = pool.run(f"import os; print(os.listdir({user_home!r}))")
    assert r.stdout.strip() == "[]" or r.status == "error", r.stdout


def test_programs_hold_no_capabilities(pool, confined):
    r = pool.run("print([ln for ln in open('/proc/self/status') if ln.startswith('Cap')])")
    caps = dict(item.split(":\t") for item in eval(r.stdout))
    assert int(caps["CapEff"], 16) == 0 and int(caps["CapPrm"], 16) == 0
    if not ROOT:
        assert int(caps["CapBnd"], 16) == 0  # a user namespace's, given up before the program ran


def test_a_code_env_reports_the_sandbox_once(pool, capsys, monkeypatch):
    """A run constructs its code envs many times; what confines them is printed once, and the
    processes it starts afterwards (local Ray workers) inherit the marker."""
    from envs.code.env import CodeEnv
    from envs.code.sandbox import REPORTED_ENV

    monkeypatch.delenv(REPORTED_ENV, raising=False)
    envs = [CodeEnv(level=1, pool=pool, allow_unconfined=True) for _ in range(3)]
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("code sandbox: ")]
    assert len(lines) == 1 and lines[0] == envs[0].isolation["summary"]
    assert os.environ[REPORTED_ENV] == "1"


def test_code_env_configs_document_allow_unconfined():
    for name in ("code.yaml", "code_jsonl.yaml"):
        line = next(ln for ln in (REPO / "conf" / "env" / name).read_text().splitlines()
                    if ln.strip().startswith("allow_unconfined:"))
        assert line.split("#")[0].split(":")[1].strip() == "false" and "#" in line, name
