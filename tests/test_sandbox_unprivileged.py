"""The code sandbox run by an unprivileged user.

As root (sessions and CI), a test user is created with ``useradd`` (or reused), and
``tests/sandbox_hostile_check.py`` runs as that user through ``runuser`` against a copy of
``envs/code`` outside the root-only venv: the hostile programs of ``tests/test_sandbox.py`` must
be contained the same way, by user namespaces instead of root. A second run takes user namespaces
away (``user.max_user_namespaces=0`` in a namespace around the check): the sandbox must refuse
to run code unless ``allow_unconfined`` says so. The machine keeps only the test user afterwards.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from envs.code.sandbox import SandboxUnconfined, check_confinement

REPO = Path(__file__).resolve().parents[1]
USER = "selfplay-sandbox-test"
TOOLS = [shutil.which(t) for t in ("useradd", "runuser")]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(TOOLS),
    reason="creates an unprivileged user (needs root, useradd and runuser); "
           "as a normal user, tests/test_sandbox.py itself runs unprivileged",
)


@pytest.fixture(scope="module")
def user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True,
                       capture_output=True, timeout=30)
        return pwd.getpwnam(USER)


def _as_user(user: pwd.struct_passwd, argv: list[str], **env: str) -> list[str]:
    clean = {"PATH": "/usr/bin:/bin", "HOME": user.pw_dir, "LANG": "C.UTF-8", **env}
    return ["runuser", "-u", user.pw_name, "--", "env", "-i",
            *(f"{k}={v}" for k, v in clean.items()), *argv]


@pytest.fixture(scope="module")
def python(user) -> str:
    """A Python of this minor version the test user can run (the venv's lives under /root)."""
    version = "python%d.%d" % sys.version_info[:2]
    for candidate in (sys.executable, os.path.realpath(sys.executable),
                      f"/usr/local/bin/{version}", f"/usr/bin/{version}"):
        if os.path.isfile(candidate) and subprocess.run(
            _as_user(user, [candidate, "-I", "-c", "import ctypes, json"]),
            capture_output=True, timeout=30,
        ).returncode == 0:
            return candidate
    pytest.skip(f"no {version} the user {USER} can run")


@pytest.fixture
def copy(user):
    """envs/code copied where the user can read it (0755, root-owned), with a directory the user
    owns outside /tmp and its home: the program must not write there either."""
    root = Path(tempfile.mkdtemp(prefix="selfplay-sandbox-test-", dir="/var/lib"))
    try:
        root.chmod(0o755)
        pkg = root / "envs" / "code"
        pkg.mkdir(parents=True)
        for parent in (root / "envs", pkg):
            parent.chmod(0o755)
            (parent / "__init__.py").write_text("")
        for name in ("sandbox.py", "_zygote.py"):
            shutil.copy(REPO / "envs" / "code" / name, pkg / name)
        shutil.copy(REPO / "tests" / "sandbox_hostile_check.py", root / "check.py")
        writable = root / "writable"
        writable.mkdir()
        (writable / "marker.txt").write_text("keep me")
        for path in (writable, writable / "marker.txt"):
            os.chown(path, user.pw_uid, user.pw_gid)
        for path in root.rglob("*"):
            if path.is_file():
                path.chmod(0o644 if path.parent != writable else 0o600)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(argv: list[str]) -> dict:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, f"the check died (rc {out.returncode}):\n{out.stderr[-3000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_hostile_programs_are_contained_for_an_unprivileged_user(user, python, copy):
    secret_text = "ssh-key-" + os.urandom(8).hex()
    secret = Path(user.pw_dir) / "secret.txt"
    secret.write_text(secret_text)
    os.chown(secret, user.pw_uid, user.pw_gid)
    secret.chmod(0o600)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    env_secret = "s3cret-token-" + os.urandom(8).hex()
    try:
        out = _run(_as_user(
            user, [python, str(copy / "check.py"), str(copy), "--secret", str(secret),
                   "--port", str(listener.getsockname()[1]), "--writable", str(copy / "writable")],
            SELFPLAY_TEST_SECRET=env_secret,
        ))
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever connected
        assert secret.read_text() == secret_text
    finally:
        listener.close()
        secret.unlink(missing_ok=True)
        (Path(user.pw_dir) / "escaped.txt").unlink(missing_ok=True)
    assert out["user_reads_secret"] == secret_text  # the user can; its programs must not
    assert secret_text not in out["secret"]["stdout"], out["secret"]
    assert "LEAK" not in out["secret"]["stdout"], out["secret"]
    assert "DID" not in out["write"]["stdout"], out["write"]["stdout"]
    assert out["write"]["marker"] == "keep me" and out["write"]["secret"] == secret_text
    assert out["write"]["escaped"] == []
    network = out["network"]["stdout"]
    assert "CONNECTED" not in network and "RESOLVED" not in network
    assert not out["environ_leaked"]
    assert out["kill_all"]["after"] == "alive\n"  # kill(-1) reached none of the user's processes
    assert out["signal_server"]["status"] == "ok" and out["signal_server"]["same_servers"], out[
        "signal_server"]  # nor could it stop its own fork server
    assert out["fork_bomb"]["status"] in ("timeout", "killed", "error")
    assert out["fork_bomb"]["seconds"] < 5 and out["fork_bomb"]["after"] == "still works\n"
    assert out["processes"]["after"] <= out["processes"]["baseline"], out["processes"]
    assert out["memory"] == ["memory", "memory", ""]
    assert out["timeout"]["status"] == "timeout" and out["timeout"]["seconds"] < 4
    assert int(out["cap_eff"], 16) == 0  # no capability left in its user namespace
    iso = out["isolation"]
    assert iso["namespaces"] == {"user": True, "net": True, "mount": True, "pid": True}
    assert iso["uid_drop"] is False and iso["confined"] is True
    assert user.pw_dir in iso["hidden"] or "/home" in iso["hidden"]


def test_without_namespaces_the_sandbox_refuses_unless_allowed(user, python, copy):
    check = str(copy / "check.py")
    out = _run([python, check, "--without-user-namespaces", f"{user.pw_uid}:{user.pw_gid}", "--",
                *_as_user(user, [python, check, str(copy), "--expect-unconfined"])[4:]])
    assert out["refused"] and out["refused"]["type"] == "SandboxUnconfined", out
    assert "allow_unconfined" in out["refused"]["message"]
    assert out["allowed"] == "ran unconfined\n"
    iso = out["isolation"]
    assert iso["confined"] is False and not any(iso["namespaces"].values())
    # The same report makes a code env refuse, naming its config key.
    key = "env.kwargs.allow_unconfined=true"
    with pytest.raises(SandboxUnconfined, match=r"env\.kwargs\.allow_unconfined=true"):
        check_confinement(iso, allow_unconfined=False, key=key)
    assert check_confinement(iso, allow_unconfined=True, key=key) is None
