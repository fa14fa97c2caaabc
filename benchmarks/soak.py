"""Soak: a tic-tac-toe run killed with SIGKILL at random moments, resumed each time, checked whole.

The real command, `selfplay train env=tictactoe`, runs as a subprocess in a temp run directory, in
a session of its own (``start_new_session``), so that a kill takes the driver and every Ray process
it started — raylet, GCS, and the actor workers, which Ray puts in process groups of their own but
which stay in the driver's session — and nothing else on the machine. Phases:

- **kills**: the run is resumed (``run.resume=true``), allowed to commit new episodes and a new
  checkpoint, then killed a random moment later; one kill in three waits instead for a write in
  flight (a ``.tmp-`` file in ``episodes/`` or ``checkpoints/``) and lands while it is there;
- **a rollout actor killed mid-play** (``ray::RolloutWorker``, SIGKILL) in the first session: the
  driver must replace it and go on committing;
- **the disk filling up mid-write**: the run directory is moved onto a small tmpfs mounted at its
  own path (``run.dir`` is frozen across resumes), the run is resumed there and a ballast file
  fills the disk until writes fail; then the ballast goes, the run resumes on the freed disk, and
  the directory moves back (needs root; skipped with a note otherwise);
- **a reader** polls the live run directory throughout, in a thread: ``selfplay replay`` (lists,
  ``--show -1``, ``--show 0``) and ``selfplay eval`` of the newest checkpoint; each poll must
  succeed or refuse with one clear line (never a traceback), the episode count it sees must never
  go back, and the oldest episode must stay the same;
- **the last session** runs to its step budget and must finish by itself.

After every phase the run directory is scanned (with the run dead): every Parquet shard read with
pyarrow, every episode hashed row by row; every ``checkpoints/version-*`` dir's weights loaded
(safetensors) and its ``meta.json`` read, every file hashed. Each scan is compared with what earlier
scans saw committed: a committed file never changes or vanishes (a shard may vanish only when a
merged shard holds every one of its episodes unchanged: compaction, compared by episode id and
content, never by file name), no episode id appears twice, version numbers only grow, and the run
made progress (more episodes and more learner steps than before the phase).

    python benchmarks/soak.py --quick --out /tmp/soak   # 3 kills (25 minutes on 2 busy cores)
    python benchmarks/soak.py --out /tmp/soak           # 20 kills (about 2 hours there)
    python benchmarks/soak.py                           # writes benchmarks/results/soak.json

tests/test_soak.py runs the short version through the same functions.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import figure, print_table, write_result

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from selfplay.replay.store import live_and_covered, parse_shard_name

# A policy and a search small enough that a session commits within seconds of Ray being up.
TINY = [
    "env=tictactoe",
    "policy.hidden_size=32", "policy.num_layers=1", "policy.num_heads=2",
    "policy.num_kv_heads=1", "policy.intermediate_size=64",
    "search.num_simulations=8",
    "learner.batch_size=32", "learner.min_replay_steps=32", "learner.publish_every=8steps",
    "run.games_per_actor=8", "run.num_actors=1", "run.progress=false",
    "run.eval_every=1000steps", "arena.gate_games=4", "arena.eval_games=4",
    "arena.search_simulations=4", "ray.num_cpus=2",
]
# What a reader runs against the live run (read-only commands of the `selfplay` CLI), in turn;
# `eval` (torch, a model, two games) costs several times a `replay`, so it comes once a round.
READER_COMMANDS = (
    ("replay", "{run}", "--limit", "3"),
    ("replay", "{run}", "--show", "-1"),
    ("replay", "{run}", "--limit", "3", "--offset", "5"),
    ("replay", "{run}", "--show", "0"),
    ("eval", "env=tictactoe", "checkpoint={run}", "player=random", "games=2",
     "search.num_simulations=4", "run.progress=false"),
)
OPTIMIZER_FILE = "optimizer.pt"  # pruned by design (learner.keep_optimizer_states); never changed
TMP_PREFIX = ".tmp-"
BALLAST = ".soak-ballast"  # the file that fills the tmpfs in the disk-full phase


@dataclass
class SoakPlan:
    """What one soak does."""

    kills: int = 20  # SIGKILLs of the whole session, each followed by a resume
    actor_kill: bool = True  # SIGKILL one rollout actor mid-play in the first session
    reader: bool = True  # a thread polling the live run with read-only commands
    disk_full: bool = True  # the tmpfs phase (root only)
    final_steps: int = 8  # learner steps the last, unkilled session adds before it finishes
    seed: int = 0  # the random kill moments
    kill_jitter_s: float = 6.0  # a kill lands uniformly within this long after the progress seen
    mid_write_every: int = 3  # every this many-th kill waits for a write in flight (.tmp- on disk)
    progress_timeout_s: float = 300.0  # a session that commits nothing new within this is a stall
    disk_mib: int = 0  # tmpfs size; 0: the run directory's size plus 24 MiB
    overrides: tuple[str, ...] = ()  # extra `selfplay train` overrides


# ---------------------------------------------------------------------------- processes


def session_pids(sid: int) -> list[int]:
    """Live processes of session ``sid`` (zombies excluded), read from /proc."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def process_title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def kill_session(sid: int, timeout: float = 60.0) -> int:
    """SIGKILL every process of session ``sid`` until none is left; returns how many were hit."""
    hit: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = session_pids(sid)
        if not pids:
            return len(hit)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                hit.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"session {sid} still has processes {session_pids(sid)} after {timeout} s")


def find_actor(sid: int, name: str) -> int | None:
    """The pid of a Ray actor worker of session ``sid`` whose title starts ``ray::<name>``."""
    for pid in session_pids(sid):
        if process_title(pid).startswith(f"ray::{name}"):
            return pid
    return None


def soak_env(ray_tmp: Path) -> dict[str, str]:
    """The environment of every command the soak starts: its own Ray temp dir (so a bare
    ``ray.init`` never joins another Ray on the machine, and its sessions are deleted with it)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=str(ray_tmp), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               PYTHONUNBUFFERED="1")
    return env


class TrainSession:
    """One `selfplay train` process (and its Ray), in a session of its own, logging to a file."""

    def __init__(self, run_dir: Path, overrides: list[str], log: Path, env: dict[str, str]):
        self.log = log
        self.started = time.monotonic()
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "selfplay.cli", "train", *overrides, f"run.dir={run_dir}"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def sid(self) -> int:
        return self.proc.pid  # a session leader's pid is its session id

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        kill_session(self.sid)  # the leader too, or what of its Ray outlived it
        self.proc.wait(timeout=30)

    def tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# ---------------------------------------------------------------------------- the ledger


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shard_episodes(path: Path) -> dict[str, str]:
    """Episode id -> digest of its rows, for one shard; a ValueError if a shard is not whole."""
    rows = pq.read_table(path).to_pylist()
    by_episode: dict[str, list[dict]] = {}
    for row in rows:
        by_episode.setdefault(row["episode_id"], []).append(row)
    out = {}
    for episode_id, steps in by_episode.items():
        steps.sort(key=lambda r: r["step_index"])
        if [r["step_index"] for r in steps] != list(range(steps[0]["num_steps"])):
            raise ValueError(f"episode {episode_id} is not whole: steps "
                             f"{[r['step_index'] for r in steps]} of {steps[0]['num_steps']}")
        blob = json.dumps(steps, sort_keys=True, default=repr).encode()
        out[episode_id] = hashlib.sha256(blob).hexdigest()
    return out


def checkpoint_files(path: Path, load: bool = True) -> dict[str, str]:
    """File name -> sha256 of one version dir, after loading its weights and meta (``load``; a
    ValueError when they do not load)."""
    from safetensors.numpy import load_file

    if not load:
        return {p.name: file_digest(p) for p in sorted(path.iterdir()) if p.is_file()}
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("version") != int(path.name.split("-")[1]):
        raise ValueError(f"meta.json says version {meta.get('version')}")
    for weights in sorted(path.glob("*.safetensors")):
        if not load_file(str(weights)):
            raise ValueError(f"{weights.name} holds no tensors")
    json.loads((path / "config.json").read_text())
    return {p.name: file_digest(p) for p in sorted(path.iterdir()) if p.is_file()}


@dataclass
class Scan:
    """What one look at a (dead) run directory found, against what earlier looks had committed."""

    episodes: int = 0  # episodes in the live shards
    new_episodes: int = 0
    lost: list[str] = field(default_factory=list)  # committed episode ids no longer there
    checkpoints: int = 0
    checkpoints_intact: int = 0  # committed versions whose files are all unchanged
    max_version: int = -1
    learner_step: int = -1  # the newest checkpoint's learner step
    shard_files: int = 0  # files named shard-* in episodes/ (covered sources included)
    appends: int = 0  # shards the store would hold without compaction (one per append)
    temps: int = 0  # '.tmp-' leftovers (a kill mid-write leaves these; the writer clears them)
    root_temps: int = 0  # '.tmp-' leftovers in the run directory itself (atomic JSON writes)
    problems: list[str] = field(default_factory=list)


class Ledger:
    """Every committed episode and checkpoint seen so far, by content; ``scan`` compares a run
    directory with it and records what is new. Paths are relative to the run directory, so the
    directory may move (the disk-full phase copies it onto a tmpfs and back)."""

    def __init__(self) -> None:
        self.shards: dict[str, tuple[str, dict[str, str]]] = {}  # name -> (sha256, episodes)
        self.episodes: dict[str, str] = {}  # episode id -> digest
        self.checkpoints: dict[int, dict[str, str]] = {}  # version -> files
        self.max_version = -1

    def scan(self, run_dir: Path) -> Scan:
        scan = Scan()
        scan.root_temps = sum(1 for p in Path(run_dir).glob(f"{TMP_PREFIX}*"))
        self._scan_episodes(Path(run_dir) / "episodes", scan)
        self._scan_checkpoints(Path(run_dir) / "checkpoints", scan)
        return scan

    def _scan_episodes(self, folder: Path, scan: Scan) -> None:
        names = []
        for p in folder.iterdir() if folder.is_dir() else ():
            if p.name.startswith(TMP_PREFIX):
                scan.temps += 1
            span = parse_shard_name(p.name)
            if span is not None:
                names.append((span[0], span[1], p))
        scan.shard_files = len(names)
        scan.appends = max((last for _, last, _ in names), default=-1) + 1
        current: dict[str, dict[str, str]] = {}
        for _, _, path in names:
            sha = file_digest(path)
            seen = self.shards.get(path.name)
            if seen is not None and seen[0] != sha:
                scan.problems.append(f"committed shard {path.name} changed on disk")
            if seen is not None and seen[0] == sha:
                current[path.name] = seen[1]
                continue
            try:
                current[path.name] = shard_episodes(path)
            except Exception as err:  # noqa: BLE001 -- any unreadable shard is a finding, not a crash
                scan.problems.append(f"shard {path.name} does not read whole: {err}")
                continue
            self.shards[path.name] = (sha, current[path.name])
        live, covered = live_and_covered([(f, la, p) for f, la, p in names if p.name in current])
        seen_in: dict[str, str] = {}
        for _, _, path in live:
            for episode_id, digest in current[path.name].items():
                if episode_id in seen_in:
                    scan.problems.append(f"episode {episode_id} is in two shards: "
                                         f"{seen_in[episode_id]} and {path.name}")
                seen_in[episode_id] = path.name
                old = self.episodes.get(episode_id)
                if old is None:
                    self.episodes[episode_id] = digest
                    scan.new_episodes += 1
                elif old != digest:
                    scan.problems.append(f"episode {episode_id} changed (in {path.name})")
        live_digest = {e: d for _, _, p in live for e, d in current[p.name].items()}
        for path in covered:  # a merge's sources a kill left behind: they must agree with it
            for episode_id, digest in current[path.name].items():
                if live_digest.get(episode_id) != digest:
                    scan.problems.append(f"covered shard {path.name} disagrees with the merged "
                                         f"shard on episode {episode_id}")
        scan.lost = sorted(set(self.episodes) - set(live_digest))
        scan.episodes = len(live_digest)

    def _scan_checkpoints(self, folder: Path, scan: Scan) -> None:
        found: dict[int, dict[str, str]] = {}
        steps: dict[int, int] = {}
        for path in sorted(folder.glob("version-*")) if folder.is_dir() else ():
            version = int(path.name.split("-")[1])
            try:
                found[version] = checkpoint_files(path, load=version not in self.checkpoints)
                steps[version] = json.loads((path / "meta.json").read_text())["learner_step"]
            except Exception as err:  # noqa: BLE001 -- any unloadable checkpoint is a finding
                scan.problems.append(f"checkpoint {path.name} does not load: {err}")
        if folder.is_dir():
            scan.temps += sum(1 for p in folder.iterdir() if p.name.startswith(TMP_PREFIX))
        new = sorted(set(found) - set(self.checkpoints))
        if new and new[0] <= self.max_version:
            scan.problems.append(f"version numbers went back: v{new[0]} written after "
                                 f"v{self.max_version}")
        for version, files in self.checkpoints.items():
            now = found.get(version)
            if now is None:
                scan.problems.append(f"committed checkpoint version-{version:06d} vanished")
                continue
            kept = {n: d for n, d in files.items() if n != OPTIMIZER_FILE}
            broken = [n for n, d in kept.items() if now.get(n) != d]
            if OPTIMIZER_FILE in now and files.get(OPTIMIZER_FILE, now[OPTIMIZER_FILE]) != now[OPTIMIZER_FILE]:
                broken.append(OPTIMIZER_FILE)
            if OPTIMIZER_FILE in now and OPTIMIZER_FILE not in files:
                broken.append(f"{OPTIMIZER_FILE} (appeared later)")
            if broken:
                scan.problems.append(f"checkpoint version-{version:06d} changed: {broken}")
            else:
                scan.checkpoints_intact += 1
        ordered = sorted(steps)
        for a, b in itertools.pairwise(ordered):
            if steps[b] < steps[a]:
                scan.problems.append(f"v{b} has learner step {steps[b]} < v{a}'s {steps[a]}")
        for version in new:
            self.checkpoints[version] = found[version]
            scan.checkpoints_intact += 1
        self.max_version = max([self.max_version, *found])
        scan.checkpoints = len(found)
        scan.max_version = self.max_version
        scan.learner_step = steps[max(steps)] if steps else -1


# ---------------------------------------------------------------------------- watching a live run


def committed_shards(run_dir: Path) -> set[str]:
    try:
        return {n for n in os.listdir(run_dir / "episodes") if parse_shard_name(n)}
    except OSError:
        return set()


def newest_learner_step(run_dir: Path) -> int:
    folder = run_dir / "checkpoints"
    try:
        versions = sorted(n for n in os.listdir(folder) if n.startswith("version-"))
    except OSError:
        return -1
    for name in reversed(versions):
        try:
            return int(json.loads((folder / name / "meta.json").read_text())["learner_step"])
        except (OSError, ValueError, KeyError):
            continue
    return -1


def writes_in_flight(run_dir: Path) -> bool:
    for sub in ("episodes", "checkpoints"):
        try:
            if any(n.startswith(TMP_PREFIX) for n in os.listdir(run_dir / sub)):
                return True
        except OSError:
            pass
    return False


def wait_until(done: Callable[[], bool], session: TrainSession, timeout: float,
               poll: float = 0.25) -> str:
    """'done', 'exited' (the process ended first) or 'timeout'."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return "done"
        if not session.alive():
            return "done" if done() else "exited"
        time.sleep(poll)
    return "timeout"


def progressed(run_dir: Path, shards_before: set[str], step_before: int) -> Callable[[], bool]:
    """True once the run committed a shard and a checkpoint of a later learner step than before."""
    return lambda: (bool(committed_shards(run_dir) - shards_before)
                    and newest_learner_step(run_dir) > step_before)


# ---------------------------------------------------------------------------- the reader


class Reader(threading.Thread):
    """Polls the live run with read-only `selfplay` commands until stopped. A poll is ok (exit 0),
    a refusal (non-zero, one clear message: e.g. no checkpoint yet) or a failure (a traceback, a
    hang, an episode count lower than one seen before, or another oldest episode than before)."""

    def __init__(self, run_dir: Path, env: dict[str, str], pause_s: float = 2.0,
                 timeout_s: float = 240.0):
        super().__init__(daemon=True)
        self.run_dir, self.env, self.pause_s, self.timeout_s = run_dir, env, pause_s, timeout_s
        self.stopping = threading.Event()
        self.polls = self.ok = self.refusals = 0
        self.failures: list[str] = []
        self.refused: set[str] = set()  # the distinct refusals' messages
        self.most_episodes = 0
        self.first_episode = ""  # what `--show 0` names: the oldest episode, the same forever
        self.current: subprocess.Popen | None = None

    def run(self) -> None:
        i = 0
        while not self.stopping.is_set():
            self.poll(READER_COMMANDS[i % len(READER_COMMANDS)])
            i += 1
            self.stopping.wait(self.pause_s)

    def poll(self, template: tuple[str, ...]) -> None:
        args = [a.format(run=self.run_dir) for a in template]
        what = f"`selfplay {' '.join(args)}`"
        self.current = proc = subprocess.Popen(
            [sys.executable, "-m", "selfplay.cli", *args], cwd=REPO, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            kill_session(proc.pid)
            proc.communicate()
            out, err = "", ""
        if self.stopping.is_set() and proc.returncode < 0:
            return  # stopped by us, mid-poll
        self.polls += 1
        if proc.returncode < 0:
            self.failures.append(f"{what} hung for more than {self.timeout_s:.0f} s")
        elif "Traceback" in err or "Traceback" in out:
            self.failures.append(f"{what}: traceback: {err.strip().splitlines()[-1][:200]}")
        elif proc.returncode == 0:
            self.ok += 1
            found = re.search(r"(\d+) episodes", out)
            if found:
                count = int(found.group(1))
                if count < self.most_episodes:
                    self.failures.append(f"{what}: {count} episodes after {self.most_episodes}")
                self.most_episodes = max(self.most_episodes, count)
            first = re.search(r"episode ([0-9a-f]{8})", out) if args[-2:] == ["--show", "0"] else None
            if first:
                if self.first_episode and first.group(1) != self.first_episode:
                    self.failures.append(f"{what}: episode 0 is {first.group(1)}, "
                                         f"was {self.first_episode}")
                self.first_episode = first.group(1)
        elif err.strip() and len(err.strip().splitlines()) <= 3:
            self.refusals += 1  # one clear message (no run dir yet, no checkpoint yet, ...)
            self.refused.add(re.sub(r"/\S+", "PATH", err.strip().splitlines()[-1])[:160])
        else:
            self.failures.append(f"{what}: exit {proc.returncode}: {(err or out).strip()[-300:]}")

    def stop(self) -> None:
        self.stopping.set()
        proc = self.current
        if proc is not None and proc.poll() is None:
            kill_session(proc.pid)
        self.join(timeout=60)


# ---------------------------------------------------------------------------- the soak


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    outcome: str = ""  # killed | killed mid-write | finished | exited by itself | ...
    episodes: int = 0
    learner_step: int = -1
    max_version: int = -1
    new_episodes: int = 0
    temps_left: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class SoakResult:
    kills: int = 0
    kills_survived: int = 0
    kills_mid_write: int = 0
    resumes: int = 0
    actor_kills: int = 0
    actor_kills_survived: int = 0
    episodes: int = 0
    episodes_lost: int = 0
    checkpoints: int = 0
    checkpoints_intact: int = 0
    stalls: int = 0
    reader_polls: int = 0
    reader_ok: int = 0
    reader_refusals: int = 0
    reader_failures: list[str] = field(default_factory=list)
    reader_refused: list[str] = field(default_factory=list)  # what the refusals said
    files_in_episodes: int = 0
    appends: int = 0
    stray_temps: int = 0  # '.tmp-' files left in the run directory's root at the end
    disk_full: dict = field(default_factory=dict)
    final: str = ""
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)

    @property
    def files_per_10k(self) -> float:
        return 1e4 * self.files_in_episodes / max(self.episodes, 1)

    @property
    def appends_per_10k(self) -> float:
        return 1e4 * self.appends / max(self.episodes, 1)


class Soak:
    """Runs a SoakPlan in ``work`` (the run directory is ``work/run``)."""

    def __init__(self, plan: SoakPlan, work: Path, log: Callable[[str], None] = print):
        self.plan, self.work, self.say = plan, Path(work), log
        self.run_dir = self.work / "run"
        # Ray's sockets live under its temp dir, whose path must stay short (AF_UNIX: 107 bytes).
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="soak-ray-", dir="/tmp"))
        self.env = soak_env(self.ray_tmp)
        self.rng = random.Random(plan.seed)
        self.ledger = Ledger()
        self.result = SoakResult()
        self.sessions = 0
        self.current: TrainSession | None = None  # the session started last (killed on the way out)
        self.last = Scan()

    # -- one session

    def start(self, extra: list[str] = ()) -> TrainSession:
        resume = ["run.resume=true"] if self.sessions else []
        if self.sessions:
            self.result.resumes += 1
        self.sessions += 1
        overrides = [*TINY, *self.plan.overrides, *resume, *extra]
        self.current = TrainSession(self.run_dir, overrides,
                                    self.work / f"session-{self.sessions:02d}.log", self.env)
        return self.current

    def check(self, phase: Phase, want_progress: bool = True, budget_steps: int = 0) -> Scan:
        """Scan the dead run against the ledger; record the phase. ``want_progress``: new
        episodes and learner steps since the last scan; ``budget_steps``: the learner got there."""
        before = self.last
        scan = self.ledger.scan(self.run_dir)
        phase.episodes, phase.learner_step = scan.episodes, scan.learner_step
        phase.max_version, phase.new_episodes = scan.max_version, scan.new_episodes
        phase.temps_left = scan.temps + scan.root_temps
        phase.problems += scan.problems
        if scan.lost:
            phase.problems.append(f"{len(scan.lost)} committed episodes lost, e.g. {scan.lost[:3]}")
        if want_progress and not (scan.episodes > before.episodes
                                  and scan.learner_step > before.learner_step):
            phase.problems.append(f"no progress: episodes {before.episodes} -> {scan.episodes}, "
                                  f"learner step {before.learner_step} -> {scan.learner_step}")
        if scan.learner_step < budget_steps:
            phase.problems.append(f"learner step {scan.learner_step} short of the session's "
                                  f"budget of {budget_steps}")
        self.last = scan
        self.result.phases.append(phase)
        self.result.violations += [f"{phase.name}: {p}" for p in phase.problems]
        self.say(f"  {phase.name}: {phase.outcome} after {phase.seconds:.0f} s; "
                 f"{scan.episodes} episodes, learner step {scan.learner_step}, "
                 f"v{scan.max_version}, {scan.temps} temp(s) left"
                 + (f"; PROBLEMS: {phase.problems}" if phase.problems else ""))
        return scan

    def await_progress(self, session: TrainSession, phase: Phase) -> bool:
        start_shards = committed_shards(self.run_dir)
        start_step = max(self.last.learner_step, newest_learner_step(self.run_dir))
        got = wait_until(progressed(self.run_dir, start_shards, start_step), session,
                         self.plan.progress_timeout_s)
        if got == "done":
            return True
        self.result.stalls += got == "timeout"
        phase.outcome = "stalled" if got == "timeout" else "exited by itself"
        phase.problems.append(f"{phase.outcome} before committing anything new; log:\n"
                              + session.tail())
        return False

    def kill_phase(self, index: int) -> None:
        phase = Phase(f"kill {index + 1}/{self.plan.kills}")
        session = self.start()
        t0 = time.monotonic()
        if self.await_progress(session, phase):
            if index == 0 and self.plan.actor_kill:
                self.kill_rollout_actor(session, phase)
            mid_write = index % self.plan.mid_write_every == self.plan.mid_write_every - 1
            if mid_write:
                wait_until(lambda: writes_in_flight(self.run_dir), session,
                           self.plan.kill_jitter_s * 2, poll=0.005)
            else:
                time.sleep(self.rng.uniform(0, self.plan.kill_jitter_s))
            alive = session.alive()
            session.kill()
            in_flight = writes_in_flight(self.run_dir)  # a temp left on disk: a write cut short
            self.result.kills += 1
            if not alive:
                phase.outcome = "exited by itself"
                phase.problems.append(f"the run ended before the kill:\n{session.tail()}")
            else:
                phase.outcome = "killed mid-write" if in_flight else "killed"
                self.result.kills_mid_write += in_flight
        else:
            session.kill()
        phase.seconds = time.monotonic() - t0
        self.check(phase)
        if not phase.problems:
            self.result.kills_survived += 1

    def kill_rollout_actor(self, session: TrainSession, phase: Phase) -> None:
        """SIGKILL the rollout actor mid-play; the driver must replace it and commit again."""
        pid = None
        deadline = time.monotonic() + 30  # mid-play if it plays within that, else as it is
        while pid is None and time.monotonic() < deadline and session.alive():
            pid = find_actor(session.sid, "RolloutWorker.play")
            time.sleep(0.05)
        pid = pid or find_actor(session.sid, "RolloutWorker")
        if pid is None:
            phase.problems.append("no ray::RolloutWorker process found in the run's session")
            return
        title = process_title(pid)
        os.kill(pid, signal.SIGKILL)
        self.result.actor_kills += 1
        self.say(f"  killed rollout actor pid {pid} ({title})")
        before = committed_shards(self.run_dir)
        got = wait_until(lambda: bool(committed_shards(self.run_dir) - before)
                         and find_actor(session.sid, "RolloutWorker") not in (None, pid),
                         session, self.plan.progress_timeout_s)
        if got == "done":
            self.result.actor_kills_survived += 1
        else:
            self.result.stalls += got == "timeout"
            phase.problems.append(f"after the rollout actor's kill the run {got}:\n"
                                  + session.tail())

    # -- the disk fills up

    def disk_full_phase(self) -> None:
        if os.geteuid() != 0:
            self.result.disk_full = {"skipped": "needs root to mount a tmpfs"}
            self.say("  disk full: skipped (not root)")
            return
        aside = self.work / "run.aside"
        size_mib = self.plan.disk_mib or (du_mib(self.run_dir) + 24)
        self.run_dir.rename(aside)
        self.run_dir.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs",
                                  str(self.run_dir)], capture_output=True, text=True, check=False)
        if mounted.returncode != 0:
            self.run_dir.rmdir()
            aside.rename(self.run_dir)
            self.result.disk_full = {"skipped": f"mount failed: {mounted.stderr.strip()}"}
            self.say(f"  disk full: skipped ({mounted.stderr.strip()})")
            return
        info: dict = {"tmpfs_mib": size_mib}
        try:
            copy_tree(aside, self.run_dir)
            self.full_disk_session(info)
            self.freed_disk_session(info)
        finally:  # the run directory goes back where it was, whatever happened
            if self.current is not None:
                self.current.kill()
            (self.run_dir / BALLAST).unlink(missing_ok=True)
            shutil.rmtree(aside)
            aside.mkdir()
            copy_tree(self.run_dir, aside)
            unmount(self.run_dir)
            self.run_dir.rmdir()
            aside.rename(self.run_dir)
        self.result.disk_full = info

    def full_disk_session(self, info: dict) -> None:
        phase = Phase("disk full")
        session = self.start()
        t0 = time.monotonic()
        if self.await_progress(session, phase):
            info["ballast_mib"] = round(fill_disk(self.run_dir / BALLAST) / 2**20, 1)
            filled = time.monotonic()
            # A write that fails may end the run, or the run may go on without writing; it must
            # not hang, and nothing committed may be hurt. Give it a while, then kill it.
            got = wait_until(lambda: False, session, 90)
            info["after_full"] = (f"exited (rc {session.proc.returncode}) "
                                  f"{time.monotonic() - filled:.0f} s after the disk filled"
                                  if got == "exited" else "still running 90 s after the disk filled")
            info["last_lines"] = session.tail(4)
            # Said as one block ("the disk is full ... run.resume=true"), not a traceback.
            info["one_block_message"] = (got == "exited" and "Traceback" not in session.tail(400)
                                         and "the disk is full" in session.tail(4))
            phase.outcome = info["after_full"]
            self.say(f"  disk full: {info['after_full']}; last lines:\n    "
                     + info["last_lines"].replace("\n", "\n    "))
        session.kill()
        phase.seconds = time.monotonic() - t0
        self.check(phase)

    def freed_disk_session(self, info: dict) -> None:
        phase = Phase("disk freed")
        (self.run_dir / BALLAST).unlink(missing_ok=True)
        session = self.start()
        t0 = time.monotonic()
        if self.await_progress(session, phase):
            time.sleep(self.rng.uniform(0, self.plan.kill_jitter_s))
            phase.outcome = "resumed on the freed disk, then killed"
        session.kill()
        phase.seconds = time.monotonic() - t0
        self.check(phase)
        info["resumed_after_freeing"] = not phase.problems

    # -- the last session

    def final_phase(self) -> None:
        phase = Phase("final")
        budget = max(self.last.learner_step, 0) + self.plan.final_steps
        session = self.start([f"run.budget_steps={budget}", "run.budget_minutes=30"])
        t0 = time.monotonic()
        got = wait_until(lambda: False, session, self.plan.progress_timeout_s * 2)
        if got == "timeout":
            self.result.stalls += 1
            session.kill()
            phase.outcome = "stalled"
            phase.problems.append(f"did not finish its {budget}-step budget:\n{session.tail()}")
        else:
            kill_session(session.sid)  # anything of its Ray that outlived it
            rc = session.proc.returncode
            phase.outcome = "finished" if rc == 0 else f"failed (exit {rc})"
            if rc != 0:
                phase.problems.append(f"exit {rc}:\n{session.tail()}")
        phase.seconds = time.monotonic() - t0
        self.result.final = phase.outcome
        # Its budget is learner steps: the learner may reach it from what replay already holds
        # before an actor commits again, so progress here is the budget reached, not new episodes.
        self.check(phase, want_progress=False, budget_steps=budget)

    # -- the whole soak

    def run(self) -> SoakResult:
        t0 = time.monotonic()
        self.run_dir.parent.mkdir(parents=True, exist_ok=True)
        reader = Reader(self.run_dir, self.env) if self.plan.reader else None
        if reader:
            reader.start()
        try:
            for i in range(self.plan.kills):
                self.kill_phase(i)
                if self.plan.disk_full and i == self.plan.kills // 2 - 1:
                    self.disk_full_phase()
            if self.plan.disk_full and self.plan.kills < 2:
                self.disk_full_phase()
            if self.plan.final_steps:
                self.final_phase()
        finally:  # on any way out (a test's timeout too): no process of ours is left running
            if self.current is not None:
                self.current.kill()
            if reader:
                reader.stop()
            shutil.rmtree(self.ray_tmp, ignore_errors=True)
        r = self.result
        if reader:
            r.reader_polls, r.reader_ok, r.reader_refusals = reader.polls, reader.ok, reader.refusals
            r.reader_failures, r.reader_refused = reader.failures, sorted(reader.refused)
            r.violations += [f"reader: {f}" for f in reader.failures]
        r.episodes = self.last.episodes
        r.episodes_lost = len(self.last.lost)
        r.checkpoints, r.checkpoints_intact = self.last.checkpoints, self.last.checkpoints_intact
        r.files_in_episodes = sum(1 for _ in (self.run_dir / "episodes").iterdir())
        r.appends = self.last.appends
        r.stray_temps = self.last.root_temps
        r.seconds = time.monotonic() - t0
        return r


def unmount(path: Path) -> None:
    for _ in range(20):  # a reader's command may hold a file open for a moment
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.5)
    subprocess.run(["umount", "--lazy", str(path)], check=True)


def du_mib(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) // 2**20 + 1


def copy_tree(src: Path, dst: Path) -> None:
    """Copy ``src``'s contents into the existing directory ``dst`` (files keep their times)."""
    for entry in src.iterdir():
        target = dst / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target, symlinks=True)
        else:
            shutil.copy2(entry, target)


def fill_disk(path: Path) -> int:
    """Append zeros to ``path`` until its file system is full; returns the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 4096):  # megabytes, then the last one a page at a time
            block = b"\0" * size
            while True:
                try:
                    written += f.write(block)
                except OSError as err:
                    if err.errno != errno.ENOSPC:
                        raise
                    break
    return written


# ---------------------------------------------------------------------------- figures


def figures(r: SoakResult, plan: SoakPlan) -> list[dict]:
    return [
        figure("SIGKILLs of the whole run survived (resumed, nothing committed hurt)", "kills",
               r.kills_survived, plan.kills, "kills planned", f"= {plan.kills}", digits=0),
        figure("resumes (run.resume=true after each kill, the disk phase and the end)", "resumes",
               r.resumes, None, "-", "report", digits=0),
        figure("kills that landed mid-write (a .tmp- file on disk)", "kills",
               r.kills_mid_write, None, "-", "report", digits=0),
        figure("rollout actors killed mid-play and replaced", "actors",
               r.actor_kills_survived, r.actor_kills, "actors killed", "all", digits=0),
        figure("episodes committed", "episodes", r.episodes, None, "-", "report", digits=0),
        figure("committed episodes lost", "episodes", r.episodes_lost, None,
               "a kill -9 may lose only episodes in flight", "0", digits=0),
        figure("checkpoints intact (weights load, meta reads, files unchanged)", "versions",
               r.checkpoints_intact, r.checkpoints, "checkpoints committed", "all", digits=0),
        figure("stalls (a session that committed nothing new in time, or hung)", "stalls",
               r.stalls, None, "-", "0", digits=0),
        figure("reader polls ok beside the live run (replay list/show, eval)", "polls",
               r.reader_ok, r.reader_polls, "polls made", "all but clear refusals", digits=0),
        figure("files in episodes/ per 10,000 episodes", "files", r.files_per_10k,
               r.appends_per_10k, "one shard per append (no compaction)", "report",
               higher_is_better=False),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 kills, short")
    parser.add_argument("--kills", type=int, default=None, help="SIGKILLs (default 20, quick 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--no-disk-full", action="store_true", help="skip the tmpfs phase")
    parser.add_argument("--out", default=None,
                        help="folder for the results JSON (default benchmarks/results/)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory and logs")
    args = parser.parse_args(argv)
    plan = SoakPlan(kills=args.kills if args.kills is not None else (3 if args.quick else 20),
                    seed=args.seed, disk_full=not args.no_disk_full)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    print(f"soak: {plan.kills} kills, work dir {work}")
    try:
        result = Soak(plan, work).run()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    figs = figures(result, plan)
    print_table("soak", figs)
    for v in result.violations:
        print(f"VIOLATION {v}")
    extra = {"plan": asdict(plan), "result": {k: v for k, v in asdict(result).items()
                                              if k != "phases"},
             "phases": [asdict(p) for p in result.phases],
             "files_per_10k": result.files_per_10k}
    if args.out:  # keep the figures out of benchmarks/results/ (a busy or shared machine)
        import common

        common.RESULTS = Path(args.out)
    write_result("soak", figs, quick=args.quick, extra=extra,
                 note=f"{plan.kills} kills, {result.seconds:.0f} s")
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main())
